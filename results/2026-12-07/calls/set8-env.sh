# sourced at the start of every device call: where the staged backends are, a timed step helper, the database
set -o pipefail
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
pp=""
for d in /opt/peers /opt/fa4site /opt/fa4site/nvidia_cutlass_dsl/dsl_packages; do [ -d "$d" ] && pp=$pp${pp:+:}$d; done
export PYTHONPATH=$pp
export FLASHINFER_WORKSPACE_BASE=/opt/flashinfer-ws FLASHINFER_CUDA_ARCH_LIST=9.0a MAX_JOBS=16
export DB=/opt/db/flashcore.db LOGS=/tmp/fclogs
mkdir -p /opt/db $LOGS /opt/flashinfer-ws
python3 -m pip install -q --no-deps --no-build-isolation -e . >/tmp/pip-e.log 2>&1 || { echo "editable install failed"; tail /tmp/pip-e.log; }
x() { echo "+ $*"; local t0=$SECONDS; "$@"; local rc=$?; echo "exit $rc wall $((SECONDS-t0)) s: $*"; return 0; }
save() { [ -f "$DB" ] || return 0; flashcore db copy "$DB" "$OUT/" >/dev/null; }  # nothing to copy before the first harness run
# step CAP CMD...: run CMD under a timeout of at most CAP seconds, and never past the call's DEADLINE
# (seconds since the script started); a step with under 20 s left is skipped and says so
step() {
  local cap=$1; shift
  local left=$(( ${DEADLINE:-560} - SECONDS ))
  if [ "$left" -lt 20 ]; then echo "skipped (no time left): $*"; return 0; fi
  [ "$cap" -gt $((left - 10)) ] && cap=$((left - 10))
  x timeout -s INT -k 10 "$cap" "$@"
  save
}
