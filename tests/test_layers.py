"""The package layout is its architecture: layer rules and no import cycle.

Every ``import`` of every module of ``fink_t2`` (module level and inside functions) is read
with ``ast``; the rules below are checked on that graph, and the science core is imported in a
fresh interpreter to see which heavy packages really load.

Run alone to print the graph: ``python tests/test_layers.py``.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "fink_t2"

#: layer of a module = its first sub-package under fink_t2 (top-level modules are their own layer)
ALLOWED_LAYERS: dict[str, set[str]] = {
    "contract": set(),
    "config": {"contract"},
    "readme_blocks": set(),
    "alerts": {"contract", "config"},
    "science": {"contract", "config", "alerts"},
    "astromer": {"contract", "config", "alerts", "science"},
    "kafka": {"contract", "config", "alerts", "science", "astromer"},
    "spark": {"contract", "config", "alerts", "science", "astromer", "kafka"},
    "tools": {"contract", "config", "readme_blocks", "alerts", "science", "astromer", "kafka", "spark"},
    "train": {"contract", "config", "readme_blocks", "alerts", "science", "astromer"},
    "cli": {"contract", "config", "readme_blocks", "alerts", "science", "astromer", "kafka", "spark", "tools", "train"},
    "__init__": set(),
}
#: third-party packages only one layer may import
EXCLUSIVE_IMPORTS = {"pyspark": {"spark"}, "tensorflow": {"train"}, "tf_keras": {"train"},
                     "tensorflow_model_optimization": {"train"}}
#: packages the science core must never import
SCIENCE_FORBIDDEN = ("pyspark", "confluent_kafka", "tensorflow", "tf_keras", "tensorflow_model_optimization")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module imported anywhere in ``path`` (relative ones resolved)."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


def import_graph() -> dict[str, set[str]]:
    """fink_t2 module -> every name it imports (fink_t2 modules and third-party packages)."""
    modules = {module_name(p): p for p in PACKAGE_DIR.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        graph[name] = {imp for imp in imports_of(path) if imp in modules or not imp.startswith("fink_t2")}
    return graph


def internal_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: {i for i in imps if i in graph and i != m and not m.startswith(i + ".")} for m, imps in graph.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None (iterative DFS, three colours)."""
    colour = dict.fromkeys(edges, 0)
    for root in sorted(edges):
        if colour[root]:
            continue
        stack = [(root, iter(sorted(edges[root])))]
        path = [root]
        colour[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour[child] == 1:
                return path[path.index(child):] + [child]
            elif colour[child] == 0:
                colour[child] = 1
                stack.append((child, iter(sorted(edges[child]))))
                path.append(child)
    return None


def test_no_import_cycle():
    cycle = find_cycle(internal_edges(import_graph()))
    assert cycle is None, " -> ".join(cycle)


def test_find_cycle_detects_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_module_imports_only_allowed_layers():
    wrong = []
    for module, targets in internal_edges(import_graph()).items():
        layer = layer_of(module)
        for target in targets:
            if layer_of(target) not in ALLOWED_LAYERS[layer] | {layer}:
                wrong.append(f"{module} ({layer}) imports {target} ({layer_of(target)})")
    assert not wrong, "\n".join(sorted(wrong))


def test_exclusive_third_party_imports():
    wrong = []
    for module, imports in import_graph().items():
        for imp in imports:
            owners = EXCLUSIVE_IMPORTS.get(imp.split(".")[0])
            if owners is not None and layer_of(module) not in owners:
                wrong.append(f"{module} imports {imp} (only {sorted(owners)} may)")
    assert not wrong, "\n".join(sorted(wrong))


def test_layers_are_the_sub_packages():
    layers = {layer_of(module) for module in import_graph()}
    assert layers == set(ALLOWED_LAYERS), f"layer table out of date: {sorted(layers ^ set(ALLOWED_LAYERS))}"


def test_science_core_loads_no_spark_kafka_or_tensorflow():
    code = ("import sys, fink_t2.science.classify, fink_t2.science.gp, fink_t2.alerts.sources; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({SCIENCE_FORBIDDEN!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"the science core loaded {out.strip()}"


def test_static_check_sees_a_forbidden_import(tmp_path):
    """The graph reader resolves relative and function-level imports (the rules can fail)."""
    fake = tmp_path / "fink_t2" / "science" / "x.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("def f():\n    from ..spark import stream\n    import pyspark.sql\n")
    global PACKAGE_DIR
    saved, PACKAGE_DIR = PACKAGE_DIR, tmp_path / "fink_t2"
    try:
        assert imports_of(fake) >= {"fink_t2.spark", "fink_t2.spark.stream", "pyspark.sql"}
    finally:
        PACKAGE_DIR = saved


def test_readme_layout_table_names_every_module():
    """README's layout table follows the tree: every runtime module is named in it, in its layer."""
    readme = (PACKAGE_DIR.parent / "README.md").read_text()
    section = readme[readme.index("## Layout and pipeline"):]
    section = section[: section.index("\n## ", 3)]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    missing = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        rel = path.relative_to(PACKAGE_DIR)
        if path.name in ("__init__.py", "__main__.py") or rel.parts[0] == "train":
            continue
        layer = rel.parts[0] if len(rel.parts) > 1 else None
        in_rows = [i for i, row in enumerate(rows) if f"{path.name}`" in row]
        if not in_rows:
            missing.append(str(rel))
        elif layer is not None:
            # the row itself or the nearest row above it that starts a layer names the layer
            heads = [i for i, row in enumerate(rows) if row.startswith(f"| **{layer}**")]
            if not heads or not any(i >= heads[0] for i in in_rows):
                missing.append(f"{rel} (not under **{layer}**)")
    assert not missing, f"README layout table lacks: {missing}"


if __name__ == "__main__":
    edges = internal_edges(import_graph())
    for name in sorted(edges):
        print(f"{name}: {', '.join(sorted(edges[name])) or '-'}")
    print("cycle:", find_cycle(edges))
