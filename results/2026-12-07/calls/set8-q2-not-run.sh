# Q2 (one short call): N1's checks of v9 and v10 and the hand-off probe (checks.sh), the timing of v8, v9, v10,
# then kernel v11's variant 13 (v11.sh), all within DEADLINE; no harness runs.
t0=$SECONDS
mkdir -p /opt/peers
python3 -m pip install -q --no-deps --no-index --target /opt/peers .device/q2/*.whl 2>&1 | grep -vi warn
source .device/l/env.sh
DEADLINE=${DEADLINE_Q2:-300}
NO_OPS_BUILD=1 BINS=.device/q2 TAG=q2; source .device/l/checks.sh
source .device/l/v11.sh
ls -la $OUT; echo "total $SECONDS s"
