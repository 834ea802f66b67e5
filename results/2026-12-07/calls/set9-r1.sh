# R1 (one call): kernel v13 = v8 with the dynamic hand-off's named barrier unaligned (barrier.sync, the probe's
# form 1, clean under synccheck and racecheck on an H100 in N1 of the ninth set, where v9's bulk-copy form drew
# racecheck hazards) + v10's producer order (each K one block ahead of the V before it, a tile's first K before
# its Q). attn_check built off the GPU (nvcc 13.0, sm_90a): correctness (bshd every variant, bhsd on the dynamic
# ones) and the three sanitizers side by side (not timed), then timing alone on the GPU: v8 against v13 on
# variants 4 (one tile, turns) and 12 (dyn pp sec8). Meanwhile the torch ops build for v13 + the dynamic
# defaults. If v13 is correct, clean and not slower than v8: fa-paper (isolated) with v13 + the dynamic defaults
# beside sdpa-cudnn and fa3, the standing against those two, then the kernels' GPU tests while time lasts.
t0=$SECONDS
mkdir -p /opt/peers
python3 -m pip install -q --no-deps --no-index --target /opt/peers ${R1_DIR:-.device/r1}/*.whl 2>&1 | grep -vi warn
source .device/l/env.sh
DEADLINE=${DEADLINE_R1:-480}
K=/tmp/k1; mkdir -p $K; for b in ac8 ac13; do xz -dc ${R1_DIR:-.device/r1}/$b.xz > $K/$b && chmod +x $K/$b; done
echo "staged in $((SECONDS - t0)) s"; date -u
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit,temperature.gpu --format=csv
git apply .device/l/v13.patch && git apply .device/l/dyn-defaults.diff && echo "tree: v13 + dyn defaults"
# CHECKS_ONLY=1: no ops build and no harness runs (a call with little device time left)
if [ -z "$CHECKS_ONLY" ]; then
( python3 -c "from harness.tools.build.jit import load_ops; load_ops(verbose=False); print('kernels built')" 2>&1 | tail -3; echo "build exit at $SECONDS s" ) > /tmp/build.log 2>&1 & bp=$!
else bp=""; echo "checks only" > /tmp/build.log; fi
san() { local t=$1; shift; timeout -k 5 150 compute-sanitizer --tool $t --print-limit 3 --error-exitcode 9 $K/ac13 "$@" > $K/ac13.$t.out 2>&1; echo $? > $K/ac13.$t.rc; }
( timeout 150 $K/ac13 --correct --all-variants > $K/ac13.correct 2>&1; timeout 60 $K/ac13 --correct --variants 3,9,11,12 --bhsd >> $K/ac13.correct 2>&1 ) & p1=$!
san synccheck --small --variants 3,11,12 & p2=$!
san racecheck --small --variants 3,4,9,12 & p3=$!
san memcheck --small --variants 2,3,9,12 & p4=$!
wait $p1 $p2 $p3 $p4; echo "checks done at $SECONDS s"
ok=1; [ "$(grep -c FAIL $K/ac13.correct)" = 0 ] && [ "$(grep -c 'failures: 0' $K/ac13.correct)" = 2 ] || ok=0
echo "ac13 correct: FAIL lines $(grep -c FAIL $K/ac13.correct), 'failures: 0' lines $(grep -c 'failures: 0' $K/ac13.correct)"
for t in synccheck racecheck memcheck; do echo "ac13 $t exit $(cat $K/ac13.$t.rc): $(grep SUMMARY $K/ac13.$t.out | tail -1)"; [ "$(cat $K/ac13.$t.rc)" = 0 ] || ok=0; done
{ for t in synccheck racecheck memcheck; do echo "=== ac13 $t exit $(cat $K/ac13.$t.rc)"; cat $K/ac13.$t.out; done; } > $OUT/r1-sanitizers.log
cp $K/ac13.correct $OUT/r1-ac13-correct.log
for b in ac8 ac13; do step 60 $K/$b --time --variants 4,12 --iters 10 > $OUT/r1-time-$b.log 2>&1; done
python3 .device/l/cmp_time.py $OUT/r1-time-ac8.log $OUT/r1-time-ac13.log > $OUT/r1-cmp-v8-v13.log; tail -1 $OUT/r1-cmp-v8-v13.log
grep -q "VERDICT KEEP" $OUT/r1-cmp-v8-v13.log || ok=0
echo "DECISION: v13 $( [ $ok = 1 ] && echo kept || echo 'not kept' )"
[ -n "$bp" ] && wait $bp; cat /tmp/build.log
if [ $ok = 1 ] && [ -z "$CHECKS_ONLY" ]; then
  step 220 flashcore run --suite fa-paper --modes isolated --backends sdpa-cudnn,fa3,flashcore-bleeding-edge --db $DB --run-id set9-r1-fa-paper --log-dir $LOGS > $OUT/r1-fa-paper.log 2>&1
  tail -3 $OUT/r1-fa-paper.log
  flashcore standing --db $DB --run set9-r1-fa-paper --backend flashcore-bleeding-edge --peers sdpa-cudnn,fa3 2>&1 | tail -34
  save
  P=$OUT/r1-pytest.log
  step 100 python3 -m pytest -q -x -p no:cacheprovider -m gpu tests/test_kernels_gpu.py > $P 2>&1; tail -3 $P
fi
ls -la $OUT; echo "total $SECONDS s"
# the logs in one archive (a call brings back at most eight files): the database and r1-logs.tgz
( cd $OUT && tar czf r1-logs.tgz --remove-files *.log )
