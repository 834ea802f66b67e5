# K4 (right after K3, same warm machine): FA4 assembled, cuDNN's frontend and nvtx installed; fa-paper with
# every installed backend, both timing modes, correctness and determinism included (timed)
t0=$SECONDS
mkdir -p /opt/fa4site /opt/peers
cat /opt/fa4parts/cu13.part00 .device/k4/cu13.part01 | xz -dc -T0 | tar x -C /opt/fa4site || echo "fa4 part a failed (machine went cold?)"
rm -rf /opt/fa4b && python3 -m pip install -q --no-deps --no-index --target /opt/fa4b .device/k4/*cutlass*.whl .device/k4/flash_attn_4*.whl .device/k4/quack*.whl .device/k4/torch_c_dlpack*.whl .device/k4/apache_tvm_ffi-0.1.15*.whl 2>&1 | grep -vi warn
cp -r --update=none /opt/fa4b/* /opt/fa4site/
python3 -m pip install -q --no-deps --no-index --target /opt/peers .device/k4/nvidia_cudnn*.whl .device/k4/nvtx*.whl .device/k4/pydantic*.whl .device/k4/annotated*.whl .device/k4/typing*.whl 2>&1 | grep -vi warn
echo "staged in $((SECONDS - t0)) s"
source .device/calls/env.sh
DEADLINE=${DEADLINE_K4:-575}
date -u; nvidia-smi --query-gpu=name,clocks.max.sm,power.limit,temperature.gpu --format=csv
x python3 -c "from flash_attn.cute import flash_attn_func; import flash_attn_interface, cudnn; print('fa4, fa3 and cudnn frontend', cudnn.backend_version())"
x python3 -c "from harness.tools.build import load_ops; load_ops(verbose=False); print('kernels built')"
step 530 flashcore run --suite fa-paper --db $DB --run-id k-fa-paper --log-dir $LOGS
save; ls -la $OUT; echo "total $SECONDS s"
