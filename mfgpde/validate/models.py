"""Adapters that turn a user's model into a checked NumPy callable.

Convention: a model is called as ``f(x, t)`` with ``x`` an ``(n, d)`` float64 array of points
and ``t`` a float, and returns

* ``"velocity"`` / ``"score"``: an ``(n, d)`` array,
* ``"potential"``: an ``(n,)`` array (``(n, 1)`` is accepted).

PyTorch modules and JAX functions are adapted without importing either framework at package
import time: a ``torch.nn.Module`` is detected by duck typing, called under ``no_grad`` on a
tensor with the module's dtype, and its output moved back to NumPy; a JAX function returns
``jax.Array`` objects, which ``numpy.asarray`` converts. A model may also take ``(x, t)`` with
``t`` broadcast to an ``(n, 1)`` column: set ``time_as_column=True``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
import threading
import time

import numpy as np

KINDS = ("velocity", "potential", "score")


class ModelError(RuntimeError):
    """The model raised, or returned NaN/inf, the wrong shape or the wrong dtype; says where."""


def _is_torch_module(obj):
    # duck typing on the class hierarchy: no torch import unless the model is a torch module
    return any((c.__module__ or "").startswith("torch.nn") for c in type(obj).__mro__)


class TorchAdapter:
    """Call a ``torch.nn.Module`` (or torch function) on NumPy arrays, on the model's own device.

    The inputs are created on the device and in the floating dtype of the module's first
    parameter (or buffer): a model trained on a GPU (``cuda``/``mps``) or kept in ``float32`` /
    ``bfloat16`` is evaluated where and how it lives, in batches of at most ``batch`` points so
    that a fine grid does not exhaust the device memory, and the results come back to the CPU as
    float64.

    Parameters
    ----------
    module : torch.nn.Module or callable
    batch : int
        Points per forward call (default 65536).
    """

    def __init__(self, module, batch=65536):
        import torch  # imported only when a torch model is given

        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
        self.torch, self.module, self.batch = torch, module, batch
        tensors = list(module.parameters()) if hasattr(module, "parameters") else []
        tensors += list(module.buffers()) if hasattr(module, "buffers") else []
        floating = [p for p in tensors if p.is_floating_point()]
        self.dtype = floating[0].dtype if floating else torch.float32
        self.device = tensors[0].device if tensors else torch.device("cpu")

    def __call__(self, x, t):
        torch = self.torch
        outs = []
        with torch.no_grad():
            for i in range(0, max(len(x), 1), self.batch):
                xb = torch.as_tensor(x[i:i + self.batch], dtype=self.dtype, device=self.device)
                tb = torch.full((xb.shape[0], 1), float(t), dtype=self.dtype, device=self.device)
                # float64 on the CPU: bfloat16 has no NumPy dtype, and results leave the device
                outs.append(self.module(xb, tb).detach().to(device="cpu", dtype=torch.float64).numpy())
        return np.concatenate(outs, axis=0)


class CheckedModel:
    """A model wrapped with shape/dtype/finiteness checks and timing.

    Parameters
    ----------
    fn : callable
        ``fn(x, t)``; see the module docstring.
    kind : {"velocity", "potential", "score"}
    dim : int
    time_as_column : bool
        Pass ``t`` as an ``(n, 1)`` array instead of a float.
    name : str
    timeout : float, optional
        Seconds one call may take; a call that takes longer is stopped with a
        :class:`ModelError` (a model that hangs would otherwise hang the validation). Uses
        ``SIGALRM``, so it applies in the main thread on POSIX systems; elsewhere it is ignored.
    """

    def __init__(self, fn, kind, dim, *, time_as_column=False, name="model", timeout=None):
        if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError(f"timeout (seconds per model call) must be > 0, got {timeout!r}")
        self.timeout = timeout
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if not callable(fn):
            raise TypeError(f"model must be callable, got {type(fn).__name__}")
        self.fn = TorchAdapter(fn) if _is_torch_module(fn) else fn
        self.kind, self.dim, self.time_as_column, self.name = kind, int(dim), bool(time_as_column), name
        self.eval_time_s = 0.0
        self.calls = 0

    #: outputs beyond this magnitude overflow the metrics (squares of 1e155 are inf): refused
    MAX_ABS = 1e150

    def __call__(self, x, t):
        # every call gets its own copy: a model that writes into its input must not change the
        # grid points later calls (and the metrics) see
        x = np.array(x, dtype=np.float64, order="C", copy=True)
        given = x.copy()
        targ = np.full((x.shape[0], 1), float(t)) if self.time_as_column else float(t)
        t0 = time.perf_counter()
        alarm = (self.timeout is not None and hasattr(signal, "setitimer")
                 and threading.current_thread() is threading.main_thread())
        if alarm:
            def expired(signum, frame):
                raise ModelError(f"{self.name}: the {self.kind} model took longer than the timeout of "
                                 f"{self.timeout:g} s at t = {float(t):.6g} on {x.shape[0]} points")

            previous = signal.signal(signal.SIGALRM, expired)
            signal.setitimer(signal.ITIMER_REAL, float(self.timeout))
        try:
            out = self.fn(given, targ)
        except ModelError:
            raise
        except SystemExit as exc:  # sys.exit() in a model must not end the validation with exit 0
            raise ModelError(f"{self.name}: the {self.kind} model called sys.exit({exc.code!r}) at t = {float(t):.6g}"
                             f" on {x.shape[0]} points") from None
        except Exception as exc:  # report the user's error with where it happened
            raise ModelError(f"{self.name}: the {self.kind} model raised {type(exc).__name__}: {exc} "
                             f"(called at t = {float(t):.6g} on {x.shape[0]} points, first point {x[0].tolist()})") from exc
        finally:
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, 0.0)
                signal.signal(signal.SIGALRM, previous)
            self.eval_time_s += time.perf_counter() - t0
            self.calls += 1
        arr = np.asarray(out)
        if arr.dtype.kind not in "fiu":
            raise ModelError(f"{self.name}: the {self.kind} model returned dtype {arr.dtype} at t = {float(t):.6g}; "
                             "expected a real floating-point array")
        arr = arr.astype(np.float64)
        expect = (x.shape[0],) if self.kind == "potential" else (x.shape[0], self.dim)
        if self.kind == "potential" and arr.shape == (x.shape[0], 1):
            arr = arr[:, 0]
        if arr.shape != expect:
            raise ModelError(f"{self.name}: the {self.kind} model returned shape {arr.shape} at t = {float(t):.6g}; "
                             f"expected {expect} for {x.shape[0]} points in {self.dim}D")
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.argwhere(bad)[0][0])
            raise ModelError(f"{self.name}: the {self.kind} model returned a non-finite value at t = {float(t):.6g}, "
                             f"point {x[i].tolist()} (index {i})")
        big = np.abs(arr) > self.MAX_ABS
        if big.any():
            i = int(np.argwhere(big)[0][0])
            raise ModelError(f"{self.name}: the {self.kind} model returned {float(np.abs(arr).max()):.3g} at "
                             f"t = {float(t):.6g}, point {x[i].tolist()} (index {i}): beyond {self.MAX_ABS:g}, its "
                             "metrics would overflow to infinity")
        return arr

    def on_grid(self, grid, times):
        """Evaluate at every grid point and time: ``(nt + 1, d) + shape`` or ``(nt + 1,) + shape``."""
        P = grid.points()
        out = []
        for t in times:
            v = self(P, t)
            out.append(v.reshape(grid.shape) if self.kind == "potential" else v.T.reshape((grid.dim,) + grid.shape))
        return np.array(out)


def as_model(obj, kind, dim, **kw):
    """Wrap a callable / torch module / JAX function as a :class:`CheckedModel`."""
    return obj if isinstance(obj, CheckedModel) else CheckedModel(obj, kind, dim, **kw)


@contextlib.contextmanager
def time_limit(seconds, what):
    """Raise :class:`ModelError` when the block runs longer than ``seconds`` (main thread, POSIX;
    elsewhere, or with ``None``, no limit).
    """
    if seconds is None or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum, frame):
        raise ModelError(f"{what} took longer than the timeout of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)


def load_model(spec, timeout=None):
    """Import ``package.module:attribute``; if the attribute is a zero-argument factory named
    ``make_*`` it is called.

    The current directory is searched first (as ``python -m`` does; the ``mfgpde`` console
    script would not), so ``--model mymodels:net`` finds ``./mymodels.py``. Every failure of the
    user's code (a syntax error, an exception at import or in the factory) becomes one
    ``ValueError`` naming the module, the exception and, for syntax errors, the line.
    """
    if ":" not in spec:
        raise ValueError(f"--model must look like package.module:callable, got {spec!r}")
    mod_name, attr = spec.split(":", 1)
    if not mod_name or not attr:
        raise ValueError(f"--model must look like package.module:callable, got {spec!r}")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        with time_limit(timeout, f"--model: importing module {mod_name!r}"):
            mod = importlib.import_module(mod_name)
    except ModelError:
        raise
    except SyntaxError as exc:
        raise ValueError(f"--model: module {mod_name!r} has a syntax error: {exc.msg} ({exc.filename}, line "
                         f"{exc.lineno})") from None
    except ImportError as exc:
        raise ValueError(f"--model: cannot import module {mod_name!r}: {exc}") from None
    except SystemExit as exc:
        raise ValueError(f"--model: importing module {mod_name!r} called sys.exit({exc.code!r})") from None
    except Exception as exc:
        raise ValueError(f"--model: importing module {mod_name!r} raised {type(exc).__name__}: {exc}") from None
    finally:
        if added:
            sys.path.remove(cwd)
    try:
        obj = getattr(mod, attr)
    except AttributeError:
        raise ValueError(f"--model: module {mod_name!r} has no attribute {attr!r}") from None
    if attr.startswith("make_"):
        if not callable(obj):
            raise ValueError(f"--model: {spec} is named make_* but is not callable")
        try:
            with time_limit(timeout, f"--model: the factory {spec}()"):
                obj = obj()
        except ModelError:
            raise
        except SystemExit as exc:
            raise ValueError(f"--model: the factory {spec}() called sys.exit({exc.code!r})") from None
        except Exception as exc:
            raise ValueError(f"--model: the factory {spec}() raised {type(exc).__name__}: {exc}") from None
    return obj
