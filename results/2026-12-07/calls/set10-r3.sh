# R3 (one short call, under 250 s of device time left): v13's checks only, no timing, no harness: correctness
# (every variant, bshd; the dynamic ones bhsd) and synccheck + racecheck side by side on the dynamic variants.
t0=$SECONDS; K=/tmp/k1; mkdir -p $K
xz -dc .device/r2/ac13.xz > $K/ac13 && chmod +x $K/ac13
date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
san() { local t=$1; shift; timeout -k 5 110 compute-sanitizer --tool $t --print-limit 3 --error-exitcode 9 $K/ac13 "$@" > $OUT/r3-$t.log 2>&1; echo "exit $?" >> $OUT/r3-$t.log; }
( timeout 80 $K/ac13 --correct --all-variants > $OUT/r3-correct.log 2>&1; timeout 30 $K/ac13 --correct --variants 3,12 --bhsd >> $OUT/r3-correct.log 2>&1 ) & a=$!
san synccheck --small --variants 3,12 & b=$!
san racecheck --small --variants 3,12 & c=$!
wait $a $b $c
echo "ac13 correct: FAIL lines $(grep -c FAIL $OUT/r3-correct.log), 'failures: 0' lines $(grep -c 'failures: 0' $OUT/r3-correct.log)"
for t in synccheck racecheck; do echo "ac13 $t $(tail -1 $OUT/r3-$t.log): $(grep SUMMARY $OUT/r3-$t.log | tail -1)"; done
echo "total $((SECONDS - t0)) s"
