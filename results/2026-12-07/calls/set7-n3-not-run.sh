# N3 (right after N2, same warm machine, everything staged): cuDNN's frontend installed; fa-paper in float16 with
# every peer that has it; the correctness suite on the kernel; the timing modes' GPU tests (the gated path and the
# refused capture); Nsight Compute's full metric set for the kernel and fa3 at d128 causal 2k (the widest
# gap); then the cross-check of both timing modes against do_bench and ncu, for what time is left (resumable)
t0=$SECONDS
python3 -m pip install -q --no-deps --no-index --target /opt/peers .device/l3/nvidia_cudnn*.whl 2>&1 | grep -vi warn
source .device/l/keep_build.sh
source .device/l/env.sh
DEADLINE=${DEADLINE_N3:-450}
date -u; nvidia-smi --query-gpu=name,clocks.max.sm,power.limit,temperature.gpu --format=csv
x python3 -c "from harness.tools.build.jit import load_ops; load_ops(verbose=False); print('kernels built')"
step 200 flashcore run --suite fa-paper-fp16 --backends sdpa-cudnn,fa4,cudnn-frontend,flashcore-bleeding-edge --db $DB --run-id set7-fa-paper-fp16 --log-dir $LOGS > $OUT/n3-fa-paper-fp16.log 2>&1
tail -3 $OUT/n3-fa-paper-fp16.log
flashcore standing --db $DB --run set7-fa-paper-fp16 --backend flashcore-bleeding-edge --peers sdpa-cudnn,fa4,cudnn-frontend 2>&1 | tail -32
step 60 flashcore run --suite correctness --backends flashcore-bleeding-edge --db $DB --run-id set7-k-correctness --log-dir $LOGS > $OUT/n3-correctness.log 2>&1; tail -3 $OUT/n3-correctness.log
P=$OUT/n3-pytest-timing-modes.log
step 70 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_timing_modes.py > $P 2>&1; tail -3 $P
step 110 flashcore profile --suite fa-paper --backends flashcore-bleeding-edge,fa3 --filter "seqlen_q=2048,head_dim=128,causal=true" --timing set7-fa-paper --db $DB --run-id set7-profile-d128-causal-2k --out-dir $OUT/profile --cell-timeout 60 > $OUT/n3-profile.log 2>&1
tail -40 $OUT/n3-profile.log
step 300 flashcore crosscheck --suite fa-paper --filter "head_dim=128,seqlen_q>=4096,seqlen_q<=8192" --backends sdpa-cudnn,fa4,fa3,flashcore-bleeding-edge --run-id set7-crosscheck --db $DB --out-dir $OUT/crosscheck --cell-timeout 40 > $OUT/n3-crosscheck.log 2>&1
tail -30 $OUT/n3-crosscheck.log
tar czf $OUT/n3-logs.tgz -C /tmp fclogs 2>/dev/null
save; ls -la $OUT; echo "total $SECONDS s"
