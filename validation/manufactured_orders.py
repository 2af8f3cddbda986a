"""Observed orders on manufactured solutions: one row per term and backend, expected against observed.

Every row solves an MFG whose exact solution is a chosen smooth ``(U*, m*)`` (the sources derived
by SymPy in :mod:`mfgpde.manufactured`) on three grids with ``dt ~ h`` and fits the slopes of the
errors of U (max over t and x) and m (max over t of the L1 norm in x); the ergodic rows fit u, m
and rho. The rows cover each Hamiltonian family, each coupling, drifts, the terminal costs, nu = 0,
no-flux walls, 1D to 3D, the serial and distributed (2 ranks, ``mpiexec``) finite differences, P1
finite elements on three kinds of mesh, the ergodic systems and ``order = 2``. The default suite
checks the same terms on smaller grids (``tests/test_manufactured*.py``).

(Solves to tol = 1e-10: on 256 cells x 256 steps the Newton residual's round-off floor is ~1e-11.)

Run:  python validation/manufactured_orders.py [--out validation/out/manufactured] [--tiny]
Writes report.md, orders.json and orders.png (errors against h, per row) in the output folder
(the docs include the report).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import sympy as sp

import mfgpde as mp
from mfgpde.couplings import KLCoupling
from mfgpde.manufactured import Manufactured
from mfgpde.plotting import _mpl, save_figure
from mfgpde.report import markdown_table, write_report
from mfgpde.result import write_json

t, x, y, z = sp.symbols("t x y z")
TWO_PI = 2 * sp.pi
U1 = (sp.cos(TWO_PI * x) + sp.sin(4 * sp.pi * x) / 4) * (1 + t) / 10
M1 = 1 + sp.sin(TWO_PI * x) * sp.cos(t) / 2
U2 = (sp.cos(TWO_PI * x) * sp.sin(TWO_PI * y) + sp.sin(TWO_PI * y) / 4) * (1 + t) / 10
M2 = 1 + sp.sin(TWO_PI * x) * sp.cos(TWO_PI * y) * sp.cos(t) / 2
UW, MW = sp.cos(sp.pi * x) * (1 + t) / 5, 1 + sp.cos(sp.pi * x) * sp.cos(t) / 2  # zero normal derivative at 0, 1

# each Hamiltonian: (H written for SymPy, the package's object)
QUAD = (lambda p, m: sum(pk**2 for pk in p) / 2, mp.QuadraticHamiltonian())
HAMILTONIANS = {
    "quadratic (lam = 2)": (lambda p, m: p[0] ** 2 / 4, mp.QuadraticHamiltonian(lam=2.0)),
    "power (q = 1.5, delta = 0.5)": (lambda p, m: (p[0] ** 2 + sp.Rational(1, 4)) ** sp.Rational(3, 4) / sp.Rational(3, 2),
                                     mp.PowerHamiltonian(q=1.5, delta=0.5)),
    "congestion (c1 = 2)": (lambda p, m: sum(pk**2 for pk in p) / (2 * (1 + 2 * m)),
                            mp.CongestionHamiltonian(c0=1.0, c1=2.0, beta=1.0)),
    "custom, m-dependent": (lambda p, m: p[0] ** 2 / 2 + p[0] ** 4 / 20 + m * p[0] ** 2 / 10,
                            mp.CustomHamiltonian(phi=lambda S, m: S / 2 + S**2 / 20 + m * S / 10,
                                                 phi_S=lambda S, m: 0.5 + S / 10 + m / 10,
                                                 phi_SS=lambda S, m: np.full_like(S, 0.1),
                                                 phi_m=lambda S, m: S / 10, phi_Sm=lambda S, m: np.full_like(S, 0.1))),
}
LOG = (lambda m: sp.log(m), mp.LogCoupling)
COUPLINGS = {
    "power (p = 2)": (lambda m: m**2 / 2, lambda: mp.PowerCoupling(p=2.0, scale=0.5)),
    "potential V(x)": (lambda m: sp.sin(TWO_PI * x) / 2, lambda: mp.PotentialCoupling(lambda x_: 0.5 * np.sin(2 * np.pi * x_))),
    "callable f(m)": (lambda m: m**3 / 3, lambda: mp.CallableCoupling(lambda m_: m_**3 / 3, lambda m_: m_**2)),
    # 0.8 int cos(2 pi (x - y)) m(t, y) dy for M1: only its sin(2 pi y) cos(t) / 2 part survives
    "convolution": (lambda m: sp.Rational(1, 5) * sp.cos(t) * sp.sin(TWO_PI * x),
                    lambda: mp.ConvolutionCoupling(lambda d: np.cos(2 * np.pi * d), scale=0.8)),
}
LOG_PI = -sp.cos(TWO_PI * x) / 2


def log_pi_np(x_):
    return -0.5 * np.cos(2 * np.pi * x_)


def grid(dim, boundary="periodic"):
    return lambda n: mp.TensorGrid([(0, 1)] * dim, n, boundary)


def mesh(kind, **kw):
    def make(n):
        from mfgpde.fem.domain import MeshDomain

        if kind == "interval":
            return MeshDomain.interval(n, **kw)
        return MeshDomain.rectangle((n, n), **kw)
    return make


def evolutive(case, make, sizes, T=1.0, steps_per_cell=1.0, order=1, **kw):
    """Errors of U and m on each grid."""
    errs = {"U": [], "m": []}
    for n in sizes:
        dom = make(n)
        p = case.problem(dom, T, max(1, int(round(steps_per_cell * n))), **kw)
        fd = not getattr(dom, "is_mesh", False)
        r = mp.solve(p, tol=1e-10, order=order, **({"error_estimate": False} if fd else {}))
        if not r.converged:
            raise RuntimeError(f"n = {n}: {r.diagnostics['status']}")
        for k, v in case.errors(r).items():
            errs[k].append(v)
    return errs


def ergodic(case, make, sizes, hamiltonian, coupling, rho=0.3, order=1):
    errs = {"u": [], "m": [], "rho": []}
    for n in sizes:
        dom = make(n)
        fd = not getattr(dom, "is_mesh", False)
        r = mp.solve(case.ergodic_problem(dom, hamiltonian, coupling=coupling, rho=rho), tol=1e-10, order=order,
                     **({"error_estimate": False} if fd else {}))
        for k, v in case.ergodic_errors(r, rho).items():
            errs[k].append(v)
    return errs


TABLES = """[hamiltonian]
type = "quadratic"
[[coupling]]
type = "log"
[solver]
tol = 1e-11
error_estimate = false
"""


def distributed(sizes, ranks=2, T=0.5):
    """The 2D case with a drift, sources written in a configuration, solved by ``mpiexec -n 2``."""
    import xarray as xr

    b = [sp.sin(TWO_PI * y) / 4, sp.cos(TWO_PI * x) * t / 4]
    case = Manufactured([x, y], t, U=U2, m=M2, H=QUAD[0], f=LOG[0], nu=0.1, drift=b)
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    errs = {"U": [], "m": []}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            cfg = os.path.join(tmp, f"mms{n}.toml")
            with open(cfg, "w") as fh:
                fh.write(case.configuration([(0, 1), (0, 1)], (n, n), "periodic", T, n // 2, tables=TABLES))
            out = os.path.join(tmp, f"o{n}")
            subprocess.run([mpiexec, "-n", str(ranks), sys.executable, "-m", "mfgpde", "solve", cfg, "--out", out,
                            "--no-plot", "-q"], check=True, capture_output=True,
                           env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
            g = mp.TensorGrid([(0, 1)] * 2, n, "periodic")
            X = g.coordinates()
            with xr.open_dataset(os.path.join(out, "solution.nc")) as ds:
                U, m, times = ds["U"].values, ds["m"].values, ds["t"].values
            errs["U"].append(max(float(np.abs(U[k] - case.U_exact(tk, *X)).max()) for k, tk in enumerate(times)))
            errs["m"].append(max(float(g.integrate(np.abs(m[k] - case.m_exact(tk, *X)))) for k, tk in enumerate(times)))
    return errs


def rows_to_run(sizes_1d, sizes_2d, sizes_3d):
    """``(term, backend, expected order, thunk)`` per row."""
    rows = []
    for name, (Hs, H) in HAMILTONIANS.items():
        case = Manufactured([x], t, U=U1, m=M1, H=Hs, f=LOG[0], nu=0.1)
        rows.append((f"Hamiltonian: {name}", "FD 1D", 1, lambda c=case, H=H: evolutive(
            c, grid(1), sizes_1d, hamiltonian=H, coupling=LOG[1]())))
    for name, (fs, f) in COUPLINGS.items():
        Hs, H = HAMILTONIANS["quadratic (lam = 2)"]
        case = Manufactured([x], t, U=U1, m=M1, H=Hs, f=fs, nu=0.1)
        rows.append((f"coupling: {name}", "FD 1D", 1, lambda c=case, f=f, H=H: evolutive(
            c, grid(1), sizes_1d, hamiltonian=H, coupling=f())))
    drift = [sp.sin(TWO_PI * x) * (1 + t) / 3]
    for name, g_sym, term in (
            ("drift b(t, x), KL terminal (kl_terminal)", lambda m: sp.log(m) - LOG_PI + 1, lambda: mp.kl_terminal(log_pi_np)),
            ("drift b(t, x), KL terminal (KLCoupling, eps = 0.05)",
             lambda m: sp.log(m + sp.Rational(1, 20) * sp.exp(LOG_PI)) - LOG_PI + 1, lambda: KLCoupling(log_pi_np, eps=0.05))):
        Hs, H = HAMILTONIANS["quadratic (lam = 2)"]
        case = Manufactured([x], t, U=U1, m=M1, H=Hs, f=LOG[0], nu=0.05, drift=drift, g=g_sym)
        rows.append((name, "FD 1D", 1, lambda c=case, term=term, H=H: evolutive(
            c, grid(1), sizes_1d, hamiltonian=H, coupling=LOG[1](), terminal=term())))
    case = Manufactured([x], t, U=U1, m=M1, H=QUAD[0], f=LOG[0], nu=0.0)
    rows.append(("nu = 0 (viscosity continuation)", "FD 1D", 1, lambda c=case: evolutive(
        c, grid(1), sizes_1d, hamiltonian=QUAD[1], coupling=LOG[1]())))
    cong = HAMILTONIANS["congestion (c1 = 2)"]
    case = Manufactured([x], t, U=UW, m=MW, H=cong[0], f=LOG[0], nu=0.1)
    rows.append(("no-flux walls, congestion H, log f", "FD 1D", 1, lambda c=case: evolutive(
        c, grid(1, "noflux"), sizes_1d, hamiltonian=cong[1], coupling=LOG[1]())))
    case = Manufactured([x, y], t, U=U2, m=M2, H=cong[0], f=LOG[0], nu=0.1,
                        drift=[sp.sin(TWO_PI * y) / 4, sp.cos(TWO_PI * x) * t / 4])
    rows.append(("congestion H, log f, drift", "FD 2D", 1, lambda c=case: evolutive(
        c, grid(2), sizes_2d, T=0.5, steps_per_cell=0.5, hamiltonian=cong[1], coupling=LOG[1]())))
    U3 = (sp.cos(TWO_PI * x) + sp.sin(TWO_PI * y) * sp.cos(TWO_PI * z)) * (1 + t) / 10
    M3 = 1 + sp.sin(TWO_PI * (x + z)) * sp.cos(TWO_PI * y) * sp.cos(t) / 2
    case = Manufactured([x, y, z], t, U=U3, m=M3, H=QUAD[0], f=lambda m: m**2 / 2, nu=0.1)
    rows.append(("quadratic H, power f", "FD 3D", 1, lambda c=case: evolutive(
        c, grid(3), sizes_3d, T=0.5, steps_per_cell=0.5, hamiltonian=QUAD[1], coupling=mp.PowerCoupling(p=2.0, scale=0.5))))
    case = Manufactured([x], t, U=U1, m=M1, H=cong[0], f=LOG[0], nu=0.1)
    rows.append(("congestion H, log f, order = 2", "FD 1D", 2, lambda c=case: evolutive(
        c, grid(1), sizes_1d, order=2, hamiltonian=cong[1], coupling=LOG[1]())))
    rows.append(("drift, log f, sources from a configuration", "FD 2D, 2 ranks", 1, lambda: distributed(sizes_2d)))
    Ue, Me = U1.subs(t, 0) * 5, M1.subs(t, 0)
    case = Manufactured([x], t, U=Ue, m=Me, H=cong[0], f=LOG[0], nu=0.2)
    for order in (1, 2):
        rows.append((f"ergodic: congestion H, log f{', order = 2' if order == 2 else ''}", "FD 1D", order,
                     lambda c=case, o=order: ergodic(c, grid(1), sizes_1d, cong[1], LOG[1](), order=o)))
    # finite elements
    fem_drift = [sp.sin(TWO_PI * y) / 2, sp.cos(TWO_PI * x) * t / 2]
    case = Manufactured([x, y], t, U=U2, m=M2, H=cong[0], f=LOG[0], nu=0.1, drift=fem_drift)
    for diag in ("crossed", "left", "right"):
        rows.append(("congestion H, log f, drift", f"FEM 2D ({diag} triangles)", 1, lambda c=case, d=diag: evolutive(
            c, mesh("rectangle", periodic=(True, True), diagonal=d), sizes_2d, T=0.5, steps_per_cell=0.5,
            hamiltonian=cong[1], coupling=LOG[1]())))
    power = HAMILTONIANS["power (q = 1.5, delta = 0.5)"]
    log_pi_w = -sp.cos(sp.pi * x) / 2
    case = Manufactured([x], t, U=UW, m=MW, H=power[0], f=lambda m: m**2 / 2, nu=0.1, g=lambda m: sp.log(m) - log_pi_w + 1)
    rows.append(("no-flux ends, power H, power f, KL terminal", "FEM 1D", 1, lambda c=case: evolutive(
        c, mesh("interval"), sizes_1d, hamiltonian=power[1], coupling=mp.PowerCoupling(p=2.0, scale=0.5),
        terminal=mp.kl_terminal(lambda x_: -0.5 * np.cos(np.pi * x_)))))
    Ue2 = (sp.cos(TWO_PI * x) * sp.sin(TWO_PI * y) + sp.sin(TWO_PI * y) / 4) / 2
    Me2 = 1 + sp.sin(TWO_PI * x) * sp.cos(TWO_PI * y) / 2
    case = Manufactured([x, y], t, U=Ue2, m=Me2, H=cong[0], f=LOG[0], nu=0.2, drift=[sp.sin(TWO_PI * y) / 2, sp.Integer(0)])
    rows.append(("ergodic: congestion H, log f, drift", "FEM 2D (crossed triangles)", 1, lambda c=case: ergodic(
        c, mesh("rectangle", periodic=(True, True), diagonal="crossed"), sizes_2d, cong[1], LOG[1]())))
    return rows


def figure(data, path):
    """Errors of U (u) and m against the grid's refinement level, one line per row, with slope guides."""
    plt = _mpl()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharex=True)
    for row in data:
        if "errors" not in row:
            continue
        style = "-" if row["expected"] == 1 else "--"
        for ax, key in zip(axes, (("U", "u"), ("m",))):
            k = next((c for c in key if c in row["errors"]), None)
            e = row["errors"][k]
            ax.loglog(2.0 ** -np.arange(len(e)), e, style, marker="o", ms=3, lw=1)
    for ax, name in zip(axes, ("U (max), u", "m (L1)")):
        h = np.array([1.0, 0.25])
        ax.loglog(h, 3e-2 * h, "k:", lw=1.5, label="order 1")
        ax.loglog(h, 3e-3 * h**2, "k-.", lw=1.5, label="order 2")
        ax.set(xlabel="h / h_coarsest", ylabel="error", title=f"{name}: every row (dashed: order = 2)")
        ax.legend(loc="lower right")
    save_figure(fig, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out", "manufactured"))
    ap.add_argument("--tiny", action="store_true", help="coarse grids (a smoke run; the orders are pre-asymptotic)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    sizes = ([32, 64], [8, 16], [8, 16]) if args.tiny else ([64, 128, 256], [32, 64, 128], [16, 32, 64])
    table, data = [], []
    todo = rows_to_run(*sizes)
    for i, (term, backend, expected, run) in enumerate(todo, 1):
        ts = time.perf_counter()
        try:
            errs = run()
        except Exception as exc:  # a row that fails is reported as such; the others still run
            print(f"[{i}/{len(todo)}] {backend}: {term}: FAILED ({type(exc).__name__}: {exc})", flush=True)
            data.append({"term": term, "backend": backend, "expected": expected, "failed": f"{type(exc).__name__}: {exc}"})
            table.append([term, backend, expected, f"failed: {exc}", ""])
            continue
        n = len(next(iter(errs.values())))
        h = 2.0 ** -np.arange(n)
        orders = {k: float(np.polyfit(np.log(h), np.log(e), 1)[0]) for k, e in errs.items()}
        finest = {k: float(np.log2(e[-2] / e[-1])) for k, e in errs.items()}
        data.append({"term": term, "backend": backend, "expected": expected, "errors": errs, "orders": orders,
                     "finest_pair": finest, "seconds": time.perf_counter() - ts})
        table.append([term, backend, expected, ", ".join(f"{k} {v:.2f}" for k, v in orders.items()),
                      ", ".join(f"{k} {v:.2f}" for k, v in finest.items())])
        print(f"[{i}/{len(todo)}] {backend}: {term}: " + ", ".join(f"{k} {v:.2f}" for k, v in orders.items())
              + f" ({time.perf_counter() - ts:.1f} s)", flush=True)
    os.makedirs(args.out, exist_ok=True)
    figure(data, os.path.join(args.out, "orders.png"))
    write_json(os.path.join(args.out, "orders.json"), {"sizes": sizes, "rows": data})
    write_report(os.path.join(args.out, "report.md"), "Observed orders on manufactured solutions", [
        ("Result", markdown_table(["term", "backend", "expected", "observed (fit over the 3 grids)",
                                   "observed (2 finest grids)"], table)),
        ("Grids", f"1D: {sizes[0]} cells; 2D: {sizes[1]}^2 (FEM: cells per axis); 3D: {sizes[2]}^3; dt ~ h. "
                  "Errors: U in max over t and x, m in max over t of the L1 norm (ergodic: u max, m L1, |rho - "
                  "rho*|)."),
        ("Notes", "The monotone schemes are first order in h and dt; order = 2 is the Richardson ladder "
                  "(three levels: third order once asymptotic). The FEM rows on right-diagonal triangles are the "
                  "FD scheme at the nodes; crossed and left triangles have other vertex stars. Total run time "
                  f"{time.perf_counter() - t0:.0f} s."),
    ])
    print(f"wrote {args.out}/report.md")


if __name__ == "__main__":
    main()
