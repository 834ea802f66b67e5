source .device/calls/env.sh
python3 -m pip install -q --no-deps --no-index --target /opt/peers --upgrade .device/p3/*.whl 2>&1 | grep -vi warn
python3 -m pip install -q --no-deps --no-index --target /opt/noxsite .device/p3/nox/*.whl 2>&1 | grep -vi warn
[ -f .device/p3/fi-cache.tgz ] && tar xzf .device/p3/fi-cache.tgz -C /opt/flashinfer-ws
source .device/calls/env.sh
date -u
x flashcore env
x timeout 480 flashcore run --suite fa-paper --db "$DB" --run-id h200-fa-paper-all --log-dir /tmp/fclogs
x flashcore run --suite correctness --backends fa3 --filter dtype=float16 --db "$DB" --run-id h200-correctness-fa3-fp16 --log-dir /tmp/fclogs
save
