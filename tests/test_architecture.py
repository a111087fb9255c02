"""The package's layering: each layer imports only downward, no module import cycles, and every
third-party import is a declared dependency."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "spacy_gliner"
ROOT = PACKAGE.parent
# Lower number = lower layer. A module may import its own layer or lower ones.
LAYERS = {
    "model": 0,
    "io": 1,
    "engine": 2,
    "training": 3,
    "gliner": 3,
    "onnx_gliner": 3,
    "export": 3,
    "component": 4,
    "data": 5,
    "cli": 5,
    "__main__": 5,
    "integrations": 6,
}
# Third-party imports allowed per layer (beyond the standard library). ``onnx_gliner`` (layer 3)
# and ``export`` (layer 3) import onnxruntime, declared by the ``onnx`` extra (below).
LAYER_THIRD_PARTY = {
    0: {"torch", "numpy", "transformers"},
    1: {"torch", "numpy", "transformers", "safetensors", "huggingface_hub", "tokenizers"},
    2: {"torch", "numpy"},
    3: {"torch", "numpy", "thinc", "onnxruntime"},  # training: thinc optimizers; no spaCy
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path) -> list[str]:
    """Absolute names of every import in the module (function-level ones included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base)
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            found.append(target)
            found += [f"{target}.{alias.name}" for alias in node.names]
    return found


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the package's __init__ (lazy exports) sits above everything
    return LAYERS.get(parts[1])


def _internal_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imp in _imports(name, path):
            while imp and imp not in modules:
                imp = imp.rpartition(".")[0]
            if imp and imp != name and imp != "spacy_gliner":
                targets.add(imp)
        graph[name] = targets
    return graph


def test_every_module_has_a_layer():
    missing = [m for m in _modules() if m != "spacy_gliner" and _layer(m) is None]
    assert not missing, f"modules outside the layer table: {missing}"


def test_imports_only_go_downward():
    upward = []
    for module, targets in _internal_graph().items():
        for target in targets:
            if (_layer(target) or 0) > (_layer(module) if _layer(module) is not None else 99):
                upward.append(f"{module} -> {target}")
    assert not upward, "upward imports: " + ", ".join(sorted(upward))


def test_no_import_cycles():
    graph = _internal_graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(cycles)


def test_lower_layers_use_no_spacy():
    wrong = []
    for name, path in _modules().items():
        layer = _layer(name)
        if layer is None or layer not in LAYER_THIRD_PARTY:
            continue
        for imp in _imports(name, path):
            top = imp.split(".")[0]
            if top in ("spacy_gliner", "") or top in sys.stdlib_module_names:
                continue
            if top not in LAYER_THIRD_PARTY[layer]:
                wrong.append(f"{name} imports {top}")
    assert not wrong, "; ".join(sorted(set(wrong)))


def _names(deps) -> set:
    """Distribution names of requirement strings, normalised like import names."""
    out = set()
    for dep in deps:
        for sep in (";", "[", "<", ">", "=", "~", "!"):
            dep = dep.split(sep)[0]
        out.add(dep.strip().lower().replace("-", "_"))
    return out


def test_third_party_imports_are_declared_dependencies():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = _names(project["dependencies"])
    # The integrations layer may import what an optional extra declares; the ONNX modules what
    # the ``onnx`` extra declares.
    optional = project.get("optional-dependencies", {})
    extras = _names(d for deps in optional.values() for d in deps)
    onnx_extra = _names(optional.get("onnx", ()))
    onnx_modules = (
        "spacy_gliner.onnx_gliner",
        "spacy_gliner.export",
        "spacy_gliner.cli.export_onnx",
    )
    missing = set()
    for name, path in _modules().items():
        allowed = declared | (extras if name.startswith("spacy_gliner.integrations") else set())
        if name.startswith(onnx_modules):
            allowed |= onnx_extra
        for imp in _imports(name, path):
            top = imp.split(".")[0]
            if top in ("spacy_gliner", "") or top in sys.stdlib_module_names:
                continue
            if top.lower() not in allowed:
                missing.add(f"{top} (in {name})")
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"


def test_files_and_functions_stay_small():
    """No library file over 400 lines, no function over 50 (docstring included)."""
    big = []
    for name, path in _modules().items():
        source = path.read_text()
        if source.count("\n") > 400:
            big.append(f"{name}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 50:
                    big.append(f"{name}.{node.name}: {length} lines")
    assert not big, "; ".join(big)


# The ONNX Runtime path: these modules and every spacy_gliner module they import at module level
# import neither torch nor transformers at module level (functions the path never calls may
# import them lazily; tests/test_onnx.py and tests/test_onnx_pipe.py run the path in a process
# where importing them fails). The component's: the factory (spaCy's entry point), the ONNX pipe,
# and the registered functions spaCy resolves from its default config (scorer, loss, model block).
TORCH_FREE = (
    "spacy_gliner.onnx_gliner",
    "spacy_gliner.component.factory",
    "spacy_gliner.component.onnx_pipe",
    "spacy_gliner.component.registry",
)


def _module_level_imports(name: str, path: Path) -> list[str]:
    """Absolute names imported by the module's own body (not in functions, not under
    ``if TYPE_CHECKING:``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            prefix = ".".join(base) if node.level else ""
            target = (
                f"{prefix}.{node.module}" if prefix and node.module else (node.module or prefix)
            )
            found += [target, *(f"{target}.{alias.name}" for alias in node.names)]
    return found


def test_onnx_runtime_path_imports_no_torch():
    modules = _modules()
    seen, todo = set(), list(TORCH_FREE)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [
            ".".join(parts[:i]) for i in range(2, len(parts)) if ".".join(parts[:i]) in modules
        ]
        for imp in _module_level_imports(module, modules[module]):
            while imp and imp not in modules:
                imp = imp.rpartition(".")[0]
            if imp:
                todo.append(imp)
    wrong = sorted(
        f"{name} imports {imp}"
        for name in seen
        for imp in _module_level_imports(name, modules[name])
        if imp.split(".")[0] in ("torch", "transformers")
    )
    assert not wrong, "; ".join(wrong)
