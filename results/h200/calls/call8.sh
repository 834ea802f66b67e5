source .device/calls/env.sh
mkdir -p /opt/fa4site /opt/flashinfer-ws
t0=$SECONDS
cat /opt/fa4parts/cu13.part00 .device/fa4a2/cu13.part01 | xz -dc -T0 | tar x -C /opt/fa4site || echo "fa4 part a failed"
rm -rf /opt/fa4b && python3 -m pip install -q --no-deps --no-index --target /opt/fa4b /opt/fa4b-wheels/*.whl 2>&1 | grep -vi warn
cp -r --update=none /opt/fa4b/* /opt/fa4site/
python3 -m pip install -q --no-deps --no-index --target /opt/peers --upgrade .device/p2/*.whl 2>&1 | grep -vi warn
[ -f .device/p2/fi-cache.tgz ] && tar xzf .device/p2/fi-cache.tgz -C /opt/flashinfer-ws
echo "staged in $((SECONDS - t0)) s"
source .device/calls/env.sh
echo "PYTHONPATH=$PYTHONPATH"; date -u
x python3 -c "import tvm_ffi, flashinfer; from flash_attn.cute import flash_attn_func; print('tvm_ffi', tvm_ffi.__version__, 'flashinfer', flashinfer.__version__, 'fa4 import ok')"
x flashcore env
x flashcore run --suite correctness --backends fa4,flashinfer-fa2,cudnn-frontend --db "$DB" --run-id h200-correctness-peers-all --log-dir /tmp/fclogs
# flashinfer-fa3's fp16 modules come compiled in the next call; bf16 here
x flashcore run --suite correctness --backends flashinfer-fa3 --filter dtype=bfloat16 --db "$DB" --run-id h200-correctness-flashinfer-fa3 --log-dir /tmp/fclogs
x flashcore run --suite determinism --backends fa4,flashinfer-fa3,flashinfer-fa2,cudnn-frontend --db "$DB" --run-id h200-determinism-peers --log-dir /tmp/fclogs
cat /opt/flashinfer-ws/.cache/flashinfer/*/90a/flashcore-jit-times.jsonl 2>/dev/null | tail -20
save
