# K3: FA4's first part staged (K4 assembles it); fa3 and pydantic installed; the torch ops built with the new
# kernel defaults; the kernel's GPU tests; the correctness and determinism suites for the kernel (bf16, fp16)
t0=$SECONDS
mkdir -p /opt/fa4parts /opt/peers && cp .device/k3/cu13.part00 /opt/fa4parts/
python3 -m pip install -q --no-deps --no-index --target /opt/peers .device/k3/*.whl 2>&1 | grep -vi warn
source .device/calls/env.sh
DEADLINE=${DEADLINE_K3:-300}
date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit,temperature.gpu --format=csv
x python3 -c "from harness.tools.build import load_ops; load_ops(verbose=False); print('kernels built')"
step 90 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_kernels_gpu.py
step 90 flashcore run --suite correctness --backends flashcore-bleeding-edge --db $DB --run-id k-correctness --log-dir $LOGS
step 60 flashcore run --suite determinism --backends flashcore-bleeding-edge --db $DB --run-id k-determinism --log-dir $LOGS
save; ls -la $OUT; echo "total $SECONDS s"
