# sourced by G2/G3 (same warm machine as G1): the kernel defaults G1 chose, and the torch ops G1 built kept when
# the kernel sources are the same bytes (the tree is copied afresh each call, with new modification times)
if [ "$(cat /opt/be-defaults 2>/dev/null)" = dyn ]; then cp .device/calls/bleeding_edge.dyn-default.cu kernels/bleeding_edge.cu; fi
echo "defaults from G1: $(cat /opt/be-defaults 2>/dev/null || echo 'none (machine went cold?)')"
if md5sum -c --quiet /opt/be.md5 2>/dev/null; then touch -d '2026-12-01 00:00' $(find kernels -type f); echo "kernel sources as built in G1"
else echo "kernel sources differ from G1's: the ops rebuild"; fi
