#!/usr/bin/env bash
# End-to-end suite with real peers (what `make e2e` and CI run): Orthanc with DICOMweb and Lua
# routing, dcmtk's storescu, PostgreSQL and Debian's chromium, all on 127.0.0.1, started and
# stopped by the tests themselves (tests/support/peers.py, tests/e2e/stack.py).
# The suite runs twice: with the embedded SQLite database and with a real PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export MEDSIGHT_E2E_DIR=${MEDSIGHT_E2E_DIR:-$(mktemp -d /tmp/medsight-e2e.XXXXXX)}
export MEDSIGHT_E2E_ARTIFACTS=${MEDSIGHT_E2E_ARTIFACTS:-$MEDSIGHT_E2E_DIR/artifacts}
chmod 755 "$MEDSIGHT_E2E_DIR"
status=0
for db in sqlite postgresql; do
  echo "== e2e with $db =="
  extra=()
  [ "$db" = postgresql ] && extra=(--deselect tests/e2e/test_dashboard_browser.py)
  MEDSIGHT_E2E_DB=$db "$PY" -m pytest -q -p no:cacheprovider -m e2e tests/e2e "${extra[@]}" || status=$?
done
echo "e2e artifacts (screenshots, logs): $MEDSIGHT_E2E_ARTIFACTS"
exit $status
