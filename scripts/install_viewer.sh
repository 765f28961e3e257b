#!/usr/bin/env bash
# The OHIF viewer that `medsight serve` shows at /viewer: the prebuilt @ohif/app from the npm
# registry, pinned by version and by the registry's SHA-512, unpacked into
# ${MEDSIGHT_VIEWER_DIR:-<repo>/.viewer}/ohif-<version>/. Nothing is fetched at run time.
#
# The package is built for the site root (PUBLIC_URL "/"); MedSight serves it under /viewer/, so
# its index.html and webpack's public path are rewritten to /viewer/ here, once.
# Usage: scripts/install_viewer.sh   (idempotent; needs node's npm and the npm registry)
set -euo pipefail
VERSION=3.13.2
INTEGRITY="sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${MEDSIGHT_VIEWER_DIR:-$ROOT/.viewer}/ohif-$VERSION"
if [[ -f "$DEST/.installed" ]]; then
  echo "OHIF $VERSION already in $DEST"
  exit 0
fi
if ! command -v npm >/dev/null; then   # a node that ships npm (nodesource) conflicts with Debian's npm: only if none
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
  else
    echo "install_viewer: npm is missing (Debian: apt-get install npm); the viewer's tests will skip" >&2
    exit 0
  fi
fi
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "@ohif/app@$VERSION" >/dev/null)
TGZ="$TMP/ohif-app-$VERSION.tgz"
GOT="sha512-$(openssl dgst -sha512 -binary "$TGZ" | base64 -w0)"
if [[ "$GOT" != "$INTEGRITY" ]]; then
  echo "the @ohif/app $VERSION tarball's SHA-512 is $GOT, not the pinned $INTEGRITY: refused" >&2
  exit 1
fi
tar -xzf "$TGZ" -C "$TMP" package/dist package/LICENSE
python3 - "$TMP/package/dist" <<'PY'
import pathlib, re, sys
dist = pathlib.Path(sys.argv[1])
index = dist / "index.html"
html = index.read_text()
html = html.replace('window.PUBLIC_URL="/"', 'window.PUBLIC_URL="/viewer/"')
html = re.sub(r'(href|src|content)="/(?!/)', r'\1="/viewer/', html)
index.write_text(html)
n = 0
for js in dist.glob("*.js"):
    text = js.read_text(encoding="utf-8", errors="surrogateescape")
    if '__webpack_require__.p = "/";' in text:
        js.write_text(text.replace('__webpack_require__.p = "/";', '__webpack_require__.p = "/viewer/";'),
                      encoding="utf-8", errors="surrogateescape")
        n += 1
if n == 0:
    sys.exit("expected webpack's public path (__webpack_require__.p) in the OHIF bundles; the package changed")
for css in dist.glob("*.css"):  # fonts and images referenced from the site root
    text = css.read_text(encoding="utf-8", errors="surrogateescape")
    fixed = re.sub(r"url\((['\"]?)/(?!/)", r"url(\1/viewer/", text)
    if fixed != text:
        css.write_text(fixed, encoding="utf-8", errors="surrogateescape")
PY
rm -f "$TMP/package/dist/app-config.js"   # MedSight serves its own (/viewer/app-config.js)
mkdir -p "$(dirname "$DEST")"
rm -rf "$DEST"
mv "$TMP/package/dist" "$DEST"
cp "$TMP/package/LICENSE" "$DEST/LICENSE.OHIF"
echo "$VERSION $INTEGRITY" > "$DEST/.installed"
echo "OHIF $VERSION installed in $DEST"
