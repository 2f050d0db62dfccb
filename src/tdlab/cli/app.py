"""The `tdlab` command line: a thin shell over tdlab.train, tdlab.store, tdlab.experiments and tdlab.report."""

from __future__ import annotations

import contextlib
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from tdlab.cli.errors import bad_input_exits, stderr
from tdlab.config import configure_threads
from tdlab.report.cells import number

app = typer.Typer(
    help="tdlab: a laboratory for the training dynamics of deep networks.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
)
console = Console()


@app.callback()
def _start() -> None:
    """Before every command: torch's CPU threads are the cores this process may use (`TDLAB_THREADS` pins them)."""
    with bad_input_exits():
        configure_threads()


SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config field: `key=value` (dotted keys, YAML values). Repeatable."),
]
OutOption = Annotated[Path, typer.Option("--out", "-o", help="The store: a folder of run directories.")]


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=False,
    )


def _train_progress(label: str):
    @contextlib.contextmanager
    def factory(start: int, total: int) -> Iterator[Any]:
        with _progress() as bar:
            task = bar.add_task(label, total=total, completed=start, info="")
            yield lambda step, info: bar.update(task, completed=step, info=info)

    return factory


def _tracker(bar: Progress):
    def track(iterable: Iterable[Any], description: str = "", total: int | None = None) -> Iterator[Any]:
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        task = bar.add_task(f"  {description}", total=total, info="")
        for item in iterable:
            yield item
            bar.advance(task)
        bar.remove_task(task)

    return track


def _overrides(items: list[str] | None) -> dict[str, Any]:
    from tdlab.config import apply_override

    raw: dict[str, Any] = {}
    for item in items or []:
        apply_override(raw, item)
    return raw


@contextlib.contextmanager
def _naming_damage(store) -> Iterator[None]:
    """Read `store` with its DamagedFileWarnings silenced, then name each damaged file once on stderr."""
    from tdlab.store import DamagedFileWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DamagedFileWarning)
            yield
    finally:
        for damage in store.damaged:
            stderr.print(f"[yellow]damaged:[/yellow] {escape(str(damage))}", highlight=False, soft_wrap=True)


def _find_run(out: Path, run: str):
    """The run `run`: a run directory, a run id of the store `out` (`sweep/run`), or a run's name unique in it."""
    from tdlab.store import Run, Store

    for path in (Path(run), out / run):
        if (path / "config.json").is_file():
            return Run.open(path)
    try:
        return Store(out).run(run)
    except KeyError as err:  # no such run, or a name that several runs share (their ids listed)
        raise ValueError(f"run: {err.args[0].split(': ', 1)[1]} (nor a run directory)") from None


@app.command()
def train(
    config: Annotated[Path | None, typer.Argument(help="A YAML training config (see examples/).")] = None,
    set_: SetOption = None,
    out: OutOption = Path("runs"),
    resume: Annotated[str | None, typer.Option(help="Continue this run from its last checkpoint.")] = None,
    run_id: Annotated[str | None, typer.Option("--id", help="Name the run directory.")] = None,
    tensorboard: Annotated[bool, typer.Option(help="Stream probes to RUN/tensorboard (scalars, histograms).")] = False,
    wandb: Annotated[
        bool, typer.Option(help="Log the run's metrics to Weights & Biases (WANDB_MODE=offline: to disk only).")
    ] = False,
    figure: Annotated[bool, typer.Option(help="Draw the run's dashboard to RUN/figures/metrics.png.")] = True,
) -> None:
    """Train a model with probes and record the run.

    Examples:

        tdlab train examples/mnist1d-mlp.yaml

        tdlab train examples/mnist1d-mlp.yaml --set optimizer.lr=0.1 --set steps=500

        tdlab train --resume runs/train-20261123-101500-ab12cd

        WANDB_MODE=offline tdlab train examples/mnist1d-mlp.yaml --wandb
    """
    from tdlab import train as training
    from tdlab.integrations.trackers import trackers as chosen_trackers

    with bad_input_exits():
        trackers = chosen_trackers(tensorboard=tensorboard, wandb=wandb)
        if resume is not None:
            run = _find_run(out, resume)
            run = training.resume(run.path, progress=_train_progress(f"resume {run.id}"), trackers=trackers)
        else:
            if config is None:
                raise ValueError("config: give a YAML config, or --resume RUN")
            cfg = training.load_config(config, set_)
            run = training.train(cfg, out=out, run_id=run_id, progress=_train_progress(cfg.name), trackers=trackers)
    console.print(f"run: [bold]{run.path}[/bold]  status: {run.status}")
    if figure:
        console.print(f"figure: {_draw_run(run)}")
    if run.status == "diverged":
        console.print(f"[yellow]diverged at step {run.meta.get('diverged_step')}[/yellow]")


def _draw_run(run) -> Path:
    from tdlab.report.dashboard import plot_run

    path = run.figure_path("metrics", "png")
    plot_run(run).savefig(path, dpi=110, bbox_inches="tight")
    return path


@app.command()
def runs(
    where: Annotated[
        str | None, typer.Option(help='SQL filter on config columns, e.g. "\\"optimizer.lr\\" > 0.01".')
    ] = None,
    out: OutOption = Path("runs"),
) -> None:
    """List the runs of a store, at any depth (a sweep's runs sit in `<out>/<sweep name>/`).

    Examples:

        tdlab runs

        tdlab runs --where "status = 'done' AND \\"optimizer.name\\" = 'adam'"
    """
    from tdlab.store import Store

    store = Store(out)
    with bad_input_exits(), _naming_damage(store):
        frame = store.runs(where=where)
    table = Table(title=f"runs in {out}")
    columns = [c for c in ("id", "kind", "status", "created", "duration_s") if c in frame.columns]
    for column in columns:
        table.add_column(column)
    for _, row in frame.iterrows():
        table.add_row(*[number(row[c]) for c in columns])
    console.print(table)


@app.command()
def show(
    run: Annotated[str, typer.Argument(help="A run id (in --out) or a run directory.")],
    out: OutOption = Path("runs"),
) -> None:
    """Summarise a run: status, config, a table of its metrics and a PNG figure of them.

    Example:

        tdlab show train-20261123-101500-ab12cd
    """
    from tdlab.store import check_run

    with bad_input_exits():  # a damaged file: one line naming it, exit 2
        record = _find_run(out, run)
        damage = check_run(record.path)
        if damage:
            named = "; ".join(str(d) for d in damage)
            them = "it" if len(damage) == 1 else "them"
            raise ValueError(f"damaged: {named}; `tdlab doctor --fix` repairs {them}")
        status = record.status
        catalogue = record.meta.get("kind") != "train"
        metrics = record.results() if catalogue else record.metrics()
        checks = record.checks()
    console.print(f"[bold]{record.id}[/bold]  kind: {record.meta.get('kind')}  status: {escape(status)}")
    console.print(escape(yaml.safe_dump(record.config, sort_keys=False).rstrip()))
    if metrics.empty:
        console.print("no metrics recorded")
    else:
        _print_metric_summary(metrics)
    if checks:
        _print_checks(checks)
    if record.meta.get("kind") == "train":
        console.print(f"figure: {_draw_run(record)}")
    else:
        for png in sorted((record.path / "figures").glob("*.png")):
            console.print(f"figure: {png}")


def _print_metric_summary(metrics) -> None:
    """One row per metric name: its row count, first and last value (by step when there is one), min and max."""
    table = Table(title="metrics")
    for column in ("name", "rows", "first", "last", "min", "max"):
        table.add_column(column, justify="left" if column == "name" else "right")
    for name, group in metrics.groupby("name", sort=True):
        values = (group.sort_values("step") if "step" in group else group)["value"].astype(float)
        table.add_row(
            escape(str(name)),
            str(len(values)),
            *[number(float(v)) for v in (values.iloc[0], values.iloc[-1], values.min(), values.max())],
        )
    console.print(table)


def _print_checks(checks: list[dict], title: str = "checks") -> None:
    table = Table(title=title)
    for column in ("check", "measured", "theory", "tolerance", "verdict"):
        table.add_column(column, justify="left" if column == "check" else "right")
    for check in checks:
        verdict = "[green]PASS[/green]" if check["passed"] else "[red]FAIL[/red]"
        theory = "" if check.get("theory") is None else number(float(check["theory"]))
        tolerance = check["kind"] if check.get("tolerance") is None else f"{check['tolerance']:.3g} ({check['kind']})"
        table.add_row(escape(check["name"]), number(float(check["measured"])), theory, tolerance, verdict)
    console.print(table)


@app.command()
def check(
    run: Annotated[str, typer.Argument(help="A catalogue run id (in --out) or a run directory.")],
    redraw: Annotated[bool, typer.Option("--redraw", help="Also draw its figures again from its metrics.")] = False,
    out: OutOption = Path("runs"),
) -> None:
    """Evaluate a stored catalogue run's checks again from its stored metrics and config alone.

    Prints the verdicts beside the stored ones; exits 1 when a check fails or a verdict differs from the stored one.

    Example:

        tdlab check edge-of-stability-20261204-101500-ab12cd --redraw
    """
    from tdlab.experiments.runner import recheck
    from tdlab.experiments.runner import redraw as draw_again

    with bad_input_exits():
        record = _find_run(out, run)
        if record.meta.get("kind") == "train":
            raise ValueError(f"run: {record.id} is a training run; `tdlab check` re-checks catalogue runs")
        checks = recheck(record)
    before = {c["name"]: c["passed"] for c in record.checks()}
    _print_checks([c.model_dump() for c in checks], title=f"{record.id}: checks from stored metrics")
    changed = [c.name for c in checks if before.get(c.name) is not c.passed]
    if changed:
        console.print(f"[red]verdicts differ from the stored ones:[/red] {escape(', '.join(changed))}")
    if redraw:
        for png in draw_again(record):
            console.print(f"figure: {png}")
    if changed or not all(c.passed for c in checks):
        raise typer.Exit(1)


new_app = typer.Typer(help="Write a new piece of tdlab from a template that already runs.", no_args_is_help=True)
app.add_typer(new_app, name="new")


@new_app.command("experiment")
def new_experiment(
    name: Annotated[str, typer.Argument(help="The experiment's name: lower-case words joined by '-'.")],
    root: Annotated[Path, typer.Option(help="The root of a tdlab checkout.")] = Path("."),
) -> None:
    """Write a catalogue module and its test that run and follow the experiment contract.

    Example:

        tdlab new experiment gd-on-least-squares
    """
    from tdlab.experiments.scaffold import new_experiment as write

    with bad_input_exits():
        module, test = write(name, root)
    console.print(f"experiment: [bold]{module}[/bold]\ntest: [bold]{test}[/bold]")
    console.print(f"run it: tdlab run {name}; test it: python -m pytest {test}")


@app.command()
def catalog() -> None:
    """List the catalogue's experiments, each with its claim."""
    from tdlab.experiments import experiments

    table = Table(title="the catalogue")
    table.add_column("experiment")
    table.add_column("part")
    table.add_column("claim")
    for name, experiment in experiments().items():
        table.add_row(name, escape(experiment.part), escape(experiment.claim))
    console.print(table)


@app.command("run")
def run_experiment(
    name: Annotated[str, typer.Argument(help="An experiment of `tdlab catalog`.")],
    set_: SetOption = None,
    preset: Annotated[str | None, typer.Option(help="A named config, e.g. `full` for the paper-scale run.")] = None,
    out: OutOption = Path("runs"),
) -> None:
    """Run one experiment of the catalogue and print its checks against theory.

    Examples:

        tdlab run quadratic-step-size

        tdlab run edge-of-stability --preset full

        tdlab run momentum --set seed=3
    """
    from tdlab.experiments import run

    with bad_input_exits(), _progress() as bar:
        outcome = run(name, preset=preset, out=out, track=_tracker(bar), **_overrides(set_))
    _print_checks([c.model_dump() for c in outcome.result.checks], title=f"{name}: checks")
    console.print(f"run: [bold]{outcome.run.path}[/bold] ({outcome.duration_s:.1f} s)")
    for png in sorted((outcome.run.path / "figures").glob("*.png")):
        console.print(f"figure: {png}")
    if not outcome.passed:
        raise typer.Exit(1)


@app.command()
def reproduce(
    quick: Annotated[
        bool, typer.Option("--quick", help="Quick configs (the defaults); otherwise the `full` presets.")
    ] = False,
    out: OutOption = Path("runs"),
    report: Annotated[Path, typer.Option(help="Folder of the HTML report.")] = Path("report"),
    only: Annotated[list[str] | None, typer.Option(help="Run only these experiments (repeatable).")] = None,
    jobs: Annotated[
        int,
        typer.Option(
            help="Experiments run at once, in worker processes sharing the usable cores (0: one per usable core); "
            "1 runs them one after another in this process."
        ),
    ] = 0,
) -> None:
    """Run the whole catalogue and write `report/index.html` (claim, figures, checks, config, run time).

    Examples:

        tdlab reproduce --quick

        tdlab reproduce --only momentum --only taylor-step --quick

        tdlab reproduce --quick --jobs 1   # one experiment at a time, each on all the usable cores
    """
    from tdlab.config import usable_cores
    from tdlab.experiments import experiments, get, run_many
    from tdlab.report import write_report

    with bad_input_exits():
        if jobs < 0:
            raise ValueError(f"jobs: expected 0 (one per usable core) or a positive integer, got {jobs}")
        names = [get(name).name for name in only] if only else list(experiments())
    presets = [(name, None if quick or "full" not in get(name).presets else "full") for name in names]
    jobs = min(jobs or usable_cores(), len(names))
    began = time.perf_counter()
    with _progress() as bar:
        overall = bar.add_task("catalogue", total=len(names), info=f"{jobs} at a time" if jobs > 1 else "")

        def done(name: str, error: BaseException | None) -> None:
            if error is not None:
                console.print(f"[red]{name} failed:[/red] {escape(str(error))}")
            bar.update(overall, advance=1, info=name)

        outcomes = run_many(presets, out=out, jobs=jobs, track=_tracker(bar), done=done)
    table = Table(title=f"checks ({'quick' if quick else 'full'})")
    for column in ("experiment", "check", "measured", "theory", "verdict"):
        table.add_column(column)
    for outcome in outcomes:
        for check in outcome.result.checks:
            theory = "" if check.theory is None else number(check.theory)
            table.add_row(
                outcome.experiment.name,
                check.name,
                number(check.measured),
                theory,
                "[green]PASS[/green]" if check.passed else "[red]FAIL[/red]",
            )
    console.print(table)
    page = write_report([o.run for o in outcomes], report)
    passed = sum(c.passed for o in outcomes for c in o.result.checks)
    total = sum(len(o.result.checks) for o in outcomes)
    console.print(
        f"{len(outcomes)}/{len(names)} experiments ran, {passed}/{total} checks pass, "
        f"{time.perf_counter() - began:.0f} s; report: [bold]{page}[/bold]"
    )
    if len(outcomes) < len(names) or passed < total:
        raise typer.Exit(1)


@app.command()
def sweep(
    spec: Annotated[Path, typer.Argument(help="A sweep spec (YAML): base config, grid, zip, seeds.")],
    workers: Annotated[int, typer.Option(help="Processes (or Ray workers) running points at once.")] = 1,
    backend: Annotated[str, typer.Option(help="`local` (processes) or `ray`.")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address; a local Ray when omitted.")] = None,
    ensemble: Annotated[
        bool, typer.Option(help="Train fresh runs of one shape together as vmapped ensembles (train sweeps).")
    ] = True,
    out: OutOption = Path("runs"),
) -> None:
    """Run a sweep: every point of the grid times the seeds, resumably (a rerun skips finished runs and resumes
    partial ones from their checkpoints).

    Examples:

        tdlab sweep examples/sweep-lr.yaml --workers 2

        tdlab sweep examples/sweep-lr.yaml --backend ray --address ray://head:10001

        tdlab sweep examples/sweep-lr.yaml --no-ensemble   # every run on its own, bit-for-bit sequential
    """
    from tdlab.sweep import SweepInterrupted, expand, load_spec, run_sweep

    with bad_input_exits():
        parsed, base = load_spec(spec)
        points = expand(parsed, base)
        with _progress() as bar:
            task = bar.add_task(f"sweep {parsed.name}", total=len(points), info="")

            def report(counts, running) -> None:
                finished = sum(counts.values())
                info = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + f", {running} running"
                bar.update(task, completed=finished, info=info)

            try:
                summary = run_sweep(
                    parsed, points, out, workers, backend=backend, address=address, report=report, ensemble=ensemble
                )
            except SweepInterrupted as stop:
                summary = stop.summary
                stderr.print(
                    f"sweep {parsed.name} interrupted: {_counts(summary.counts) or 'no point finished'}; finished "
                    "runs are kept, the same command resumes the rest",
                    highlight=False,
                    soft_wrap=True,
                )
                raise typer.Exit(130) from None
    console.print(f"sweep {parsed.name}: {_counts(summary.counts)}; runs in {summary.folder}")
    owners = Counter(owner.process if owner is not None else "another process" for owner in summary.busy.values())
    for owner, n in sorted(owners.items()):
        console.print(f"[yellow]busy:[/yellow] {n} run(s) in use by {escape(owner)}, left to it", highlight=False)
    if summary.counts.get("failed"):
        raise typer.Exit(1)


def _counts(counts) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="DuckDB SQL over the views `runs`, `metrics` and `results`.")],
    out: OutOption = Path("runs"),
    csv: Annotated[Path | None, typer.Option(help="Also write the result to this CSV file.")] = None,
) -> None:
    """Query all runs of a store with SQL (metrics are joined with flattened config columns).

    Examples:

        tdlab query "SELECT \\"optimizer.lr\\", avg(value) FROM metrics WHERE name = 'test/accuracy' GROUP BY 1"

        tdlab query "SELECT kind, status, count(*) FROM runs GROUP BY ALL" --out runs/lr-sweep
    """
    from tdlab.store import Store

    store = Store(out)
    with bad_input_exits():
        if csv is not None and (csv.is_dir() or not csv.parent.is_dir()):
            raise ValueError(f"csv: expected a file path in an existing folder, got {str(csv)!r}")
        with _naming_damage(store):
            frame = store.query(sql)
    table = Table()
    for column in frame.columns:
        table.add_column(str(column))
    for _, row in frame.head(200).iterrows():
        table.add_row(*[number(v) for v in row])
    console.print(table)
    if len(frame) > 200:
        console.print(f"... {len(frame)} rows in all")
    if csv is not None:
        frame.to_csv(csv, index=False)


@app.command()
def doctor(
    out: OutOption = Path("runs"),
    fix: Annotated[bool, typer.Option("--fix", help="Move each damaged file into <run>/damaged/.")] = False,
) -> None:
    """List the damaged files of a store (empty, truncated or garbled chunks, results, meta.json, ...).

    A run with a damaged file is left out of `tdlab runs` and `tdlab query`. With `--fix` each damaged file is
    moved into its run's `damaged/` folder (never deleted), so the run is read again without it; a run whose
    meta.json was moved aside is no longer listed. Exits 0 when the store is healthy (after fixing), 1 when
    damage remains.

    Examples:

        tdlab doctor --out runs

        tdlab doctor --out runs --fix
    """
    from tdlab.store import Store

    store = Store(out)
    with bad_input_exits():
        if out.exists() and not out.is_dir():
            raise ValueError(f"out: {str(out)!r} is a file; the store is a folder of runs")
        damage = store.check()
        for item in damage:
            console.print(f"damaged: {escape(str(item))}", highlight=False, soft_wrap=True)
        if fix:
            for _, target in store.repair():
                console.print(f"moved aside: {escape(str(target))}", highlight=False, soft_wrap=True)
            damage = store.check()
    if damage:
        hint = "" if fix else "; `tdlab doctor --fix` repairs them"
        console.print(f"{len(damage)} damaged file(s) in {escape(str(out))}{hint}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"{escape(str(out))}: {len(store)} runs, no damaged files", highlight=False, soft_wrap=True)


@app.command()
def report(
    folder: Annotated[
        Path, typer.Argument(help="A sweep's folder (`<out>/<sweep name>`), or a store with --catalogue.")
    ],
    path: Annotated[Path | None, typer.Option("--to", help="Folder of the page; default FOLDER/report.")] = None,
    catalogue: Annotated[
        bool,
        typer.Option("--catalogue", help="The catalogue's page of the store's latest run of each experiment."),
    ] = False,
) -> None:
    """Write an HTML page: of a sweep (each metric against the swept fields, mean and spread over seeds), or with
    `--catalogue` of the catalogue runs in a store, their figures drawn again from the stored metrics.

    Examples:

        tdlab report runs/lr-sweep

        tdlab report runs --catalogue --to report
    """
    from tdlab.report import write_report
    from tdlab.report.sweep import write_sweep_report

    with bad_input_exits():
        if catalogue:
            page = write_report(_latest_catalogue_runs(folder), path or folder / "report", redraw=True)
        else:
            page = write_sweep_report(folder, path)
    console.print(f"report: [bold]{page}[/bold]")


def _latest_catalogue_runs(out: Path) -> list:
    """The most recent finished run of each catalogue experiment in the store `out`, in catalogue order."""
    from tdlab.experiments import experiments
    from tdlab.store import Store

    if not out.is_dir():
        raise ValueError(f"folder: no store {str(out)!r}")
    latest = {}
    for record in Store(out):
        kind = record.meta.get("kind")
        newer = kind not in latest or record.meta.get("created", "") >= latest[kind].meta.get("created", "")
        if kind in experiments() and record.status == "done" and newer:
            latest[kind] = record
    if not latest:
        raise ValueError(f"folder: {out} holds no finished catalogue run")
    return [latest[name] for name in experiments() if name in latest]
