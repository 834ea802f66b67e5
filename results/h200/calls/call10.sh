source .device/calls/env.sh
mkdir -p /opt/flashinfer-ws
python3 -m pip install -q --no-deps --no-index --target /opt/peers --upgrade .device/p4/*.whl 2>&1 | grep -vi warn
python3 -m pip install -q --no-deps --no-index --target /opt/noxsite .device/p4/nox/*.whl 2>&1 | grep -vi warn
tar xzf .device/p4/fi-cache.tgz -C /opt/flashinfer-ws
source .device/calls/env.sh
export PYTHONPATH=$PYTHONPATH:/opt/noxsite
date -u
x python3 -c "from harness.build import load_ops; load_ops(verbose=False); print('kernels built')"
x timeout 150 flashcore run --suite seed-claims --db "$DB" --run-id h200-seed-claims --log-dir /tmp/fclogs
x flashcore audit suites/claims/seeds.toml --db "$DB" --out /tmp/audit
(cd /tmp/audit && tar czf "$OUT/audit.tgz" .)
save
for r in a b; do
  x timeout 120 flashcore run --suite fa-paper --rounds 3 --modes isolated --backends sdpa-cudnn,cudnn-frontend,flashinfer-fa3,flashcore-bleeding-edge --filter "seqlen_q>=4096" --db "$DB" --run-id h200-rounds-$r --log-dir /tmp/fclogs
  save
done
x flashcore compare h200-rounds-a h200-rounds-b --db "$DB"
x timeout 100 python3 -m nox -s bench
x timeout 100 python3 -m nox -s regress
tar czf "$OUT/benchmarks.tgz" results/benchmarks 2>/dev/null
save
