# H1 (kernel only, ~3 min; carry build/attn_check built from the tree): the dynamic scheduler's hand-off with the
# producer's whole warp at the barrier: synccheck and racecheck on every dynamic variant, memcheck, correctness in
# both layouts, timing of the dynamic defaults-to-be beside the v6 defaults
set -o pipefail; A=build/attn_check; chmod +x $A; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u
timeout 60 compute-sanitizer --tool synccheck --print-limit 3 --error-exitcode 9 $A --small --variants 3,9,11,12 > $OUT/h-synccheck.log 2>&1; echo "synccheck exit $?"; grep -E "SUMMARY|^--- |failures" $OUT/h-synccheck.log | tail -12
timeout 70 compute-sanitizer --tool racecheck --print-limit 3 --error-exitcode 9 $A --small --variants 3,9,11,12 > $OUT/h-racecheck.log 2>&1; echo "racecheck exit $?"; grep -E "SUMMARY|failures" $OUT/h-racecheck.log | tail -3
timeout 30 compute-sanitizer --tool memcheck --print-limit 3 --error-exitcode 9 $A --small --variants 3,12 > $OUT/h-memcheck.log 2>&1; echo "memcheck exit $?"; grep -E "SUMMARY|failures" $OUT/h-memcheck.log | tail -2
timeout 50 $A --correct --all-variants > $OUT/h-correct.log 2>&1; echo "correct exit $?"; grep -c FAIL $OUT/h-correct.log; tail -1 $OUT/h-correct.log
timeout 25 $A --correct --variants 3,12 --bhsd >> $OUT/h-correct.log 2>&1; echo "correct bhsd exit $?"; tail -1 $OUT/h-correct.log
timeout 60 $A --time --variants 4,7,9,12 --iters 10 > $OUT/h-time.log 2>&1; echo "time exit $?"; grep -A120 "timing summary" $OUT/h-time.log | grep causal
