# sourced by J2/J3 (same warm machine as J1): the kernel J1 chose (/opt/be-decision: "v8" and/or "dyn"), and the
# torch ops J1 built kept when the kernel sources are the same bytes (the tree is copied afresh each call)
dec=$(cat /opt/be-decision 2>/dev/null || echo "none (machine went cold?)")
case "$dec" in *v8*) git apply .device/j/v8-mainloop.patch ;; esac
case "$dec" in *dyn*) git apply .device/j/dyn-defaults.diff ;; esac
echo "kernel from J1: $dec"
if md5sum -c --quiet /opt/be.md5 2>/dev/null; then touch -d '2026-12-01 00:00' $(find kernels -type f); echo "kernel sources as built in J1"
else echo "kernel sources differ from J1's: the ops rebuild"; fi
