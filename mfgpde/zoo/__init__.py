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

from .catalogue import ENTRIES, Entry, entry, exact_model
from .rating import score
from .store import build, cache_dir, reference

__all__ = ["ENTRIES", "Entry", "build", "cache_dir", "entry", "exact_model", "list", "reference", "score"]


def list():  # the name the catalogue API is known by: zoo.list()
    """Every entry of the catalogue, in order (a list of :class:`Entry`)."""
    return builtins.list(ENTRIES.values())
