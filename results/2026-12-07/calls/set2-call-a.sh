# A: the serving suites with every installed peer but FA4 (FlashInfer's modules compiled ahead, in parallel,
# while the backward's correctness and determinism rows run; neither is timed); FA4 comes in a later call
t0=$SECONDS
mkdir -p /opt/peers && python3 -m pip install -q --no-deps --no-index --target /opt/peers .device/ca/*.whl 2>&1 | grep -vi warn
source .device/calls/env.sh
DEADLINE=${DEADLINE_A:-450}
date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit,temperature.gpu --format=csv
echo "installed in $((SECONDS - t0)) s"
x flashcore env 2>&1 | grep -v "^\s*$" | tail -32
setsid bash -c 'for s in varlen window decode; do flashcore warm --suite $s -b flashinfer-fa3,flashinfer-fa2,flashinfer-decode,flex -j 4 & done; wait' > $OUT/warm.log 2>&1 &
WARM=$!
step 150 flashcore run --suite correctness --filter "op=bwd" --backends sdpa-cudnn,sdpa-flash,sdpa-efficient,sdpa-math,naive,flex,sdpa-flash-det,sdpa-efficient-det --db $DB --run-id correctness-bwd --log-dir $LOGS
step 80 flashcore run --suite determinism --filter "op=bwd" --backends sdpa-cudnn,sdpa-flash,sdpa-efficient,sdpa-math,naive,flex,sdpa-flash-det,sdpa-efficient-det --db $DB --run-id determinism-bwd --log-dir $LOGS
while kill -0 $WARM 2>/dev/null && [ $SECONDS -lt 250 ]; do sleep 2; done
kill -- -$WARM 2>/dev/null; pkill -f "flashcore warm" 2>/dev/null; sleep 1
echo "warm-up ended at $SECONDS s"; grep -c . $OUT/warm.log; grep "^warmed" $OUT/warm.log
step 75 flashcore run --suite varlen --backends fa3,fa2,flashinfer-fa3,flashinfer-fa2,flex,sdpa-flash,sdpa-efficient,sdpa-cudnn --db $DB --run-id varlen --log-dir $LOGS
step 60 flashcore run --suite window --backends fa3,fa2,flashinfer-fa3,flashinfer-fa2,flex,sdpa-efficient,sdpa-cudnn,sdpa-math --db $DB --run-id window --log-dir $LOGS
step 90 flashcore run --suite decode --backends flashinfer-decode,fa3,fa2,flex,sdpa-flash,sdpa-efficient,sdpa-cudnn,sdpa-math --db $DB --run-id decode --log-dir $LOGS
(cd /tmp && tar czf $OUT/a-fclogs.tgz fclogs); cp /opt/flashinfer-ws/.cache/flashinfer/*/flashcore-jit-times.jsonl $OUT/ 2>/dev/null; save; ls -la $OUT; echo "total $SECONDS s"
