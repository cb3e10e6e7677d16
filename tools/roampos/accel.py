"""The host's hot path compiled with Cython, used only where it matches the source it was built from.

A worker's CPU per authorization is what bounds the host (docs/host.md, "Tests and bench"): its
Python, spread thin over decoding, MACs, rules and the statements' wrappers. Compiled unchanged
(no Cython types, annotations ignored, so the semantics are the interpreter's), the same modules
take less CPU per message. `make setup` builds them into the venv (roampos.accel_build);
nothing in the source tree changes and nothing here is required: without a build, with a C
compiler missing, under ROAMPOS_PURE=1, or for a module whose source changed since the build (the
manifest holds each source's SHA-256), the import is the plain Python one.
"""
from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from typing import Dict, List, Optional

__all__ = ["MODULES", "BUILD_DIR", "MANIFEST", "install", "status", "compiled", "source", "digest"]

# The worker's per-message path (profiled with py-spy during a host round): codec and crypto,
# handler, group reads, rules, ledger wrapper, MQTT client and the worker loop. Cold modules
# (settlement, vault, reports, CLI) stay interpreted: compiling them would only cost build time.
MODULES = ("roampos.iso", "roampos.host.handler", "roampos.host.group", "roampos.host.auth",
           "roampos.host.db", "roampos.host.registry", "roampos.host.risk", "roampos.host.totals",
           "roampos.host.wire", "roampos.host.service", "roampos.host.walsync")

BUILD_DIR = os.path.join(sys.prefix, "roampos-accel")
MANIFEST = "manifest.json"
_TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def source(name: str) -> str:
    return os.path.join(_TOOLS, *name.split(".")) + ".py"


def digest(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _manifest(root: str = BUILD_DIR) -> Optional[dict]:
    try:
        with open(os.path.join(root, MANIFEST), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    # An extension is only loadable by the interpreter it was built for.
    if data.get("python") != sys.implementation.cache_tag:
        return None
    return data


class _Finder(importlib.abc.MetaPathFinder):
    """Serves a listed module from its extension when the source on the import path is the one
    it was compiled from; otherwise (edited since the build) the source, as if absent."""

    def __init__(self, root: str, modules: Dict[str, dict]):
        self.root, self.modules = root, modules
        self.loaded: List[str] = []
        self.stale: List[str] = []

    def find_spec(self, name, path=None, target=None):  # type: ignore[no-untyped-def]
        entry = self.modules.get(name)
        if entry is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not (spec.origin or "").endswith(".py"):
            return spec
        try:
            fresh = digest(spec.origin) == entry["sha256"]
        except OSError:
            fresh = False
        so = os.path.join(self.root, entry["file"])
        if not fresh or not os.path.exists(so):
            self.stale.append(name)
            return spec
        self.loaded.append(name)
        return importlib.util.spec_from_file_location(
            name, so, loader=importlib.machinery.ExtensionFileLoader(name, so))


def install(root: str = BUILD_DIR) -> Optional[_Finder]:
    """Put the finder first on sys.meta_path (once); None without a usable build or under ROAMPOS_PURE."""
    if os.environ.get("ROAMPOS_PURE"):
        return None
    for f in sys.meta_path:
        if isinstance(f, _Finder):
            return f
    data = _manifest(root)
    if not data:
        return None
    finder = _Finder(root, data.get("modules", {}))
    sys.meta_path.insert(0, finder)
    return finder


def compiled(module_name: str) -> bool:
    """Whether an imported module runs compiled."""
    mod = sys.modules.get(module_name)
    return bool(mod is not None and not (getattr(mod, "__file__", "") or "").endswith(".py"))


def status() -> str:
    """One line for logs: how the host's hot path runs here."""
    if os.environ.get("ROAMPOS_PURE"):
        return "pure Python (ROAMPOS_PURE set)"
    data = _manifest()
    if not data:
        return "pure Python (not built: python -m roampos.accel_build)"
    fresh = [n for n in MODULES if n in data["modules"] and os.path.exists(source(n))
             and digest(source(n)) == data["modules"][n]["sha256"]]
    line = f"compiled {len(fresh)}/{len(MODULES)} hot modules (Cython {data.get('cython', '?')})"
    stale = [n for n in MODULES if n not in fresh]
    if stale:
        line += "; pure Python for " + ", ".join(stale) + " (source changed since the build: make setup)"
    return line
