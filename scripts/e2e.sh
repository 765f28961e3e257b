#!/usr/bin/env bash
# End-to-end suite with real peers (what `make e2e` and CI run): Orthanc with DICOMweb and Lua
# routing, dcmtk's storescu, PostgreSQL and Debian's chromium, all on 127.0.0.1, started and
# stopped by the tests themselves (tests/support/peers.py, tests/e2e/stack.py).
#
# The whole suite runs with the embedded SQLite database; the tests whose outcome depends on the
# database (marked `db`: queue and leases under concurrency, conflicts, series upserts, delivery
# rows, column widths) run again with a real PostgreSQL. `MEDSIGHT_E2E_DB=postgresql pytest -m e2e
# tests/e2e` runs all of them with PostgreSQL.
#
# The two runs are independent (own stacks, ports, folders, database) and much of their time is
# waiting on peers, so they run side by side; MEDSIGHT_E2E_PARALLEL=0 runs them one after the
# other. Extra arguments go to both pytest runs (e.g. --durations=0).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export MEDSIGHT_E2E_DIR=${MEDSIGHT_E2E_DIR:-$(mktemp -d /tmp/medsight-e2e.XXXXXX)}
export MEDSIGHT_E2E_ARTIFACTS=${MEDSIGHT_E2E_ARTIFACTS:-$MEDSIGHT_E2E_DIR/artifacts}
chmod 755 "$MEDSIGHT_E2E_DIR"

run() {  # run DB [pytest args]: one pass, in its own folder under $MEDSIGHT_E2E_DIR
  local db=$1 marks=e2e
  shift
  [ "$db" = postgresql ] && marks="e2e and db"
  mkdir -p "$MEDSIGHT_E2E_DIR/$db"
  chmod 755 "$MEDSIGHT_E2E_DIR/$db"
  MEDSIGHT_E2E_DB=$db MEDSIGHT_E2E_DIR="$MEDSIGHT_E2E_DIR/$db" \
    "$PY" -m pytest -q -p no:cacheprovider -m "$marks" --basetemp="$MEDSIGHT_E2E_DIR/$db/tmp" tests/e2e "$@"
}

status=0
if [ "${MEDSIGHT_E2E_PARALLEL:-1}" = 1 ]; then
  pg_log="$MEDSIGHT_E2E_DIR/e2e-postgresql.log"
  echo "== e2e with postgresql (db tests; in the background, log: $pg_log) =="
  run postgresql "$@" >"$pg_log" 2>&1 &
  pg=$!
  echo "== e2e with sqlite =="
  run sqlite "$@" || status=$?
  wait "$pg" || status=$?
  echo "== e2e with postgresql (db tests) =="
  cat "$pg_log"
else
  for db in sqlite postgresql; do
    echo "== e2e with $db =="
    run "$db" "$@" || status=$?
  done
fi
echo "e2e artifacts (screenshots): $MEDSIGHT_E2E_ARTIFACTS; service and Orthanc logs: $MEDSIGHT_E2E_DIR/*/tmp"
exit $status
