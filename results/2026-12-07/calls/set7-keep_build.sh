# sourced by L2/L3 (same warm machine as N1): the kernel N1 chose (/opt/be-decision: "v9 v10 dyn", "v9 dyn" or "none"), and the
# torch ops built in N1 kept when the kernel sources are the same bytes (the tree is copied afresh each call)
dec=$(cat /opt/be-decision 2>/dev/null || echo "none (machine went cold?)")
case "$dec" in *v9*) git apply .device/l/v9.patch ;; esac
case "$dec" in *dyn*) git apply .device/l/dyn-defaults.diff ;; esac
case "$dec" in *v10*) git apply .device/l/v10.patch ;; esac
echo "kernel from N1: $dec"
if md5sum -c --quiet /opt/be.md5 2>/dev/null; then touch -d '2026-12-01 00:00' $(find kernels -type f); echo "kernel sources as built in N1"
else echo "kernel sources differ from N1's: the ops rebuild"; fi
