"""The import graph: engines know nothing of vcapp/, vcapp/'s layers import only their own
layer and those below, no module imports itself back through others (function-local and
type-checking imports count: they only hide a circle), and every etcd key prefix is spelled
in vcapp/state/keys.py alone."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENGINES = ("placer", "runtime", "storage", "router", "mesh", "gitserver", "buildpacks", "builder")
PACKAGES = ENGINES + ("vcapp",)
# vcapp/ from the bottom up (docs/ARCHITECTURE.md, section 1): the top-level modules are this
# machine and the formats every layer shares; each package may import its own layer and lower.
LAYERS = ("vcapp", "vcapp.state", "vcapp.views", "vcapp.deploy", "vcapp.api", "vcapp.node", "vcapp.edge",
          "vcapp.dev", "vcapp.cli")


@functools.cache
def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `name` imports (anywhere in it), each resolved to a module we have.
    `from pkg import sub` imports pkg (its __init__ runs) and pkg.sub."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            wanted = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            wanted = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in wanted:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                targets.add(target)
    return targets


@functools.cache
def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_circle_finder_finds_a_circle_and_nothing_else():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_engines_import_nothing_of_vcapp():
    upward = sorted(f"{name} -> {target}" for name, targets in graph().items()
                    if name.split(".")[0] in ENGINES for target in targets if target.split(".")[0] == "vcapp")
    assert upward == []


def layer(module: str) -> int:
    """The rank of a vcapp module's layer: its package among LAYERS (`vcapp.__main__` is the top)."""
    if module == "vcapp.__main__":
        return len(LAYERS)
    package = ".".join(module.split(".")[:2])
    return LAYERS.index(package) if package in LAYERS else 0


def test_the_layers_of_vcapp_import_only_downward():
    assert layer("vcapp.machine") < layer("vcapp.state.apps") < layer("vcapp.node.daemon") < layer("vcapp.cli.main")
    upward = sorted(f"{name} -> {target}" for name, targets in graph().items() if name.startswith("vcapp")
                    for target in targets if target.startswith("vcapp.") and layer(target) > layer(name))
    assert upward == []


def test_no_module_imports_itself_back():
    assert circles(graph()) == []


def test_every_etcd_key_prefix_is_spelled_in_keys_py():
    keys_py = ROOT / "vcapp" / "state" / "keys.py"
    spelled = []
    for path in modules().values():
        if path == keys_py:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("/vc/"):
                spelled.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert spelled == []
