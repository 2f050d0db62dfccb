"""`tdlab new experiment NAME`: a catalogue module and its test, written from a template that already runs.

The module follows the contract (config, measure through `tdlab.train.fit` and the probes, checks and figures from
the metrics alone); its test re-checks it from stored metrics and shows that its check can fail. Replace the
template's claim, measurement, checks and figures with your experiment's.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from string import Template

NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")


def module_name(name: str) -> str:
    """The Python module of an experiment name: `my-claim` -> `my_claim`."""
    return name.replace("-", "_")


def new_experiment(name: str, root: str | Path = ".") -> tuple[Path, Path]:
    """Write `src/tdlab/experiments/catalogue/<module>.py` and `tests/experiments/test_<module>.py` under the
    repository `root`; returns both paths. Refuses a malformed name, a root without tdlab's sources, or files that
    exist (nothing is written then).

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "src/tdlab/experiments/catalogue").mkdir(parents=True)
        >>> (root / "tests/experiments").mkdir(parents=True)
        >>> [p.name for p in new_experiment("my-claim", root)]
        ['my_claim.py', 'test_my_claim.py']
    """
    if not NAME.fullmatch(name):
        raise ValueError(f"name: lower-case words joined by '-' (e.g. 'gd-on-least-squares'), got {name!r}")
    root = Path(root)
    catalogue, tests = root / "src/tdlab/experiments/catalogue", root / "tests/experiments"
    for folder in (catalogue, tests):
        if not folder.is_dir():
            raise ValueError(f"root: {root} is not a tdlab repository (no {folder.relative_to(root)})")
    module = module_name(name)
    targets = {"experiment": catalogue / f"{module}.py", "test_experiment": tests / f"test_{module}.py"}
    existing = [str(path) for path in targets.values() if path.exists()]
    if existing:
        raise ValueError(f"name: {existing[0]} exists; choose another name")
    values = {
        "name": name,
        "module": module,
        "config_class": "".join(part.capitalize() for part in module.split("_")) + "Config",
    }
    templates = resources.files("tdlab.experiments") / "templates"
    for template, path in targets.items():
        text = (templates / f"{template}.py.template").read_text()
        path.write_text(Template(text).substitute(values))
    return targets["experiment"], targets["test_experiment"]
