#!/usr/bin/env bash
# Mutation-test ONE module of pyro_noisevae against ITS OWN tests, with mutmut (the `quality` extra).
# Runs in a throw-away copy under $MUT_ROOT (default /tmp/pyro_noisevae_mutation), never in the repo;
# one worker, niced, one BLAS thread, so it fits a 2-core machine beside CI.
#
#   quality/run_mutation.sh NAME MODULE_PATH TEST_PATH [TEST_PATH ...]
#   e.g. quality/run_mutation.sh handlers pyro_noisevae/handlers.py tests/test_handlers.py
#
# Writes quality/mutation_NAME.txt (the summary and the diff of every surviving / timed-out mutant).
set -euo pipefail
NAME=$1; MODULE=$2; shift 2
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$REPO/.venv/bin/python}
WORK=${MUT_ROOT:-/tmp/pyro_noisevae_mutation}/$NAME
rm -rf "$WORK"; mkdir -p "$WORK"
cp -r "$REPO/pyro_noisevae" "$REPO/tests" "$REPO/pyproject.toml" "$WORK/"
find "$WORK" -name __pycache__ -prune -exec rm -rf {} +
{
  echo "[mutmut]"
  echo "source_paths = pyro_noisevae"
  echo "only_mutate = $MODULE"
  echo "pytest_add_cli_args_test_selection ="
  for t in "$@"; do echo "    $t"; done
  echo "pytest_add_cli_args ="
  for a in -x -q -p no:cacheprovider; do echo "    $a"; done
  echo "process_isolation = ${PROCESS_ISOLATION:-fork}"
} > "$WORK/setup.cfg"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
export PYRO_NOISEVAE_DATA=${PYRO_NOISEVAE_DATA:-$REPO/../shared/data}
cd "$WORK"
START=$(date +%s)
nice -n 10 "$PY" -m mutmut run --max-children 1 > "$WORK/run.log" 2>&1 || echo "mutmut run exited $?" >> "$WORK/run.log"
END=$(date +%s)
OUT=$REPO/quality/mutation_$NAME.txt
{
  echo "# mutmut $("$PY" -m pip show mutmut 2>/dev/null | sed -n "s/^Version: //p") on $MODULE; tests: $*"
  echo "# wall: $((END-START)) s, one worker, nice 10, OMP_NUM_THREADS=1, $(date -u +%FT%TZ)"
  echo "## results (mutmut results --all true)"
  "$PY" -m mutmut results --all true 2>&1 || true
  echo "## status counts"
  "$PY" -m mutmut results --all true 2>/dev/null | awk -F': ' '{print $NF}' | sort | uniq -c || true
  for m in $("$PY" -m mutmut results 2>/dev/null | awk -F': ' '$NF!="killed"{print $1}' | tr -d ' '); do
    echo "## $m"; "$PY" -m mutmut show "$m" 2>&1 || true
  done
} > "$OUT"
echo "wrote $OUT"
