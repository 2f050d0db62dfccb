"""The architecture as a test: tdlab's folders import only from the layers below them, and no catalogue experiment
imports another experiment (what experiments share lives in a lower layer)."""

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "tdlab"

# Lower numbers are lower layers; a folder may import from folders of a strictly lower rank only.
RANK = {
    "config": 0,
    "store": 1,
    "theory": 1,
    "models": 1,
    "data": 1,
    "oracles": 1,
    "curvature": 2,
    "optim": 2,
    "probes": 3,
    "landscape": 3,
    "train": 4,
    "ensemble": 5,
    "experiments": 6,
    "integrations": 7,
    "sweep": 7,
    "report": 7,
    "cli": 8,
}


def _imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tdlab":
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names if alias.name.split(".")[0] == "tdlab")
    return found


def _modules() -> list[Path]:
    return sorted(p for p in SOURCE.rglob("*.py") if len(p.relative_to(SOURCE).parts) > 1)


def test_every_folder_has_a_layer():
    folders = {p.relative_to(SOURCE).parts[0] for p in _modules()}
    assert folders <= set(RANK), f"folders without a layer: {sorted(folders - set(RANK))}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SOURCE)))
def test_imports_point_down(path):
    folder = path.relative_to(SOURCE).parts[0]
    for module in _imports(path):
        parts = module.split(".")
        if len(parts) < 2 or parts[1] == folder:
            continue
        assert RANK[parts[1]] < RANK[folder], (
            f"{folder} (layer {RANK[folder]}) imports {module} (layer {RANK[parts[1]]})"
        )


def test_no_experiment_imports_another_and_the_catalogue_has_no_private_library():
    catalogue = SOURCE / "experiments" / "catalogue"
    private = sorted(p.name for p in catalogue.glob("_*.py") if p.name != "__init__.py")
    assert not private, f"helpers shared by experiments belong in a lower layer: {private}"
    for path in catalogue.glob("*.py"):
        for module in _imports(path):
            assert not module.startswith("tdlab.experiments.catalogue"), f"{path.name} imports {module}"
