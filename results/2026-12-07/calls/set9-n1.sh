# N1 (seventh set, first call): FA4's first part, pydantic and FA4's wheels staged for N2. Kernel v9 (the dynamic
# hand-off through a 16-byte bulk copy into a shared slot, on the slot's mbarriers) and v10 (v9 + each K load one
# block ahead of the V before it, a tile's first K before its Q), attn_check binaries built off the GPU (nvcc 13.0,
# sm_90a): correctness (bshd every variant, bhsd on the dynamic ones) and the sanitizers, run side by side (none of
# it is timed); the hand-off probe's seven forms under synccheck and racecheck; then timing, alone on the GPU:
# v8 (main), v9, v10 on variants 4 (one tile, turns) and 12 (dyn pp sec8). Meanwhile the torch ops are built for
# v9 + the dynamic defaults (N2 builds v10's if v10 is chosen). Decision (kept in /opt/be-decision for N2, N3):
# v10 if v9 and v10 are both correct, clean under synccheck, racecheck and memcheck and each not slower than the
# one before; else v9 if it is; else none (main: v8, v6's defaults).
t0=$SECONDS
mkdir -p /opt/fa4parts /opt/peers && cp .device/l1/cu13.part00 /opt/fa4parts/
python3 -m pip install -q --no-deps --no-index --target /opt/peers .device/l1/annotated_types*.whl .device/l1/pydantic*.whl .device/l1/typing_*.whl 2>&1 | grep -vi warn
rm -rf /opt/fa4b && python3 -m pip install -q --no-deps --no-index --target /opt/fa4b .device/l1/*cutlass*.whl .device/l1/flash_attn_4*.whl .device/l1/quack*.whl .device/l1/torch_c_dlpack*.whl .device/l1/apache_tvm_ffi-0.1.15*.whl 2>&1 | grep -vi warn
source .device/l/env.sh
DEADLINE=${DEADLINE_N1:-400}
BINS=.device/l1 TAG=n1; source .device/l/checks.sh
wait $bp; cat /tmp/build.log
dec=$(cat /opt/be-decision)
case "$dec" in *v10*) git apply .device/l/v10.patch ;; esac
case "$dec" in *v9*) ;; *) git apply -R .device/l/dyn-defaults.diff; git apply -R .device/l/v9.patch ;; esac
git status --short kernels | head; find kernels -type f | sort | xargs md5sum > /opt/be.md5
source .device/l/v12.sh
ls -la $OUT; echo "total $SECONDS s"
