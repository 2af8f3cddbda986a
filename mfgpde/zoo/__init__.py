"""The benchmark zoo: named MFGs whose certified grid references rate generative models.

>>> import mfgpde.zoo as zoo
>>> [e.name for e in zoo.list()][:2]
['cnf-checkerboard', 'vp-checkerboard']

``list()`` the catalogue (:mod:`mfgpde.zoo.catalogue`); ``reference(name)`` the stored reference,
built on first use (:mod:`mfgpde.zoo.store`); ``score(name, model, kind)`` the rating of a model
with every metric's error bar (:mod:`mfgpde.zoo.rating`). From the shell: ``mfgpde zoo list``,
``mfgpde zoo build NAME|--all``, ``mfgpde zoo score NAME --model MOD:FN --kind KIND --out DIR``.
"""

from __future__ import annotations

import builtins

from .. import lazy as _lazy

#: public name -> module, loaded on first use (PEP 562): the CLI registers ``mfgpde zoo`` at every
#: start, and the catalogue's toys import SciPy's special functions (0.25 s of ``mfgpde --help``)
_LAZY = {**dict.fromkeys(["ENTRIES", "Entry", "entry", "exact_model"], ".catalogue"), "score": ".rating",
         **dict.fromkeys(["build", "cache_dir", "reference"], ".store")}

__all__ = sorted([*_LAZY, "list"])

__getattr__, __dir__ = _lazy.attach(__name__, _LAZY)


def list():  # the name the catalogue API is known by: zoo.list()
    """Every entry of the catalogue, in order (a list of :class:`Entry`)."""
    from .catalogue import ENTRIES

    return builtins.list(ENTRIES.values())
