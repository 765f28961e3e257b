#!/usr/bin/env bash
# Installs the Debian packages the DICOM tests use as real peers. Idempotent; needs root.
# Without root (a user's machine) it says so and exits 0: those tests then skip with a reason.
set -euo pipefail
PKGS=(orthanc orthanc-dicomweb dcmtk postgresql chromium)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "install_peers: not root; missing Debian packages: ${missing[*]} (their tests will skip)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install_peers: installed ${missing[*]}"
