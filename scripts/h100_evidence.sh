#!/usr/bin/env bash
# The H100 evidence of the harness core and the project kernels, in stages that each fit one device
# call. Every command is echoed before it runs; databases and logs go to results/h100/ and $OUT.
#   scripts/h100_evidence.sh STAGE    STAGE: suites | fa-paper-1 | fa-paper-2
set -uo pipefail
stage=${1:?stage}
out=${OUT:-/tmp/out}
mkdir -p "$out" results/h100
. scripts/device_setup.sh
db=results/h100/flashcore.db
x() { echo "+ $*"; "$@"; echo "exit code $?"; }
case "$stage" in
  suites)
    x flashcore env
    x flashcore run --suite correctness --db "$db" --run-id h100-correctness --log-dir "$out/logs"
    x flashcore run --suite determinism --db "$db" --run-id h100-determinism --log-dir "$out/logs"
    x flashcore run --suite seed-claims --db "$db" --run-id h100-seed-claims --log-dir "$out/logs"
    ;;
  fa-paper-1)
    /usr/bin/time -f "fa-paper wall %e s" flashcore run --suite fa-paper --db "$db" --run-id h100-fa-paper-1 --log-dir "$out/logs"
    ;;
  fa-paper-2)
    /usr/bin/time -f "fa-paper wall %e s" flashcore run --suite fa-paper --db "$db" --run-id h100-fa-paper-2 --log-dir "$out/logs"
    x flashcore compare h100-fa-paper-1 h100-fa-paper-2 --db "$db"
    ;;
esac
cp "$db" "$out/" 2>/dev/null
