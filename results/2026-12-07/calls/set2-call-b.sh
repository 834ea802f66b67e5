# B: FA4's first part staged (C assembles it); the previous core (dccef07, its source tree in
# .device/e1/oldcore) beside this one in the same call: correctness, determinism, then fa-paper old/new/old;
# both cores read the previous tree's suite files.
t0=$SECONDS
mkdir -p /opt/fa4parts /opt/peers && cp .device/cb/cu13.part00 /opt/fa4parts/
python3 -m pip install -q --no-deps --no-index --target /opt/peers .device/cb/*.whl 2>&1 | grep -vi warn
source .device/calls/env.sh
DEADLINE=${DEADLINE_B:-335}
date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit,temperature.gpu --format=csv
(cd .device/e1/oldcore && PYTHONPATH=$PWD:/opt/peers python3 -c "import harness; print('previous core from', harness.__path__)")
python3 -c "import harness; print('this core from', harness.__path__)"
OLDDB=/opt/db/old-core.db S=$PWD/.device/e1/oldcore/suites B=sdpa-flash,sdpa-cudnn,sdpa-math,naive F="seqlen_q<=4096"
for s in correctness determinism; do
  step 50 bash .device/oldcore.sh run --suite $s --backends $B --db $OLDDB --run-id old-$s --log-dir $LOGS
  step 50 flashcore run --suite $S/$s.toml --backends $B --db $DB --run-id new-$s --log-dir $LOGS
done
for who in old-a new old-b; do
  if [ $who = new ]; then step 55 flashcore run --suite $S/fa-paper.toml --backends sdpa-cudnn,sdpa-flash --modes isolated --filter "$F" --db $DB --run-id new-fa-paper --log-dir $LOGS
  else step 55 bash .device/oldcore.sh run --suite fa-paper --backends sdpa-cudnn,sdpa-flash --modes isolated --filter "$F" --db $OLDDB --run-id $who-fa-paper --log-dir $LOGS; fi
done
x flashcore db merge $OLDDB $DB
x flashcore compare old-a-fa-paper old-b-fa-paper --db $DB
x flashcore compare old-a-fa-paper new-fa-paper --db $DB
x flashcore compare old-b-fa-paper new-fa-paper --db $DB
(cd /tmp && tar czf $OUT/b-fclogs.tgz fclogs); save; ls -la $OUT; echo "total $SECONDS s"
