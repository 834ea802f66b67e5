# J3 (right after J2, same warm machine, everything staged): fa-paper in float16 with every peer that has it; the
# sustained mode with host-bound batches replayed as CUDA graphs (S <= 2k, the peers and the kernel) against J2's
# gated sustained rows; the timing-mode GPU tests; the correctness suite on the kernel
t0=$SECONDS
source .device/j/keep_build2.sh
source .device/j/env.sh
DEADLINE=${DEADLINE_J3:-420}
date -u; nvidia-smi --query-gpu=name,clocks.max.sm,power.limit,temperature.gpu --format=csv
x python3 -c "from harness.tools.build.jit import load_ops; load_ops(verbose=False); print('kernels built')"
P=$OUT/j3-pytest.log
step 60 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_timing_modes.py > $P 2>&1; tail -3 $P
step 130 flashcore run --suite .device/j/fa-paper-graph.toml --filter "seqlen_q<=2048" --db $DB --run-id j-sustained-graph --log-dir $LOGS
flashcore standing --db $DB --run j-sustained-graph --backend flashcore-bleeding-edge --peers sdpa-cudnn,fa4,fa3 --mode sustained 2>&1 | tail -20
step 200 flashcore run --suite fa-paper-fp16 --db $DB --run-id j-fa-paper-fp16 --log-dir $LOGS
flashcore standing --db $DB --run j-fa-paper-fp16 --backend flashcore-bleeding-edge --peers sdpa-cudnn,fa4,fa3,cudnn-frontend 2>&1 | tail -32
step 50 flashcore run --suite correctness --backends flashcore-bleeding-edge --db $DB --run-id j-k-correctness --log-dir $LOGS
tar czf $OUT/j3-logs.tgz -C /tmp fclogs 2>/dev/null
save; ls -la $OUT; echo "total $SECONDS s"
