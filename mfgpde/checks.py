"""Input checks shared by the model classes: a parameter that is not a real number is refused by name."""

from __future__ import annotations

import numbers

import numpy as np


def real(name, value):
    """``float(value)`` for a real number (a NumPy scalar or a Python int/float, not a bool or a string).

    Raises
    ------
    TypeError
        Naming the parameter, for strings, booleans, None and other non-numbers: ``float("abc")``
        would otherwise surface as "could not convert string to float", which names nothing.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    return float(value)
