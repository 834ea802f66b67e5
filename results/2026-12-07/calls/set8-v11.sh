# Sourced at the end of N1 and P1 (each step only while the call's DEADLINE leaves time): kernel v11's variant 13
# (wider key blocks under the persistent schedule with turns: d128 BN144, d64 BM128 BN192), attn_check built off
# the GPU from v10 + the new pair: correctness (bshd, bhsd), timing beside variants 2 (BN128 pers, the
# non-causal default from 2k at d128) and 6 (pers pp, the d64 default from 2k), then racecheck and memcheck.
xz -dc $BINS/ac11.xz > $K/ac11 && chmod +x $K/ac11
step 40 $K/ac11 --correct --variants 13 > $OUT/$TAG-v11-correct.log 2>&1
step 30 $K/ac11 --correct --variants 13 --bhsd >> $OUT/$TAG-v11-correct.log 2>&1
echo "v11 correct: FAIL lines $(grep -c FAIL $OUT/$TAG-v11-correct.log), 'failures: 0' lines $(grep -c 'failures: 0' $OUT/$TAG-v11-correct.log)"
step 120 $K/ac11 --time --variants 2,6,13 --iters 10 > $OUT/$TAG-v11-time.log 2>&1
grep -A80 "timing summary" $OUT/$TAG-v11-time.log | head -80
for t in racecheck memcheck; do
  step 60 compute-sanitizer --tool $t --print-limit 3 --error-exitcode 9 $K/ac11 --small --variants 13 > $OUT/$TAG-v11-$t.log 2>&1
  echo "v11 $t: $(grep SUMMARY $OUT/$TAG-v11-$t.log | tail -1)"; done
