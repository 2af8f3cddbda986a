"""The package's layout rules, read from its source (no solve): the import graph has no cycle,
the generic iterations know no discretisation, nothing inside the package calls the public
``solve()``, functions stay short and the public API takes its options by keyword.

These are the rules of the backend layer (README, Layout): a reader can follow one solve from
``solve()`` down without returning to a module already left.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "mfgpde"

#: the public callables whose defaulted parameters may still be given by position: a coupling's
#: second parameter is part of it (``CallableCoupling(f, df)``, ``KLCoupling(log_pi, eps)``)
POSITIONAL_OK = {"CallableCoupling.__init__", "ConvolutionCoupling.__init__", "KLCoupling.__init__",
                 "kl_terminal", "CongestionHamiltonian.__init__", "PowerHamiltonian.__init__"}
#: the longest function body allowed, in lines without the docstring (kernels included: none is longer)
MAX_LINES = 60


def _modules():
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = p.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = (p, ast.parse(p.read_text()))
    return out


def _imports(name, path, tree, modules):
    """The package modules that ``name`` imports anywhere in its source (inside functions too)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").startswith("mfgpde"):
                base = node.module
            else:
                continue
            targets = [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names if a.name.startswith("mfgpde")]
        else:
            continue
        for t in targets:
            while t not in modules and "." in t:
                t = t.rsplit(".", 1)[0]
            if t in modules and t != name:
                found.add(t)
    return found


def test_the_import_graph_has_no_cycle():
    modules = _modules()
    graph = {m: _imports(m, p, t, modules) for m, (p, t) in modules.items()}
    state, cycle = {}, []

    def visit(m, stack):
        state[m] = "open"
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                cycle.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycle == []


def test_iterations_import_no_discretisation():
    modules = _modules()
    bad = {m: sorted(n for n in _imports(m, p, t, modules) if n.startswith(("mfgpde.fd", "mfgpde.fem")))
           for m, (p, t) in modules.items() if m.startswith("mfgpde.iterations")}
    assert {m: v for m, v in bad.items() if v} == {}


def test_nothing_inside_the_package_calls_the_public_solve():
    """``solve()`` is the user's entry; strategies wrap a backend's solve instead. The compositions
    a user would write (``continuation``, the presets' chains, studies, sweeps, the zoo) may call it."""
    composers = {"mfgpde.solver", "mfgpde.parallel.sweep", "mfgpde.studies.wellposedness", "mfgpde.studies.cli",
                 "mfgpde.zoo.store", "mfgpde.validate.cli", "mfgpde.generative.presets", "mfgpde.cli"}
    callers = set()
    for name, (_p, tree) in _modules().items():
        imported = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                    and (n.module or "").endswith("solver") for a in n.names if a.name == "solve"}
        if imported and any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in imported
                            for n in ast.walk(tree)):
            callers.add(name)
    assert callers - composers == set()
    # the backends, the iterations and the discretisations never do
    assert not {c for c in callers if c.startswith(("mfgpde.fd", "mfgpde.fem", "mfgpde.iterations", "mfgpde.backends"))}


def _functions(tree):
    def walk(node, owner):
        for n in ast.iter_child_nodes(node):
            if isinstance(n, ast.ClassDef):
                yield from walk(n, n.name)
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield owner, n
                yield from walk(n, owner)
    yield from walk(tree, None)


def test_functions_are_at_most_sixty_lines_without_their_docstring():
    long = []
    for name, (_p, tree) in _modules().items():
        for _owner, f in _functions(tree):
            lines = f.end_lineno - f.lineno + 1
            first = f.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                lines -= first.end_lineno - first.lineno + 1
            if lines > MAX_LINES:
                long.append(f"{name}.{f.name}: {lines}")
    assert long == []


def test_public_options_are_keyword_only():
    """A public callable with several defaulted parameters takes them by keyword (``*`` after the
    essential positional ones), so that a call reads what it sets and options can be added."""
    loose = []
    for name, (_p, tree) in _modules().items():
        if any(part.startswith("_") for part in name.split(".")[1:]):
            continue
        for owner, f in _functions(tree):
            qual = f"{owner}.{f.name}" if owner else f.name
            if (f.name.startswith("_") and f.name != "__init__") or (owner or "").startswith("_"):
                continue
            a = f.args
            positional = [x for x in a.posonlyargs + a.args if x.arg not in ("self", "cls")]
            # (``solve(problem, method, tol, *, ...)``: two defaulted positional ones before the ``*``)
            many = len(a.defaults) >= (3 if a.kwonlyargs else 2)
            if many and len(positional) >= 3 and not a.vararg and qual not in POSITIONAL_OK:
                loose.append(f"{name}.{qual}")
    assert loose == []
