"""Where the heap goes at boot: run the firmware step by step on the vterm's
MicroPython (with the ROMFS, as the vterm boots) and print heap in use per step.

    python -m roampos.vterm.heapprobe [--heap 256K] [--no-romfs] [--params P]
"""
import argparse
import os
import subprocess
import sys
import tempfile

from roampos import ROOT
from roampos.image import build
from roampos.vterm.process import LAUNCH, compiled_vhw, ensure_romfs, micropython_command

PROBE = os.path.join(ROOT, "tools", "vterm", "heapprobe.py")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m roampos.vterm.heapprobe", description=__doc__.split("\n")[0])
    p.add_argument("--heap", default="256K", help="large enough that nothing fails while measuring")
    p.add_argument("--no-romfs", action="store_true", help="code in the littlefs image (heap)")
    p.add_argument("--params", help="parameter set to bake in")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="roampos-probe-") as d:
        flash = os.path.join(d, "flash.img")
        rom = None if a.no_romfs else ensure_romfs(flash, True)
        build(flash, "vterm", params=a.params, code=rom is None)
        from roampos.vterm.hw import Hardware
        hw = Hardware(d)  # the device models, outside the heap being measured
        env = dict(os.environ, ROAMPOS_FLASH=flash, ROAMPOS_LAUNCH=LAUNCH, **hw.env())
        env.pop("ROAMPOS_CTRL", None)
        if rom is None:
            env["ROAMPOS_VHW"] = compiled_vhw()
        r = subprocess.run(micropython_command(rom, a.heap) + [PROBE], env=env, cwd=d)
        return r.returncode


if __name__ == "__main__":
    sys.exit(main())
