"""Check neural (or any) generative models against grid reference solutions of their MFG."""

from .. import lazy as _lazy

#: public name -> module, loaded on first use (PEP 562), so that ``mfgpde validate --help`` and the
#: CLI's start do not import the validator's NumPy/SciPy/Numba stack
_LAZY = {**dict.fromkeys(["density_metrics", "kl_divergence", "wasserstein2"], ".metrics"),
         **dict.fromkeys(["ModelError", "as_model", "load_model"], ".models"),
         **dict.fromkeys(["validate_flow", "validate_score"], ".validator")}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = _lazy.attach(__name__, _LAZY)
