# K2: the 1-warpgroup, 2-CTAs-per-SM variants (7, 8) beside the defaults at S <= 4k; correctness and sanitizers
set -o pipefail
export PYTHONUNBUFFERED=1
t0=$SECONDS
date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit,temperature.gpu --format=csv
r() { echo "+ $*"; local s=$SECONDS; timeout -s INT -k 5 "$@"; echo "exit $? wall $((SECONDS-s)) s"; }
r 90 build/attn_check --correct --variants 7,8 > $OUT/k2-correct.log 2>&1; tail -2 $OUT/k2-correct.log; grep -c FAIL $OUT/k2-correct.log
r 90 build/attn_check --correct --variants 7,8 --bhsd > $OUT/k2-correct-bhsd.log 2>&1; tail -2 $OUT/k2-correct-bhsd.log
r 200 build/attn_check --time --variants 0,1,2,4,6,7,8 --max-seqlen 4096 --iters 30 > $OUT/k2-time.log 2>&1; grep -A200 "timing summary" $OUT/k2-time.log
for t in racecheck synccheck memcheck; do
  r 60 compute-sanitizer --tool $t --error-exitcode 9 build/attn_check --small --variants 7,8 > $OUT/k2-$t.log 2>&1; tail -3 $OUT/k2-$t.log
done
echo "total $((SECONDS - t0)) s"
