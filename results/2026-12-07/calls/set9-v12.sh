# Sourced at the end of N1, P1 and Q2 (each step only while the call's DEADLINE leaves time): kernels v11 and v12
# in one attn_check binary built off the GPU (v10 + variant 13: wider key blocks under the persistent schedule
# with turns, d128 BN144, d64 BM128 BN192; + variant 14: O staged over the start of the V ring, d128 BM128 BN176,
# d64 variant 6's tile; non-causal only, causal runs variant 6): correctness (bshd, bhsd), timing beside
# variants 2 (BN128 pers, the non-causal default from 2k at d128) and 6 (pers pp), racecheck, memcheck, synccheck.
xz -dc $BINS/ac12.xz > $K/ac12 && chmod +x $K/ac12
step 50 $K/ac12 --correct --variants 13,14 > $OUT/$TAG-v12-correct.log 2>&1
step 40 $K/ac12 --correct --variants 13,14 --bhsd >> $OUT/$TAG-v12-correct.log 2>&1
echo "v11/v12 correct: FAIL lines $(grep -c FAIL $OUT/$TAG-v12-correct.log), 'failures: 0' lines $(grep -c 'failures: 0' $OUT/$TAG-v12-correct.log)"
step 150 $K/ac12 --time --variants 2,6,13,14 --iters 10 > $OUT/$TAG-v12-time.log 2>&1
grep -A100 "timing summary" $OUT/$TAG-v12-time.log | head -100
for t in racecheck memcheck synccheck; do
  step 60 compute-sanitizer --tool $t --print-limit 3 --error-exitcode 9 $K/ac12 --small --variants 13,14 > $OUT/$TAG-v12-$t.log 2>&1
  echo "v12 $t: $(grep SUMMARY $OUT/$TAG-v12-$t.log | tail -1)"; done
