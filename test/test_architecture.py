"""The package's structure: imports run one way, commands live in cli/, no module imports argparse elsewhere."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import imported_modules

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dap_led_ros"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
_NAME = re.compile(r"[a-z_]+(/|\.py)")


def read_layers(text: str) -> list[set[str]]:
    """The layers, top first, from the `dap_led_ros/` block of docs/architecture.md: each line
    indented two spaces starts a layer, named by the folders (`x/`) and modules (`x.py`) before
    the description (two or more spaces later)."""
    block = re.search(r"^```\ndap_led_ros/\n(.*?)^```", text, re.M | re.S)
    assert block, "docs/architecture.md has no ``` block starting with dap_led_ros/"
    layers = []
    for line in block.group(1).splitlines():
        if not line.startswith("  ") or line.startswith("   "):
            continue  # a description's continuation
        names = re.split(r"\s{2,}", line.strip())[0].split(" ")
        bad = [n for n in names if not _NAME.fullmatch(n)]
        assert not bad, f"layer line {line.strip()!r}: {bad} are not folder/ or module.py names"
        layers.append({n.removesuffix("/").removesuffix(".py") for n in names})
    return layers


LAYERS = read_layers(ARCHITECTURE.read_text())  # top first: a module may import its own layer and those below


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every dap_led_ros module `path` imports, at any depth of the file (function-level imports too)."""
    return {m for m in imported_modules(path) if m.startswith("dap_led_ros")}


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        graph[name] = {m for m in _imports(path) if m in files and m != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _layer(module: str) -> int:
    """The layer's height: 0 at the bottom; -1 for the package itself or a module in no layer."""
    top = module.split(".")[1] if module.count(".") else ""
    for i, layer in enumerate(reversed(LAYERS)):
        if top in layer:
            return i
    return -1


def test_no_import_cycles():
    assert _cycles(import_graph()) == []


def test_imports_run_down_the_layers():
    graph = import_graph()
    upward = sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps
                    if _layer(a) >= 0 and _layer(b) > _layer(a))
    assert upward == []


def test_every_module_belongs_to_a_layer():
    assert sorted(m for m in import_graph() if m != "dap_led_ros" and _layer(m) < 0) == []


def test_every_layer_name_is_in_the_package():
    names = [n for layer in LAYERS for n in layer]
    assert len(names) == len(set(names)), "a name in two layers"
    assert sorted(n for n in names if not (PACKAGE / n).is_dir() and not (PACKAGE / f"{n}.py").is_file()) == []


def test_the_layer_reader():
    doc = "x\n```\ndap_led_ros/\n  cli/          commands\n  a/ b.py\n                a: one\n  c.py  the base\n```\n"
    assert read_layers(doc) == [{"cli"}, {"a", "b"}, {"c"}]
    with pytest.raises(AssertionError, match="not folder/ or module.py names"):
        read_layers("```\ndap_led_ros/\n  cli/ commands\n```\n")


def test_argparse_only_in_cli():
    users = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                   if "cli" not in p.relative_to(PACKAGE).parts[:1] and "argparse" in _all_imports(p))
    assert users == []


# Tools that make data (the synthetic drive, the demo) may use the training package's synthesis.
DATA_TOOLS = {"dap_led_ros.bag.sample_bag", "dap_led_ros.bag.demo"}


def test_training_is_never_imported_by_the_runtime_path():
    graph = import_graph()
    bad = sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps
                 if m.split(".")[1:2] and m.split(".")[1] in ("runtime", "enhancer", "ros", "bag", "perception")
                 and m not in DATA_TOOLS and d.startswith("dap_led_ros.training"))
    assert bad == []


def _all_imports(path: Path) -> set[str]:
    return {m.split(".")[0] for m in imported_modules(path)}


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("module", ["dap_led_ros.enhancer", "dap_led_ros.runtime.backends", "dap_led_ros.bag.bag_enhance"])
def test_core_modules_do_not_import_rclpy(module):
    path = PACKAGE.parent / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    assert "rclpy" not in _all_imports(path)
