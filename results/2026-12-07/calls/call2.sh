# L1: FA4's first part staged; peers installed; the kernel's checker (both layouts) and sanitizers; the GPU
# tests; two shards on one GPU; the serving suites (without FA4, which comes in the next call)
mkdir -p /opt/fa4parts /opt/peers && cp .device/fa4/a1/cu13.part00 /opt/fa4parts/
python3 -m pip install -q --no-deps --no-index --target /opt/peers .device/e1/wh/*.whl 2>&1 | grep -vi warn
source .device/calls/env.sh
DEADLINE=565
date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit,temperature.gpu --format=csv
x flashcore env
x python3 -c "from harness.tools.build import load_ops; load_ops(verbose=False); print('kernels built')"
mkdir -p build && x nvcc -gencode=arch=compute_90a,code=sm_90a -O3 -std=c++17 -lineinfo -I kernels/include -I kernels kernels/bleeding_edge.cu kernels/tools/attn_check.cu -o build/attn_check
step 40 build/attn_check --correct --all-variants
step 40 build/attn_check --correct --all-variants --bhsd
step 200 python3 -m pytest -q -p no:cacheprovider -m gpu -k "not flashinfer" tests/test_kernels_gpu.py tests/test_backward_gpu.py tests/test_serving_gpu.py tests/test_shards.py tests/test_harness_gpu.py tests/test_timing_modes.py
step 60 flashcore run --suite smoke --gpus 0,0 --run-id shards-0-0 --db $DB --log-dir $LOGS
x python3 scripts/check_sharded_run.py $DB shards-0-0
step 100 flashcore run --suite decode --db $DB --run-id decode --log-dir $LOGS
step 80 flashcore run --suite window --db $DB --run-id window --log-dir $LOGS
step 80 flashcore run --suite varlen --db $DB --run-id varlen --log-dir $LOGS
for t in memcheck racecheck synccheck; do step 45 compute-sanitizer --tool $t --error-exitcode 9 build/attn_check --small --all-variants; done
(cd /tmp && tar czf $OUT/l1-fclogs.tgz fclogs) ; save; ls -la $OUT; echo "total $SECONDS s"
