#!/usr/bin/env bash
# Prepare an offline GPU machine that already has torch: install carried wheels (.whl/, from
# `pip download`), then flashcore itself without touching torch. Source it: `. scripts/device_setup.sh`.
set -e
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile .whl/*.whl 2>&1 | grep -v -i "warning" || true
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | grep -v -i "warning" || true
if [ -d /opt/fa4site ]; then
  export PYTHONPATH=/opt/fa4site:/opt/fa4site/nvidia_cutlass_dsl/dsl_packages${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
python3 -c "import torch, harness; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
set +e
