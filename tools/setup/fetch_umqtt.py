"""Fetch micropython-lib's umqtt.simple for the firmware's lib/.

PyPI carries it as the sdist `micropython-umqtt.simple`, which pip can download
but not build (it has neither setup.py nor pyproject.toml). We let pip resolve
and fetch it from whatever index pip is configured with (its credentials,
proxy and certificates included) and keep what it unpacked before its build
step failed (--no-clean, in a temporary directory of our own). No registry
host is named here, and nothing is fetched twice.
"""
import os
import subprocess
import sys
import tarfile
import tempfile

PACKAGE = "micropython-umqtt.simple==1.3.4"
MEMBER = "umqtt/simple.py"


def fetched_source() -> bytes:
    with tempfile.TemporaryDirectory() as work:
        dl, tmp = os.path.join(work, "dl"), os.path.join(work, "tmp")
        os.makedirs(tmp)
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                            "--no-clean", "-d", dl, PACKAGE], capture_output=True, text=True,
                           env=dict(os.environ, TMPDIR=tmp))
        # A future pip may build it and leave the archive; today's leaves the unpacked sdist.
        for name in os.listdir(dl) if os.path.isdir(dl) else ():
            if name.endswith(".tar.gz"):
                with tarfile.open(os.path.join(dl, name), mode="r:gz") as tar:
                    for m in tar.getmembers():
                        if m.name.endswith("/" + MEMBER):
                            return tar.extractfile(m).read()
        for dirpath, _, filenames in os.walk(tmp):
            path = os.path.join(dirpath, os.path.basename(MEMBER))
            if dirpath.endswith(os.path.dirname(MEMBER)) and os.path.basename(MEMBER) in filenames:
                with open(path, "rb") as f:
                    return f.read()
        sys.exit("fetch_umqtt: pip did not fetch %s:\n%s" % (PACKAGE, (r.stdout + r.stderr)[-2000:]))


def main(dest: str) -> int:
    src = fetched_source()
    out = os.path.join(dest, "umqtt")
    os.makedirs(out, exist_ok=True)
    open(os.path.join(out, "__init__.py"), "w").close()
    with open(os.path.join(out, "simple.py"), "wb") as f:
        f.write(src)
    print("fetch_umqtt: %s -> %s (%d bytes)" % (PACKAGE, out, len(src)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "lib"))
