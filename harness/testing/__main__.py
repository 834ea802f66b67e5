"""``python -m harness.testing faults|exploits|all``: print the FLASHCORE_BACKENDS value (the exploits
include the backward's)."""
import sys

from harness.testing import EXPLOITS, FAULTS, TOOLS, env_value

which = sys.argv[1] if len(sys.argv) > 1 else "all"
groups = {"faults": (FAULTS,), "exploits": (EXPLOITS,), "all": (FAULTS, EXPLOITS, TOOLS)}
if which not in groups:
    sys.exit(f"flashcore: error: {which!r}: allowed {', '.join(groups)}")
print(env_value(*groups[which]))
