"""The compiled hot path (roampos.accel): used only for the source it was built from."""
from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys

import pytest

import roampos
import roampos.host
from roampos import accel

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(roampos.__file__)))
HANDLER = "roampos.host.handler"


def _built() -> bool:
    return accel._manifest() is not None


def _require_build() -> None:
    if not _built():
        if os.environ.get("ROAMPOS_NO_SKIP"):
            pytest.fail("no compiled host modules: `make setup` builds them (python -m roampos.accel_build)")
        pytest.skip("host modules not compiled here")


def _probe(env_extra: dict, pythonpath: str = "") -> str:
    """Which of handler/iso a fresh interpreter runs compiled, as 'handler=<bool> iso=<bool>'."""
    env = dict(os.environ, **env_extra)
    if "ROAMPOS_PURE" not in env_extra:
        env.pop("ROAMPOS_PURE", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    code = ("import roampos.host.handler, roampos.iso; from roampos import accel;"
            "print('handler=%s iso=%s' % (accel.compiled('roampos.host.handler'), accel.compiled('roampos.iso')))")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True, timeout=60).stdout.strip()


def test_the_test_run_exercises_the_compiled_modules():
    # What CI tests is what `roampos host` runs after `make setup`: the compiled hot path.
    _require_build()
    if os.environ.get("ROAMPOS_PURE"):
        pytest.skip("ROAMPOS_PURE set for this run")
    import roampos.host.handler  # noqa: F401
    for name in accel.MODULES:
        __import__(name)
        assert accel.compiled(name), f"{name} runs interpreted: {accel.status()}"
    assert accel.status().startswith(f"compiled {len(accel.MODULES)}/{len(accel.MODULES)}")


def test_pure_python_on_request():
    _require_build()
    assert _probe({"ROAMPOS_PURE": "1"}) == "handler=False iso=False"
    assert _probe({}) == "handler=True iso=True"


def test_an_edited_module_runs_from_its_source_not_the_stale_build(tmp_path):
    # A developer edits handler.py and runs the tests before `make setup` rebuilt it: the old
    # compiled code must not run in its place; the untouched modules stay compiled.
    _require_build()
    copy = tmp_path / "tools"
    shutil.copytree(os.path.join(TOOLS, "roampos"), copy / "roampos",
                    ignore=shutil.ignore_patterns("__pycache__", "vterm"))
    shutil.copytree(os.path.join(TOOLS, "data"), copy / "data")   # the ledger's reference tables
    with open(copy / "roampos" / "host" / "handler.py", "a") as fh:
        fh.write("\n# edited after the build\n")
    assert _probe({}, pythonpath=str(copy)) == "handler=False iso=True"


def test_the_finder_checks_the_digest_before_it_serves_an_extension(tmp_path):
    source = os.path.join(TOOLS, "roampos", "host", "handler.py")
    so = str(tmp_path / "handler.so")
    finder = accel._Finder(str(tmp_path), {HANDLER: {"sha256": "0" * 64, "file": "handler.so"}})
    spec = finder.find_spec(HANDLER, roampos.host.__path__)
    assert spec.origin == source and finder.stale == [HANDLER] and not finder.loaded
    finder = accel._Finder(str(tmp_path), {HANDLER: {"sha256": accel.digest(source), "file": "handler.so"}})
    assert finder.find_spec(HANDLER, roampos.host.__path__).origin == source   # its extension is gone
    open(so, "wb").close()
    spec = finder.find_spec(HANDLER, roampos.host.__path__)
    assert isinstance(spec.loader, importlib.machinery.ExtensionFileLoader) and spec.origin == so
    assert finder.loaded == [HANDLER] and finder.stale == [HANDLER]
    assert finder.find_spec("roampos.host.settle", roampos.host.__path__) is None  # not listed: untouched


def test_a_build_for_another_interpreter_is_ignored(tmp_path):
    (tmp_path / accel.MANIFEST).write_text('{"python": "cpython-27", "modules": {}}')
    assert accel._manifest(str(tmp_path)) is None
    (tmp_path / accel.MANIFEST).write_text("not json")
    assert accel._manifest(str(tmp_path)) is None
