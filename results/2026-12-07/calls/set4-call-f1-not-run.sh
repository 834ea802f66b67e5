# F1 (kernel only): the dynamic scheduler's hand-off through one named barrier both sides wait on; the new
# defaults (d64 causal <= 2k three CTAs per SM, causal dyn pp sec8, non-causal persistent): correctness in
# both layouts, the sanitizers on the changed variants and the defaults, timing beside the v5 defaults
set -o pipefail
export PYTHONUNBUFFERED=1
SECONDS=0; DEADLINE=225
date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit,temperature.gpu --format=csv
r() { local cap=$1; shift; local left=$((DEADLINE - SECONDS)); [ $left -lt 15 ] && { echo "skipped: $*"; return; }; [ $cap -gt $((left - 5)) ] && cap=$((left - 5)); echo "+ $*"; local s=$SECONDS; timeout -s INT -k 5 $cap "$@"; echo "exit $? wall $((SECONDS-s)) s"; }
r 50 build/attn_check --correct --all-variants > $OUT/f1-correct.log 2>&1; tail -2 $OUT/f1-correct.log; grep -c FAIL $OUT/f1-correct.log
r 20 build/attn_check --correct --variants 3,9,12 --bhsd > $OUT/f1-correct-bhsd.log 2>&1; tail -2 $OUT/f1-correct-bhsd.log
r 50 compute-sanitizer --tool racecheck --error-exitcode 9 build/attn_check --small --variants 3,9,12 > $OUT/f1-racecheck.log 2>&1; tail -3 $OUT/f1-racecheck.log
r 20 compute-sanitizer --tool racecheck --error-exitcode 9 build/attn_check --small > $OUT/f1-racecheck-default.log 2>&1; tail -3 $OUT/f1-racecheck-default.log
for t in synccheck memcheck; do
  r 20 compute-sanitizer --tool $t --error-exitcode 9 build/attn_check --small --variants 2,3,6,9,12 > $OUT/f1-$t.log 2>&1; tail -2 $OUT/f1-$t.log
done
r 100 build/attn_check --time --variants 0,2,4,6,7,8,9,12 --iters 10 > $OUT/f1-time.log 2>&1; grep -A250 "timing summary" $OUT/f1-time.log | tail -200
echo "total $SECONDS s"
