# Device call E1: the seed claims measured and audited on the H200 (SGLang/vLLM through flashinfer-fa3), then
# the previous core (dccef07, from .device/e1/oldcore) against the current core in the same call.
set -o pipefail
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
here=.device/e1
t00=$SECONDS
python3 -m pip install -q --no-deps --no-index --target /opt/peers $here/wh/*.whl 2>&1 | grep -vi warn
export PYTHONPATH=/opt/peers
export FLASHINFER_WORKSPACE_BASE=/opt/flashinfer-ws FLASHINFER_CUDA_ARCH_LIST=9.0a MAX_JOBS=16
mkdir -p /opt/db /tmp/fclogs /opt/flashinfer-ws
python3 -m pip install -q --no-deps --no-build-isolation -e . >/tmp/pip-e.log 2>&1 || tail /tmp/pip-e.log
x() { echo "+ $*"; local t0=$SECONDS; "$@"; local rc=$?; echo "exit $rc wall $((SECONDS-t0)) s: $*"; return 0; }
old() { (cd $here/oldcore && PYTHONPATH=$PWD:/opt/peers python3 -c "import sys; from harness.cli import app; sys.argv[0]='flashcore'; app()" "$@"); }
DB=/opt/db/h200.db OLDDB=/opt/db/oldcore.db
date -u; git log -1 --format='commit %H' 2>/dev/null
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit,temperature.gpu --format=csv
x python3 -c "import torch, pydantic, flashinfer; print('torch', torch.__version__, 'cudnn', torch.backends.cudnn.version(), 'flashinfer', flashinfer.__version__)"
echo "setup $((SECONDS-t00)) s"
# 1. seed claims (the backends the claims name; fa3's wheel is bf16-only, so the fp16 claims fall to flashinfer-fa3)
x timeout 260 flashcore run --suite seed-claims --backends sdpa-flash,sdpa-cudnn,sdpa-math,naive,fa3,flashinfer-fa3,flashcore-phase4,flashcore-phase4x,flashcore-bleeding-edge --db $DB --run-id h200-seed-claims --log-dir /tmp/fclogs
x flashcore audit suites/claims/seeds.toml --db $DB --out /tmp/audit
flashcore db copy $DB $OUT/ >/dev/null
# 2. previous core vs current core: same backends, same shapes; old, new, old
B=sdpa-flash,sdpa-cudnn,sdpa-math,naive
x timeout 45 old run --suite correctness --backends $B --filter dtype=bfloat16 --db $OLDDB --run-id old-correctness --log-dir /tmp/fclogs
x timeout 45 flashcore run --suite correctness --backends $B --filter dtype=bfloat16 --db $DB --run-id new-correctness --log-dir /tmp/fclogs
x timeout 40 old run --suite determinism --backends $B --db $OLDDB --run-id old-determinism --log-dir /tmp/fclogs
x timeout 40 flashcore run --suite determinism --backends $B --db $DB --run-id new-determinism --log-dir /tmp/fclogs
F="seqlen_q<=4096"
x timeout 55 old run --suite fa-paper --backends sdpa-cudnn,sdpa-flash --modes isolated --filter "$F" --db $OLDDB --run-id old-fa-paper-a --log-dir /tmp/fclogs
x timeout 55 flashcore run --suite fa-paper --backends sdpa-cudnn,sdpa-flash --modes isolated --filter "$F" --db $DB --run-id new-fa-paper --log-dir /tmp/fclogs
x timeout 55 old run --suite fa-paper --backends sdpa-cudnn,sdpa-flash --modes isolated --filter "$F" --db $OLDDB --run-id old-fa-paper-b --log-dir /tmp/fclogs
flashcore db copy $DB $OUT/ >/dev/null; cp $OLDDB* $OUT/ 2>/dev/null
(cd /tmp && tar czf $OUT/e1-logs.tgz fclogs audit 2>/dev/null)
ls -la $OUT; echo "total $((SECONDS-t00)) s"
