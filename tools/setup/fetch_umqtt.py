"""Fetch micropython-lib's umqtt.simple for the firmware's lib/.

PyPI carries it as the sdist `micropython-umqtt.simple`, which pip can download
but not build (it has neither setup.py nor pyproject.toml). We let pip resolve
and fetch it from whatever index pip is configured with, then unpack the module
ourselves. No registry host is named here: the URL is the one pip chose.
"""
import io
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import ssl

PACKAGE = "micropython-umqtt.simple==1.3.4"
MEMBER = "umqtt/simple.py"


def pip_chosen_url() -> str:
    # pip prints the artifact it fetched in its (failing) metadata step.
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             "-d", d, "-v", PACKAGE], capture_output=True, text=True)
        for name in os.listdir(d):  # a future pip may succeed and leave the file
            if name.endswith(".tar.gz"):
                return "file://" + os.path.join(d, name), open(os.path.join(d, name), "rb").read()
        m = re.search(r"((?:https?|file)://\S+?\.tar\.gz)", r.stdout + r.stderr)
        if not m:
            sys.exit("fetch_umqtt: pip did not report where it fetched %s:\n%s" % (PACKAGE, r.stderr[-2000:]))
        return m.group(1), None


def main(dest: str) -> int:
    url, data = pip_chosen_url()
    if data is None:
        ctx = ssl.create_default_context(cafile=os.environ.get("PIP_CERT") or None)
        with urllib.request.urlopen(url, context=ctx, timeout=60) as f:
            data = f.read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for m in tar.getmembers():
            if m.name.endswith("/" + MEMBER):
                src = tar.extractfile(m).read()
                break
        else:
            sys.exit("fetch_umqtt: %s not in %s" % (MEMBER, url))
    out = os.path.join(dest, "umqtt")
    os.makedirs(out, exist_ok=True)
    open(os.path.join(out, "__init__.py"), "w").close()
    with open(os.path.join(out, "simple.py"), "wb") as f:
        f.write(src)
    print("fetch_umqtt: %s -> %s (%d bytes)" % (PACKAGE, out, len(src)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "lib"))
