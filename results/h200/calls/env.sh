# sourced at the start of every device call
set -o pipefail
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
pp=""
for d in /opt/peers /opt/fa4site /opt/fa4site/nvidia_cutlass_dsl/dsl_packages; do [ -d "$d" ] && pp=$pp${pp:+:}$d; done
export PYTHONPATH=$pp
export FLASHINFER_WORKSPACE_BASE=/opt/flashinfer-ws FLASHINFER_CUDA_ARCH_LIST=9.0a MAX_JOBS=16
export DB=/opt/db/h200.db
mkdir -p /opt/db /tmp/fclogs
python3 -m pip install -q --no-deps --no-build-isolation -e . >/tmp/pip-e.log 2>&1 || { echo "editable install failed"; tail /tmp/pip-e.log; }
x() { echo "+ $*"; local t0=$SECONDS; "$@"; local rc=$?; echo "exit $rc wall $((SECONDS-t0)) s: $*"; return 0; }
save() { python3 scripts/db_copy.py "$DB" "$OUT/" >/dev/null && ls -la "$OUT"; }
