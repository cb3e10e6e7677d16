"""RoamPOS host-side tools: virtual terminal, image builder, provisioning, acquirer host."""
import os

__all__ = ["ROOT", "__version__"]
__version__ = "0.1.0"

# The repository root: the package is installed in editable mode from tools/,
# and the vterm, the image builder and the tests read the firmware tree from here.
ROOT = os.environ.get("ROAMPOS_ROOT") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The host's hot modules run compiled where `make setup` built them for this exact source
# (roampos.accel; ROAMPOS_PURE=1 turns it off).
from . import accel as _accel  # noqa: E402

_accel.install()
