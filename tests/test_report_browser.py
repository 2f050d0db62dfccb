"""The HTML reports in a real browser: headless Chromium opens a catalogue report and a sweep report.

Reading the HTML text cannot tell whether a figure decodes, a link lands or a script fails; the browser can. Each
report folder is served over HTTP on localhost (a page that only works from `file://`, say with an absolute path,
fails here) and every `<img>` must have decoded (natural width > 0), every link must land (an in-page anchor on an
element of the page, anything else on a file of the folder answered with 200), every run must appear with its
verdict, and the console must hold no error. A screenshot of each page is saved and must not be blank.

The browser is Debian's `chromium` with its `chromedriver`, installed by `make setup`; Selenium is told where both
are, so its manager never downloads a driver. Without a browser the test fails, it does not skip: set
`TDLAB_NO_BROWSER=1` to skip it on purpose.
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tdlab.cli import app
from tdlab.store import Store

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Headless, and quiet on a closed network: no sandbox (root in CI), no GPU, no background fetches of any kind.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--no-proxy-server",
    "--window-size=1280,1000",
)
EXPERIMENTS = ("double-descent-linear", "quadratic-step-size", "ridge-views")  # two parts, among the cheapest
VERDICT_COLOURS = {"PASS": "rgba(19, 115, 51, 1)", "FAIL": "rgba(179, 38, 30, 1)"}  # .PASS and .FAIL in base.html
TINY_SWEEP = {
    "name": "tiny",
    "kind": "train",
    "config": {
        "steps": 20,
        "batch_size": 32,
        "data": {"name": "synthetic-regression", "n_train": 128, "n_test": 64, "in_features": 5},
        "model": {"name": "mlp", "width": 8, "depth": 2, "activation": "tanh"},
        "optimizer": {"name": "sgd", "lr": 0.05},
        "probes": [{"name": "loss", "every": 5}, {"name": "gradient-norm", "every": 5}],
    },
    "grid": {"optimizer.lr": [0.02, 0.05]},
    "seeds": [0, 1],
}

runner = CliRunner()
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # localhost directly, whatever *_proxy says


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """A headless Chromium driven by Selenium, with a fresh profile and the console log kept."""
    if os.environ.get("TDLAB_NO_BROWSER") == "1":
        pytest.skip("TDLAB_NO_BROWSER=1: the browser test is switched off")
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    assert not missing, f"{', '.join(missing)} missing: `make setup` installs Debian's chromium and chromium-driver"
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium missing: `make setup` installs the dev extra, which has it")
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager: never look for a driver online
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder and records the status of every request instead of printing it."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.server.answers.append((urllib.parse.unquote(self.path), int(code)))  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def serve() -> Iterator:
    """`serve(folder)` -> (the folder's base URL on localhost, the list of (path, status) it answered)."""
    servers = []

    def start(folder: Path) -> tuple[str, list[tuple[str, int]]]:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(folder)))
        server.answers = []  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/", server.answers  # type: ignore[attr-defined]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _open_and_check(driver, base: str, answers: list[tuple[str, int]], screenshot: Path) -> None:
    """Open `base`/index.html and assert what any report must satisfy: images decoded, links landing, a clean
    console, a screenshot that is not blank."""
    page = base + "index.html"
    driver.get(page)  # returns after the load event: every image has been fetched and decoded, or has failed
    images = driver.execute_script(
        "return Array.from(document.images, i => [i.getAttribute('src'), i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert images, "the page shows no figure"
    broken = [src for src, complete, width, height in images if not (complete and width > 0 and height > 0)]
    assert not broken, f"images that did not load: {broken}"

    links = driver.execute_script("return Array.from(document.querySelectorAll('a[href]'), a => a.href)")
    for link in links:
        target = urllib.parse.urlsplit(link)
        assert link.startswith(base), f"{link} leaves the report's folder: the page must be self-contained"
        if target.fragment and link.split("#", 1)[0] == page:
            fragment = urllib.parse.unquote(target.fragment)
            found = driver.execute_script("return document.getElementById(arguments[0]) !== null", fragment)
            assert found, f"{link}: no element with id {fragment!r} on the page"
        else:
            with _LOCAL.open(link, timeout=10) as response:
                assert response.status == 200, link

    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, f"console errors: {errors}"
    failed = [(path, code) for path, code in answers if code >= 400]
    assert not failed, f"requests the server could not answer: {failed}"

    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(height, 600), 6000))  # the whole page (capped) in one picture
    assert driver.save_screenshot(str(screenshot))
    _assert_not_blank(screenshot)


def _assert_not_blank(png: Path) -> None:
    from PIL import Image

    with Image.open(png) as image:
        assert image.format == "PNG" and image.width >= 1000 and image.height >= 600, image
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50, f"{png} is nearly blank: {len(colours)} colours"


def test_catalogue_report_in_a_browser(tmp_path, browser, serve):
    out, report = tmp_path / "runs", tmp_path / "report"
    only = [arg for name in EXPERIMENTS for arg in ("--only", name)]
    result = runner.invoke(app, ["reproduce", "--quick", *only, "--out", str(out), "--report", str(report)])
    assert result.exit_code in (0, 1), result.output  # 1: a check failed, still a report to look at
    runs = {run.meta["kind"]: run for run in Store(out)}
    assert sorted(runs) == sorted(EXPERIMENTS)
    crashed = {kind: run.meta.get("error") for kind, run in runs.items() if run.status != "done"}
    assert not crashed, f"experiments that did not finish: {crashed}"
    url, answers = serve(report)
    _open_and_check(browser, url, answers, tmp_path / "catalogue.png")

    from selenium.webdriver.common.by import By

    figures = sum(len(list((run.path / "figures").glob("*.png"))) for run in runs.values())
    assert len(browser.find_elements(By.TAG_NAME, "img")) == figures
    top = browser.find_element(By.TAG_NAME, "table")  # the summary: one row per experiment
    column = [th.text for th in top.find_elements(By.TAG_NAME, "th")].index("checks passed")
    summary = {row.find_element(By.TAG_NAME, "a").text: row for row in top.find_elements(By.XPATH, ".//tr[td/a]")}
    assert sorted(summary) == sorted(runs)
    for kind, run in runs.items():
        checks = run.checks()
        passed = sum(bool(c["passed"]) for c in checks)
        verdict = "PASS" if passed == len(checks) else "FAIL"
        cell = summary[kind].find_elements(By.TAG_NAME, "td")[column]
        assert cell.text == f"{passed}/{len(checks)}", kind
        assert cell.value_of_css_property("color") == VERDICT_COLOURS[verdict], (kind, verdict)
        section = browser.find_element(By.ID, kind)
        assert section.is_displayed() and section.find_element(By.TAG_NAME, "h3").text == kind
        table = section.find_element(By.TAG_NAME, "table")  # the checks, one row each
        column_of = [th.text for th in table.find_elements(By.TAG_NAME, "th")].index("verdict")
        shown = [
            row.find_elements(By.TAG_NAME, "td")[column_of].text for row in table.find_elements(By.XPATH, ".//tr[td]")
        ]
        assert shown == ["PASS" if c["passed"] else "FAIL" for c in checks], kind


def test_sweep_report_in_a_browser(tmp_path, browser, serve):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY_SWEEP))
    out = tmp_path / "runs"
    result = runner.invoke(app, ["sweep", str(spec), "--out", str(out)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["report", str(out / "tiny")])
    assert result.exit_code == 0, result.output
    url, answers = serve(out / "tiny" / "report")
    _open_and_check(browser, url, answers, tmp_path / "sweep.png")

    from selenium.webdriver.common.by import By

    store = Store(out / "tiny")
    assert len(store) == 4 and "4 done" in browser.find_element(By.CLASS_NAME, "meta").text
    text = browser.find_element(By.TAG_NAME, "body").text
    missing = [name for name in store.metrics()["name"].unique() if name not in text]
    assert not missing, f"metrics the sweep page does not show: {missing}"


def test_the_checks_catch_a_broken_page(tmp_path, browser, serve):
    """Each defect alone, on an otherwise sound page, fails `_open_and_check` with its own message."""
    from PIL import Image

    good = tmp_path / "good.png"
    Image.new("RGB", (40, 30), "steelblue").save(good)
    defects = {
        '<img src="figures/truncated.png">': "images that did not load",
        '<a href="#nowhere">x</a>': "no element with id 'nowhere'",
        '<a href="figures/gone.png">x</a>': "HTTP Error 404",
        '<a href="https://example.org/">x</a>': "leaves the report's folder",
        "<script>undefined_function()</script>": "console errors",
        "": "nearly blank",  # one small image on white: two colours in the screenshot
    }
    for number, (defect, message) in enumerate(defects.items()):
        folder = tmp_path / f"page{number}"  # a folder and a server each: nothing cached from the page before
        (folder / "figures").mkdir(parents=True)
        (folder / "figures" / "good.png").write_bytes(good.read_bytes())
        (folder / "figures" / "truncated.png").write_bytes(good.read_bytes()[:40])
        page = f'<!doctype html><link rel="icon" href="data:,"><img src="figures/good.png">{defect}'
        (folder / "index.html").write_text(page)
        url, answers = serve(folder)
        with pytest.raises((AssertionError, urllib.error.HTTPError), match=message):
            _open_and_check(browser, url, answers, folder / "page.png")
