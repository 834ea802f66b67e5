# K5 (same warm machine): two back-to-back fa-paper runs with interleaved rounds (isolated, S >= 2k, the kernel
# and the three fastest peers) and their ratio agreement; then fa-paper in float16
t0=$SECONDS
source .device/calls/env.sh
DEADLINE=${DEADLINE_K5:-575}
date -u; nvidia-smi --query-gpu=name,clocks.max.sm,power.limit,temperature.gpu --format=csv
B=sdpa-cudnn,fa4,fa3,flashcore-bleeding-edge
for r in a b; do
  step 210 flashcore run --suite fa-paper --rounds 3 --modes isolated --backends $B --filter "seqlen_q>=2048" --db $DB --run-id k-rounds-$r --log-dir $LOGS
done
x flashcore compare k-rounds-a k-rounds-b --db $DB
step 150 flashcore run --suite suites/fa-paper-fp16.toml --backends sdpa-cudnn,fa4,cudnn-frontend,flashcore-bleeding-edge --db $DB --run-id k-fa-paper-fp16 --log-dir $LOGS
save; ls -la $OUT; echo "total $SECONDS s"
