"""Check neural (or any) generative models against grid reference solutions of their MFG."""

import importlib as _importlib

#: public name -> module, loaded on first use (PEP 562), so that ``mfgpde validate --help`` and the
#: CLI's start do not import the validator's NumPy/SciPy/Numba stack
_LAZY = {**dict.fromkeys(["density_metrics", "kl_divergence", "wasserstein2"], ".metrics"),
         **dict.fromkeys(["ModelError", "as_model", "load_model"], ".models"),
         **dict.fromkeys(["validate_flow", "validate_score"], ".validator")}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        value = getattr(_importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mfgpde.validate' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
