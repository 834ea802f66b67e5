# D: the previous core beside this one on fa-paper's long sequences (S 8k and 16k: old, new, old; B did
# S <= 4k); FP8 with both input distributions; then the backward correctness and determinism runs of call A
# resumed (their database carried back in)
t0=$SECONDS
mkdir -p /opt/peers /opt/db && python3 -m pip install -q --no-deps --no-index --target /opt/peers .device/cd/*.whl 2>&1 | grep -vi warn
cp .device/cd/a.db /opt/db/flashcore.db
source .device/calls/env.sh
DEADLINE=${DEADLINE_D:-330}
date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit,temperature.gpu --format=csv
OLDDB=/opt/db/old-core.db S=$PWD/.device/e1/oldcore/suites F="seqlen_q>4096"
for who in old-a new old-b; do
  if [ $who = new ]; then step 60 flashcore run --suite $S/fa-paper.toml --backends sdpa-cudnn,sdpa-flash --modes isolated --filter "$F" --db $DB --run-id new-fa-paper-long --log-dir $LOGS
  else step 60 bash .device/oldcore.sh run --suite fa-paper --backends sdpa-cudnn,sdpa-flash --modes isolated --filter "$F" --db $OLDDB --run-id $who-fa-paper-long --log-dir $LOGS; fi
done
x flashcore db merge $OLDDB $DB
x flashcore compare old-a-fa-paper-long old-b-fa-paper-long --db $DB
x flashcore compare old-a-fa-paper-long new-fa-paper-long --db $DB
step 40 flashcore run --suite fp8 --backends cudnn-frontend-fp8,naive --db $DB --run-id fp8-two-distributions --log-dir $LOGS
step 60 flashcore run --suite determinism --resume --run-id determinism-bwd --filter "op=bwd" --backends sdpa-cudnn,sdpa-flash,sdpa-efficient,sdpa-math,naive,flex,sdpa-flash-det,sdpa-efficient-det --db $DB --log-dir $LOGS
step 200 flashcore run --suite correctness --resume --run-id correctness-bwd --filter "op=bwd" --backends sdpa-cudnn,sdpa-flash,sdpa-efficient,sdpa-math,naive,flex,sdpa-flash-det,sdpa-efficient-det --db $DB --log-dir $LOGS
save; ls -la $OUT; echo "total $SECONDS s"
