# The vterm's `machine`: the unix port's built-in one (mem8, Signal, ...) plus the reset a
# board's has. `mpremote reset` runs "import machine; machine.reset()": without it that is an
# AttributeError (unseen: mpremote does not follow) and the application stays at the REPL.
# The built-in module is extensible: this file, found first on sys.path, takes its place.
import sys

_path = sys.path
sys.path = ()  # so that the import below finds the built-in, not this file
try:
    from machine import *  # noqa: F401,F403
finally:
    sys.path = _path
del _path, sys
from vhw import reset  # noqa: E402,F401
