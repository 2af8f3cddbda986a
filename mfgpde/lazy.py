"""Names of a package loaded on first use (PEP 562), so that importing it stays cheap."""

from __future__ import annotations

import importlib


def attach(package: str, mapping: dict[str, str]):
    """``(__getattr__, __dir__)`` for ``package`` whose public ``name`` lives in module ``mapping[name]``.

    A name is imported from its module on first access and then stored in the package's
    namespace, so later accesses are plain attribute lookups.
    """
    import sys

    def __getattr__(name):
        if name in mapping:
            value = getattr(importlib.import_module(mapping[name], package), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(mapping))

    return __getattr__, __dir__
