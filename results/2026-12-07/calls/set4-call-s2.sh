# S2 (right after S1b, same warm machine; fa3, nvtx, pydantic staged by S1a): the dyn hand-off rewritten (named
# barriers) and the persistent main loops' ring position made uniform (R2UR gone): correctness, sanitizers and
# timing of the changed variants; the torch op's GPU tests (tile counter per stream); the kernel's correctness
# and determinism suites; fa-paper S <= 1k beside sdpa-cudnn and fa3 (the defaults there are persistent)
t0=$SECONDS
python3 -m pip install -q --no-deps --no-index --target /opt/peers .device/s2/nvidia_cudnn*.whl 2>&1 | grep -vi warn
source .device/calls/env.sh
DEADLINE=${DEADLINE_S2:-530}
A=.device/s2/attn_check; chmod +x $A
date -u; nvidia-smi --query-gpu=name,clocks.max.sm,power.limit,temperature.gpu --format=csv
step 60 $A --correct --variants 2,3,6,8,9,11,12 > $OUT/s2-correct.log 2>&1; tail -2 $OUT/s2-correct.log; grep -c FAIL $OUT/s2-correct.log
step 30 $A --correct --variants 3,9 --bhsd > $OUT/s2-correct-bhsd.log 2>&1; tail -2 $OUT/s2-correct-bhsd.log
for t in racecheck synccheck memcheck; do
  step 60 compute-sanitizer --tool $t --error-exitcode 9 $A --small --variants 3,9,11 > $OUT/s2-$t.log 2>&1; tail -3 $OUT/s2-$t.log
done
step 110 $A --time --variants 0,2,3,4,6,9,11,12 --iters 10 > $OUT/s2-time.log 2>&1; grep -A250 "timing summary" $OUT/s2-time.log
x python3 -c "from harness.tools.build import load_ops; load_ops(verbose=False); print('kernels built')"
step 90 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_kernels_gpu.py -k "bleeding_edge"
step 60 flashcore run --suite correctness --backends flashcore-bleeding-edge --db $DB --run-id s5-k-correctness --log-dir $LOGS
step 45 flashcore run --suite determinism --backends flashcore-bleeding-edge --db $DB --run-id s5-k-determinism --log-dir $LOGS
step 90 flashcore run --suite fa-paper --modes isolated --backends flashcore-bleeding-edge,sdpa-cudnn,fa3 --filter "seqlen_q<=1024" --db $DB --run-id s5-fa-paper-short --log-dir $LOGS
save; ls -la $OUT; echo "total $SECONDS s"
