"""MkDocs hook: the gallery, one page per catalogue experiment, generated at build time.

Each page gives the experiment's claim, its theory (the module's docstring), its references and its quick config.
With a store of catalogue runs (`tdlab reproduce --quick --out DIR`, then `TDLAB_GALLERY=DIR mkdocs build`), the
page also shows the checks table and the figures of the store's latest finished run of the experiment; without
one, it names what the checks compare and says where the figures come from. The pages exist only in the built
site: nothing is written into `docs/`.
"""

from __future__ import annotations

import html
import inspect
import json
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

FOLDER = "gallery"
NAV_TITLE = "Gallery"


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Replace the nav entry `Gallery: gallery/index.md` by the index and one page per experiment, by part."""
    from tdlab.report.catalogue import PARTS

    parts: dict[str, list[dict[str, str]]] = {part: [] for part in PARTS}
    for name, experiment in _experiments().items():
        parts.setdefault(experiment.part or "other", []).append({name: f"{FOLDER}/{name}.md"})
    section: list[Any] = [f"{FOLDER}/index.md"]
    section += [{part.capitalize(): pages} for part, pages in parts.items() if pages]
    for i, item in enumerate(config.nav or []):
        if isinstance(item, dict) and NAV_TITLE in item:
            config.nav[i] = {NAV_TITLE: section}
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the gallery's pages (and the figures of the store's runs) to the site's files."""
    store = config.extra.get("gallery_store") or ""
    runs = latest_runs(Path(store)) if store else {}
    catalogue = _experiments()
    for name, experiment in catalogue.items():
        run = runs.get(name)
        figures = sorted((run.path / "figures").glob("*.png")) if run is not None else []
        for png in figures:
            files.append(File.generated(config, f"{FOLDER}/{name}/{png.name}", abs_src_path=str(png)))
        files.append(File.generated(config, f"{FOLDER}/{name}.md", content=experiment_page(experiment, run, figures)))
    files.append(File.generated(config, f"{FOLDER}/index.md", content=index_page(catalogue, runs, store)))
    return files


def latest_runs(store: Path) -> dict[str, Any]:
    """The most recent finished run of each catalogue experiment in `store`, by experiment name."""
    from tdlab.store import Store

    if not store.is_dir():
        raise PluginError(f"gallery_store (TDLAB_GALLERY): no folder {str(store)!r}")
    catalogue = _experiments()
    latest: dict[str, Any] = {}
    for run in Store(store):
        kind = run.meta.get("kind")
        if kind not in catalogue or run.status != "done":
            continue
        if kind not in latest or run.meta.get("created", "") >= latest[kind].meta.get("created", ""):
            latest[kind] = run
    return latest


def index_page(catalogue: dict[str, Any], runs: dict[str, Any], store: str) -> str:
    """The gallery's front page: every experiment with its claim, and its checks passed when a run is shown."""
    source = (
        f"The checks and figures are those of the latest finished run of each experiment in the store `{store}`."
        if store
        else "This build was made without a store of runs, so the pages list each experiment's claim, config and "
        "what its checks compare; the checks tables and figures come from a reproduce run (see below)."
    )
    lines = [
        "# Gallery",
        "",
        "One page per experiment of the catalogue: the claim of the lectures it measures, its theory and "
        "references, its config, the table of its checks against theory and its figures. " + source,
        "",
        "To build the gallery with figures: `tdlab reproduce --quick --out runs`, then "
        "`TDLAB_GALLERY=runs mkdocs build` (or `mkdocs serve`).",
        "",
        "| experiment | part | claim | checks passed |",
        "| --- | --- | --- | --- |",
    ]
    for name, experiment in catalogue.items():
        run = runs.get(name)
        passed = ""
        if run is not None:
            checks = run.checks()
            passed = f"{sum(bool(c.get('passed')) for c in checks)}/{len(checks)}"
        lines.append(f"| [{name}]({name}.md) | {experiment.part} | {_cell(experiment.claim)} | {passed} |")
    return "\n".join(lines) + "\n"


def experiment_page(experiment: Any, run: Any | None, figures: list[Path]) -> str:
    """One experiment's page: claim, theory, references, config, and the checks and figures of `run` if given."""
    lines = [f"# {experiment.name}", "", f"*Part: {experiment.part or 'other'}*", "", '!!! abstract "Claim"', ""]
    lines += ["    " + _text(experiment.claim), ""]
    theory = inspect.getdoc(inspect.getmodule(experiment.measure))
    if theory:
        lines += ["## Theory", "", _text(theory), ""]
    if experiment.references:
        lines += ["## References", ""] + [f"- {_text(ref)}" for ref in experiment.references] + [""]
    lines += [
        "## Config",
        "",
        "The quick config (the defaults); `tdlab run NAME --set field=value` changes a field.",
        "",
    ]
    lines += ["| field | default | meaning |", "| --- | --- | --- |"]
    for field, info in experiment.config.model_fields.items():
        default = json.dumps(info.get_default(call_default_factory=True), default=str)
        lines.append(f"| `{field}` | `{_cell(default)}` | {_cell(info.description or '')} |")
    lines.append("")
    for preset, values in experiment.presets.items():
        changed = ", ".join(f"`{k}`" for k in values)
        lines += [f"Preset `{preset}` (`tdlab run {experiment.name} --preset {preset}`) changes {changed}.", ""]
    lines += ["## Checks", ""]
    if run is None:
        doc = inspect.getdoc(experiment.checks)
        if doc:
            lines += [_text(doc), ""]
        lines += [
            "The checks table and the figures come from a reproduce run: `tdlab reproduce --quick --out runs`, "
            "then `TDLAB_GALLERY=runs mkdocs build`.",
            "",
        ]
        return "\n".join(lines)
    lines += [
        f"Run `{run.id}` (preset {run.meta.get('preset') or 'quick'}, {run.meta.get('duration_s', 0.0):.1f} s).",
        "",
        "| check | measured | theory | verdict | detail |",
        "| --- | --- | --- | --- | --- |",
    ]
    for check in run.checks():
        verdict = "PASS" if check.get("passed") else "FAIL"
        cells = [check.get("name", ""), _number(check.get("measured")), _number(check.get("theory")), verdict]
        lines.append("| " + " | ".join(_cell(str(c)) for c in [*cells, check.get("detail", "")]) + " |")
    lines += ["", "## Figures", ""]
    lines += [f"![{png.stem}]({experiment.name}/{png.name})\n" for png in figures] or ["No figures.", ""]
    return "\n".join(lines)


def _experiments() -> dict[str, Any]:
    from tdlab.experiments import experiments

    return experiments()


def _number(value: Any) -> str:
    from tdlab.report.cells import number

    return number(value)


def _text(text: str) -> str:
    """Prose from a docstring as Markdown text: HTML-escaped, so `<`, `&` and `*` read as written."""
    return html.escape(text, quote=False).replace("*", r"\*").replace("[", r"\[")


def _cell(text: str) -> str:
    """`_text` for one table cell: on one line, with its pipes escaped."""
    return _text(" ".join(text.split())).replace("|", r"\|")
