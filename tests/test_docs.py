"""The documentation site builds in strict mode (a broken reference, a missing snippet or a missing page fails it),
with the API reference rendered from the docstrings and a gallery page per catalogue experiment, showing the
checks and figures of a store's run where the store has one."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tdlab.experiments import get, run

ROOT = Path(__file__).resolve().parents[1]
FAST = "ridge-views"  # closed forms only: about 2 s


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """The site built from a store holding one run of the fastest experiment."""
    folder = tmp_path_factory.mktemp("docs")
    outcome = run(FAST, out=folder / "runs")
    env = {**os.environ, "TDLAB_GALLERY": str(folder / "runs"), "NO_MKDOCS_2_WARNING": "1"}
    began = time.perf_counter()
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(f"mkdocs build --strict: {time.perf_counter() - began:.1f} s")
    assert build.returncode == 0, build.stderr[-4000:]
    return folder / "site", outcome


def page(site: Path, path: str) -> str:
    return (site / path / "index.html").read_text(encoding="utf-8")


def text(site: Path, path: str) -> str:
    """A page as the reader sees it: tags (e.g. code highlighting) removed, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", page(site, path)))


def test_api_reference_renders_docstrings(site):
    root, _ = site
    curvature = page(root, "api/curvature")
    assert 'id="tdlab.curvature.hessian_eigs"' in curvature
    assert 'id="tdlab.oracles.Objective"' in page(root, "api/oracles")
    probes = page(root, "api/probes")
    # an `Example:` doctest renders as a Python console block, not as prose
    assert '<span class="gp">&gt;&gt;&gt; </span><span class="n">build_probe</span>' in probes


def test_user_guide_includes_the_readme(site):
    root, _ = site
    assert "hessian_trace(obj, method=" in text(root, "guide/instruments")
    assert "tdlab reproduce [--quick]" in text(root, "guide/cli")
    assert "--backend ray" in text(root, "guide/sweeps")
    assert "ProbeCallback" in text(root, "guide/integrations")


def test_gallery_page_of_a_stored_run_shows_its_checks_and_figures(site):
    root, outcome = site
    text = page(root, f"gallery/{FAST}")
    assert html.escape(get(FAST).claim, quote=False) in text
    first = outcome.result.checks[0]
    assert html.escape(first.name, quote=False) in text and "PASS" in text
    figures = sorted((outcome.run.path / "figures").glob("*.png"))
    assert figures
    for png in figures:
        assert f'src="{png.name}"' in text
        assert (root / "gallery" / FAST / png.name).read_bytes() == png.read_bytes()
    assert f"[{FAST}]({FAST}.md)" not in page(root, "gallery")  # the index links are rendered, not raw
    assert f'href="{FAST}/"' in page(root, "gallery")


def test_gallery_page_without_a_run_lists_claim_config_and_checks(site):
    root, _ = site
    text = page(root, "gallery/quadratic-step-size")
    assert html.escape(get("quadratic-step-size").claim, quote=False) in text
    assert "come from a reproduce run" in text
    assert "<code>kappas</code>" in text  # a config field
    assert "<img" not in text
