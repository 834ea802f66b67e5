source .device/calls/env.sh
mkdir -p /opt/fa4parts /opt/fa4b-wheels
cp .device/fa4a1/cu13.part00 /opt/fa4parts/ && cp .device/p1/fa4b/*.whl /opt/fa4b-wheels/
python3 -m pip install -q --no-deps --no-index --target /opt/peers --upgrade .device/p1/peers/*.whl 2>&1 | grep -vi warn
source .device/calls/env.sh
echo "PYTHONPATH=$PYTHONPATH"; date -u
x nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv
x python3 -c "from harness.build import load_ops; load_ops(verbose=True)"
x flashcore env
x python3 -m pytest -q -m gpu tests/test_timing_modes.py -p no:cacheprovider
x flashcore crosscheck --suite fa-paper --filter "seqlen_q=8192,head_dim=128" --backends sdpa-cudnn,cudnn-frontend,flashcore-bleeding-edge --dobench-longer 2000 --db "$DB" --run-id h200-crosscheck-gated --cell-timeout 60 --out-dir /tmp/xc
save
