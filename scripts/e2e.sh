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
# Each pass is split in two lanes by file: the long ones (the loss, PACS-outage and DICOMweb
# catch-up modules, about half of a pass's time) and the rest. The four lanes are independent
# (own stacks, ports, folders, database; each pytest process its own webhook and PostgreSQL) and
# much of their time is waiting on peers, so they run side by side; MEDSIGHT_E2E_PARALLEL=0 runs
# the two passes whole, one after the other. Extra arguments go to every pytest run (e.g.
# --durations=0 or -k).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export MEDSIGHT_E2E_DIR=${MEDSIGHT_E2E_DIR:-$(mktemp -d /tmp/medsight-e2e.XXXXXX)}
export MEDSIGHT_E2E_ARTIFACTS=${MEDSIGHT_E2E_ARTIFACTS:-$MEDSIGHT_E2E_DIR/artifacts}
chmod 755 "$MEDSIGHT_E2E_DIR"
LONG=(tests/e2e/test_loss.py tests/e2e/test_pacs_outage.py tests/e2e/test_dicomweb.py)

run() {  # run DB LANE [pytest args]: one lane (long, rest or all), in its own folder under $MEDSIGHT_E2E_DIR
  local db=$1 lane=$2 marks=e2e dir="$MEDSIGHT_E2E_DIR/$1-$2"
  shift 2
  [ "$db" = postgresql ] && marks="e2e and db"
  local files=(tests/e2e)
  if [ "$lane" = long ]; then
    files=("${LONG[@]}")
  elif [ "$lane" = rest ]; then
    for f in "${LONG[@]}"; do files+=("--ignore=$f"); done
  fi
  mkdir -p "$dir"
  chmod 755 "$dir"
  # exit 5 (nothing collected, e.g. -k matching only the other lane's tests) is not a failure
  MEDSIGHT_E2E_DB=$db MEDSIGHT_E2E_DIR="$dir" \
    "$PY" -m pytest -q -p no:cacheprovider -m "$marks" --basetemp="$dir/tmp" "${files[@]}" "$@" || [ $? = 5 ]
}

status=0
if [ "${MEDSIGHT_E2E_PARALLEL:-1}" = 1 ]; then
  lanes=(sqlite:long sqlite:rest postgresql:long postgresql:rest)
  pids=()
  for l in "${lanes[@]}"; do
    run "${l%%:*}" "${l#*:}" "$@" >"$MEDSIGHT_E2E_DIR/e2e-${l/:/-}.log" 2>&1 &
    pids+=($!)
  done
  echo "== e2e: ${lanes[*]} side by side (logs: $MEDSIGHT_E2E_DIR/e2e-*.log) =="
  for i in "${!lanes[@]}"; do
    wait "${pids[$i]}" || status=$?
  done
  for l in "${lanes[@]}"; do
    echo "== e2e with ${l%%:*}, ${l#*:} lane =="
    cat "$MEDSIGHT_E2E_DIR/e2e-${l/:/-}.log"
  done
else
  for db in sqlite postgresql; do
    echo "== e2e with $db =="
    run "$db" all "$@" || status=$?
  done
fi
echo "e2e artifacts (screenshots): $MEDSIGHT_E2E_ARTIFACTS; service and Orthanc logs: $MEDSIGHT_E2E_DIR/*/tmp"
exit $status
