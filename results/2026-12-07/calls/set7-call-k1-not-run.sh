# K1 (not run yet; kernel only, about 7 min): which hand-off forms compute-sanitizer accepts, then kernel v9 (branch
# handoff-bulk: the hand-off through a bulk copy, the probe's form 5) against v8 (main). Binaries built here and
# carried as xz in .device/k1: probe = kernels/tools/handoff_probe.cu; ac8 = attn_check of main (v8: hand-off
# bar.sync); ac8u = v8 with calls/set7-unaligned-handoff.diff (barrier.sync, unaligned: same SASS barrier
# instruction, kernels/NOTES.md); ac9 = attn_check of v9.
set -o pipefail; mkdir -p /tmp/k1; for b in probe ac8 ac8u ac9; do xz -dc .device/k1/$b.xz > /tmp/k1/$b && chmod +x /tmp/k1/$b; done
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u
san() { local b=$1 t=$2; shift 2; echo "=== $b $t $*" >> $OUT/k1-sanitizers.log
  timeout 90 compute-sanitizer --tool $t --print-limit 3 --error-exitcode 9 /tmp/k1/$b "$@" >> $OUT/k1-sanitizers.log 2>&1
  echo "$b $t $* exit $?: $(grep -E 'SUMMARY' $OUT/k1-sanitizers.log | tail -1)"; }
for f in 0 1 2 3 4 5 6; do timeout 20 /tmp/k1/probe $f; for t in synccheck racecheck; do san probe $t $f; done; done
san ac8u synccheck --small --variants 3,12
timeout 70 /tmp/k1/ac9 --correct --all-variants > $OUT/k1-ac9-correct.log 2>&1; echo "ac9 correct exit $? FAIL lines $(grep -c FAIL $OUT/k1-ac9-correct.log)"
timeout 30 /tmp/k1/ac9 --correct --variants 3,9,11,12 --bhsd >> $OUT/k1-ac9-correct.log 2>&1; echo "ac9 bhsd exit $?"; grep -c "failures: 0" $OUT/k1-ac9-correct.log
san ac9 synccheck --small --variants 3,11,12
san ac9 racecheck --small --variants 3,9,12
san ac9 memcheck --small --variants 2,3,9,12
timeout 80 /tmp/k1/ac8 --time --variants 3,4,12 --iters 10 > $OUT/k1-time-v8.log 2>&1; echo "v8 time exit $?"
timeout 80 /tmp/k1/ac9 --time --variants 3,4,12 --iters 10 > $OUT/k1-time-v9.log 2>&1; echo "v9 time exit $?"
