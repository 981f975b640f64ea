"""The layer order of the README's layout section, checked on every wseg import.

Each module belongs to one layer; a module may import its own layer and the layers below it,
never one above. Imports inside functions count: a deferred import still runs against the order.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import wseg

PACKAGE = Path(wseg.__file__).parent

# Lowest first. A module is in the layer of the longest name here that it starts with.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "base",
        (
            "wseg",
            "wseg.constants",
            "wseg.errors",
            "wseg.runs",
            "wseg.parallel",
            "wseg.metrics",
            "wseg.options",
        ),
    ),
    ("data", ("wseg.data", "wseg.visualize")),
    ("nets", ("wseg.nets",)),
    ("losses", ("wseg.losses",)),
    ("labels", ("wseg.labels", "wseg.postprocess")),
    ("methods", ("wseg.methods", "wseg.callbacks")),
    ("pipeline", ("wseg.pipeline", "wseg.inference", "wseg.export")),
    ("compare/cli", ("wseg.compare", "wseg.cli", "wseg.tools", "wseg.demo", "wseg.__main__")),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or (prefix != "wseg" and module.startswith(prefix + "."))
            if matches and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS and the README layout")
    return best


def wseg_imports(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, module) of every wseg import in ``source``, at module level or inside functions.

    Args:
        source: Python source of the module ``module``.
        module: Its dotted name (resolves relative imports).
        is_package: Whether it is a package's ``__init__``.

    """
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names = [".".join(base + ([node.module] if node.module else []))]
            else:
                names = [node.module or ""]
        else:
            continue
        found += [(node.lineno, name) for name in names if name.split(".")[0] == "wseg"]
    return found


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every import of ``source`` that reaches a layer above its module's."""
    own = layer_of(module)
    return [
        f"{line}: {module} ({LAYERS[own][0]}) imports {imported} ({LAYERS[layer_of(imported)][0]})"
        for line, imported in wseg_imports(source, module, is_package)
        if layer_of(imported) > own
    ]


def test_every_wseg_import_follows_the_layer_order() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 50
    found = []
    for path in files:
        found += [
            f"{path.relative_to(PACKAGE.parent)}:{problem}"
            for problem in violations(
                path.read_text(), module_name(path), path.name == "__init__.py"
            )
        ]
    assert not found, "imports against the layer order:\n" + "\n".join(found)


def test_the_checker_sees_deferred_and_relative_imports() -> None:
    deferred = "import numpy\n\ndef f():\n    from wseg.methods import base\n    return base\n"
    assert violations(deferred, "wseg.data.probe") == [
        "4: wseg.data.probe (data) imports wseg.methods (methods)"
    ]
    relative = "from ..labels import store\nfrom . import weak\n"
    assert wseg_imports(relative, "wseg.data.probe") == [(1, "wseg.labels"), (2, "wseg.data")]
    assert violations(relative, "wseg.data.probe") == [
        "1: wseg.data.probe (data) imports wseg.labels (labels)"
    ]
    assert violations("from wseg.data.records import Sample\n", "wseg.labels.probe") == []


def test_every_module_has_a_layer() -> None:
    assert LAYERS[layer_of("wseg.data.datasets.coco")][0] == "data"
    assert LAYERS[layer_of("wseg.metrics")][0] == "base"
    assert LAYERS[layer_of("wseg")][0] == "base"
    with pytest.raises(AssertionError, match="wseg.datamodule_probe is in no layer"):
        layer_of("wseg.datamodule_probe")  # "wseg.data" is a whole name, not a prefix of it


def test_the_readme_states_this_order() -> None:
    readme = (PACKAGE.parent / "README.md").read_text()
    assert " -> ".join(name for name, _ in LAYERS) in readme
