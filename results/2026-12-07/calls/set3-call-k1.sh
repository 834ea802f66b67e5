# K1: the bleeding-edge kernel's variants (ping-pong new): correctness in both layouts, timing of every
# variant on the fa-paper shapes, the sanitizers on the small set
set -o pipefail
export PYTHONUNBUFFERED=1
t0=$SECONDS
date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit,temperature.gpu --format=csv
r() { echo "+ $*"; local s=$SECONDS; timeout -s INT -k 5 "$@"; echo "exit $? wall $((SECONDS-s)) s"; }
r 90 build/attn_check --correct --all-variants > $OUT/k1-correct.log 2>&1; tail -3 $OUT/k1-correct.log; grep -c FAIL $OUT/k1-correct.log
r 90 build/attn_check --correct --variants 4,5,6 --bhsd > $OUT/k1-correct-bhsd.log 2>&1; tail -2 $OUT/k1-correct-bhsd.log
r 300 build/attn_check --time --variants 0,1,2,3,4,5,6 --iters 20 > $OUT/k1-time.log 2>&1; grep -A200 "timing summary" $OUT/k1-time.log
for t in racecheck synccheck memcheck; do
  r 60 compute-sanitizer --tool $t --error-exitcode 9 build/attn_check --small --variants 4,5,6 > $OUT/k1-$t.log 2>&1; tail -4 $OUT/k1-$t.log
  [ $((SECONDS - t0)) -gt 540 ] && break
done
echo "total $((SECONDS - t0)) s"
