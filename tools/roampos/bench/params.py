"""Bench rows for the parameter store: write time and flash blocks programmed
per parameter write, measured by the firmware's own store (firmware/params_store.py)
in MicroPython on VfsLfs2 over a RAM block device that counts block writes."""
import json
import os
import subprocess
import tempfile
from typing import List, Tuple

from roampos import ROOT
from roampos.vterm.process import micropython_binary

__all__ = ["rows"]

WRITES = 50

_SCRIPT = r"""
import json, time, vfs
from firmware import params_schema as schema, params_store as store

class Flash:
    def __init__(self, n):
        self.mem = bytearray(n * 4096); self.n = n; self.writes = 0
    def readblocks(self, b, buf, off=0):
        o = b * 4096 + off; buf[:] = self.mem[o:o + len(buf)]
    def writeblocks(self, b, buf, off=None):
        o = b * 4096 + (off or 0); self.mem[o:o + len(buf)] = buf; self.writes += 1
    def ioctl(self, op, arg):
        return {4: self.n, 5: 4096, 6: 0}.get(op)

dev = Flash(64)
vfs.VfsLfs2.mkfs(dev)
vfs.mount(vfs.VfsLfs2(dev), "/b")
store.DIR = "/b/p"
s = json.load(open(SET))
ver, recs = schema.split(s)
store.recover()
store.commit(recs, ver)
out = {}
for label, make in (("set", lambda i: {"r310000": dict(store.get("r310000"), name="S%d" % i)}),
                    ("switch", lambda i: {"active": {"region": "440300" if i % 2 else "310000"}})):
    w0 = dev.writes; t = 0
    for i in range(N):
        ch = make(i)
        t0 = time.ticks_us(); store.commit(ch); t += time.ticks_diff(time.ticks_us(), t0)
    out[label] = [(dev.writes - w0) / N, t / N / 1000]
print("RESULT " + json.dumps(out))
"""


def rows() -> List[Tuple[str, str, str]]:
    from roampos.provision import load_set

    with tempfile.TemporaryDirectory() as tmp:
        s = load_set(os.path.join(ROOT, "examples", "params", "shanghai-merchant.json"))
        path = os.path.join(tmp, "set.json")
        with open(path, "w") as f:
            json.dump(s, f)
        script = os.path.join(tmp, "bench.py")
        with open(script, "w") as f:
            f.write("SET = %r\nN = %d\n" % (path, WRITES) + _SCRIPT)
        env = dict(os.environ, MICROPYPATH=os.pathsep.join([".frozen", ROOT]))
        r = subprocess.run([micropython_binary(), "-X", "heapsize=512K", script], cwd=ROOT,
                           capture_output=True, text=True, timeout=120, env=env)
    line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
    if not line:
        return [("params: bench failed", (r.stdout + r.stderr)[-200:], "")]
    res = json.loads(line[0][7:])
    return [
        ("params: write time, profile field (unix port, RAM flash)", "%.2f ms" % res["set"][1], "< 100 ms"),
        ("params: flash blocks programmed per profile write", "%.1f" % res["set"][0], "<= 16"),
        ("params: write time, region switch", "%.2f ms" % res["switch"][1], "< 100 ms"),
        ("params: flash blocks programmed per region switch", "%.1f" % res["switch"][0], "<= 16"),
    ]


if __name__ == "__main__":
    for row in rows():
        print("%-60s %12s   target %s" % row)
