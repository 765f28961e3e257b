#!/usr/bin/env bash
# The test suite (what `make test` and CI run): every test not marked e2e, synthetic data plus the
# real data in ../shared/data.
#
# It runs in two lanes, side by side: the tests that mostly wait on processes, sockets and
# databases (the service, batch runs, alerts, I/O, reports and the torchrun launches of engine/),
# and the rest, which mostly compute. Each lane is its own pytest process with its own temporary
# folder and, where a test needs one, its own PostgreSQL; together they run exactly the tests that
# `pytest -m "not e2e" tests` runs. On a 2-core machine one process leaves the cores about 40 %
# idle (docs/service.md, "Measured results"). MEDSIGHT_TEST_PARALLEL=0 runs one pytest process.
# Extra arguments go to every pytest run (e.g. --durations=20 or -k).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WAITING=(tests/service tests/batch tests/alerts tests/io tests/report tests/engine)

if [ "${MEDSIGHT_TEST_PARALLEL:-1}" != 1 ]; then
  exec "$PY" -m pytest -q -m "not e2e" tests "$@"
fi
dir=$(mktemp -d /tmp/medsight-test.XXXXXX)
rest=(tests)
for d in "${WAITING[@]}"; do rest+=("--ignore=$d"); done
lane() {  # lane NAME PATHS-AND-PYTEST-ARGS...; exit 5 (nothing collected under a -k) is not a failure
  local name=$1
  shift
  "$PY" -m pytest -q -p no:cacheprovider -m "not e2e" --basetemp="$dir/$name" "$@" >"$dir/$name.log" 2>&1 || [ $? = 5 ]
}
lane waiting "${WAITING[@]}" "$@" &
waiting=$!
lane computing "${rest[@]}" "$@" &
computing=$!
echo "== tests: two lanes side by side (logs: $dir/waiting.log, $dir/computing.log) =="
status=0
wait "$waiting" || status=$?
wait "$computing" || status=$?
for name in waiting computing; do
  echo "== $name lane =="
  cat "$dir/$name.log"
done
exit $status
