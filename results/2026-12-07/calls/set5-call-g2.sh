# G2 (right after G1, same warm machine): FA4 assembled, FA4's wheels, cuDNN's frontend, nvtx and nox installed;
# fa-paper (bf16) with every installed backend, both timing modes, correctness and determinism included (timed)
t0=$SECONDS
mkdir -p /opt/fa4site /opt/peers /opt/nox
cat /opt/fa4parts/cu13.part00 .device/g2/cu13.part01 | xz -dc -T0 | tar x -C /opt/fa4site || echo "fa4 part a failed (machine went cold?)"
rm -rf /opt/fa4b && python3 -m pip install -q --no-deps --no-index --target /opt/fa4b .device/g2/*cutlass*.whl .device/g2/flash_attn_4*.whl .device/g2/quack*.whl .device/g2/torch_c_dlpack*.whl .device/g2/apache_tvm_ffi-0.1.15*.whl 2>&1 | grep -vi warn
cp -r --update=none /opt/fa4b/* /opt/fa4site/
python3 -m pip install -q --no-deps --no-index --target /opt/peers .device/g2/nvidia_cudnn*.whl .device/g2/nvtx*.whl 2>&1 | grep -vi warn
python3 -m pip install -q --no-deps --no-index --target /opt/nox .device/g2/nox*.whl .device/g2/argcomplete*.whl .device/g2/colorlog*.whl .device/g2/dependency_groups*.whl .device/g2/python_discovery*.whl .device/g2/virtualenv*.whl .device/g2/distlib*.whl .device/g2/platformdirs*.whl 2>&1 | grep -vi warn
echo "staged in $((SECONDS - t0)) s"
source .device/calls/keep_build.sh
source .device/calls/env.sh
DEADLINE=${DEADLINE_G2:-570}
date -u; nvidia-smi --query-gpu=name,clocks.max.sm,power.limit,temperature.gpu --format=csv
x python3 -c "from flash_attn.cute import flash_attn_func; import flash_attn_interface, cudnn; print('fa4, fa3 and cudnn frontend', cudnn.backend_version())"
x python3 -c "from harness.tools.build import load_ops; load_ops(verbose=False); print('kernels built')"
step 520 flashcore run --suite fa-paper --db $DB --run-id g-fa-paper --log-dir $LOGS
save; ls -la $OUT; echo "total $SECONDS s"
