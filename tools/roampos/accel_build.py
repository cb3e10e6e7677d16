"""Build the compiled host modules that roampos.accel loads: `python -m roampos.accel_build [--status]`."""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from typing import List, Optional

from .accel import BUILD_DIR, MANIFEST, MODULES, digest, source, status

__all__ = ["build", "main"]


def build(root: str = BUILD_DIR, jobs: int = 2) -> dict:
    """Compile MODULES into `root` (replaced whole, so a reader never sees half a build)."""
    import Cython
    from Cython.Build import cythonize
    from setuptools import Extension
    from setuptools.dist import Distribution
    work = tempfile.mkdtemp(prefix="roampos-accel-")
    out = root + ".new"
    shutil.rmtree(out, ignore_errors=True)
    try:
        digests = {name: digest(source(name)) for name in MODULES}
        exts = cythonize([Extension(name, [source(name)]) for name in MODULES], build_dir=work, quiet=True,
                         nthreads=jobs, compiler_directives={
                             "language_level": 3,
                             # Annotations are documentation here, never C types or runtime checks:
                             # the compiled module must behave exactly as the interpreted one.
                             "annotation_typing": False,
                             "binding": True})
        dist = Distribution({"name": "roampos-accel", "ext_modules": exts})
        cmd = dist.get_command_obj("build_ext")
        cmd.build_lib, cmd.build_temp, cmd.parallel = out, work, jobs
        cmd.ensure_finalized()
        cmd.run()
        modules = {}
        for name in MODULES:
            rel = os.path.relpath(cmd.get_ext_fullpath(name), out)
            modules[name] = {"sha256": digests[name], "file": rel}
        data = {"python": sys.implementation.cache_tag, "cython": Cython.__version__, "modules": modules}
        with open(os.path.join(out, MANIFEST), "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
        shutil.rmtree(root, ignore_errors=True)
        os.replace(out, root)
        return data
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)


def main(argv: Optional[List[str]] = None) -> int:
    import argparse
    p = argparse.ArgumentParser(prog="python -m roampos.accel_build", description=__doc__.split("\n")[0])
    p.add_argument("--status", action="store_true", help="only say what is built")
    args = p.parse_args(argv)
    if not args.status:
        try:
            build()
        except Exception as exc:  # no compiler, no Cython, no headers: the host runs interpreted
            print(f"roampos.accel: not built ({type(exc).__name__}: {exc}); the host runs as pure Python",
                  file=sys.stderr)
            return 1
    print(status())
    return 0


if __name__ == "__main__":
    sys.exit(main())
