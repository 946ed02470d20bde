"""Imports only go down: no import cycle among the project's modules, nor among its packages.

Read from the source as text (every import statement, those inside functions included: an import
deferred into a function is still an edge), with the folders mapped as the wheel installs them
(rl/ -> neuralese, envs/ -> neuralese.envs, rewards/ -> neuralese.rewards).

- Module level: the graph of modules is acyclic.
- Package level: inside every package, its children (its modules and its subpackages, each
  subpackage standing for everything below it) form an acyclic graph, so no subpackage and its
  neighbours lean on each other through different modules.
- The core (thoughts, segments, feedback, rollout, recompute, modes, policy) imports nothing above it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"rl": "neuralese", "envs": "neuralese.envs", "rewards": "neuralese.rewards"}
CORE = {"thoughts", "segments", "feedback", "rollout", "recompute", "modes", "policy"}
# What the core may import besides itself: the layers below it.
BELOW_CORE = {"config", "errors", "io", "models", "ranges"}


def modules() -> dict[str, Path]:
    """Every module of the package, by its import name (a package by its name, for its __init__.py)."""
    found = {}
    for folder, name in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([name, *parts])] = path
    return found


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules `path` (module `name`) imports, wherever the statement stands."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], base]
                ).strip(".")
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import neuralese.x.y` reaches the module itself
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(path, name, set(found)) for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected component of more than one node (Tarjan), sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(out)


def explain(component: list[str], edges: dict[str, set[str]]) -> str:
    ties = [f"{a} -> {b}" for a in component for b in sorted(edges.get(a, ())) if b in component]
    return "; ".join(ties)


def test_the_map_finds_the_whole_package():
    g = graph()
    assert {
        "neuralese",
        "neuralese.policy",
        "neuralese.modes.latent",
        "neuralese.envs.base",
        "neuralese.rewards.combine",
    } <= set(g)
    assert "neuralese.modes" in g["neuralese.policy"] and "neuralese.errors" in g["neuralese.envs.base"]


def test_no_module_imports_itself_back():
    g = graph()
    found = cycles(g)
    assert not found, "\n".join(explain(c, g) for c in found)


def child_of(package: str, module: str) -> str | None:
    """The child of `package` (a module or a subpackage) that holds `module`; None outside it."""
    if not module.startswith(package + "."):
        return None
    return package + "." + module[len(package) + 1 :].split(".")[0]


def package_graphs(g: dict[str, set[str]]) -> dict[str, dict[str, set[str]]]:
    """For every package: the graph among its children, a module's edges lifted to the child holding it."""
    packages = {m for m in g if any(other.startswith(m + ".") for other in g)}
    out = {}
    for pkg in sorted(packages):
        edges: dict[str, set[str]] = {}
        for a, targets in g.items():
            ca = child_of(pkg, a)
            for b in targets:
                cb = child_of(pkg, b)
                if ca and cb and ca != cb:
                    edges.setdefault(ca, set()).add(cb)
        out[pkg] = edges
    return out


def test_no_package_leans_on_a_package_that_leans_back():
    g = graph()
    problems = []
    for pkg, edges in package_graphs(g).items():
        for component in cycles(edges):
            lifted = {
                a: {b for b in g[a] if any(b == c or b.startswith(c + ".") for c in component)} for a in g
            }
            detail = [
                f"{a} -> {b}"
                for a in sorted(lifted)
                for b in sorted(lifted[a])
                if any(a == c or a.startswith(c + ".") for c in component)
                and not any(
                    a.startswith(c + ".") or a == c for c in component if b == c or b.startswith(c + ".")
                )
            ]
            problems.append(f"in {pkg}: {' <-> '.join(component)}: {'; '.join(detail)}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("part", sorted(CORE))
def test_the_core_imports_nothing_above_it(part):
    g = graph()
    allowed = {f"neuralese.{p}" for p in CORE | BELOW_CORE}
    for module, targets in g.items():
        if module == f"neuralese.{part}" or module.startswith(f"neuralese.{part}."):
            above = [
                t
                for t in targets
                if t != "neuralese" and not any(t == a or t.startswith(a + ".") for a in allowed)
            ]
            assert not above, (
                f"{module} imports {above}: the core imports only the core and {sorted(BELOW_CORE)}"
            )
