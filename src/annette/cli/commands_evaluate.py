"""``annette evaluate``: measure networks, estimate them with a hardware model, write a report."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from annette.cli.common import (
    BACKEND_OPTION_HELP,
    console,
    emit_json,
    err_console,
    handle_errors,
    parse_backend_options,
)
from annette.errors import InvalidOptionError


@handle_errors
def evaluate(
    hw: str = typer.Option(..., "--hw", help="Hardware model: a shipped name or a JSON file."),
    backend: str = typer.Option("onnxruntime", "--backend", help="Backend that measures the networks."),
    threads: int = typer.Option(1, "--threads", "-t", help="Runtime threads."),
    batch: int = typer.Option(1, "--batch", "-b", help="Batch size."),
    backend_option: list[str] = typer.Option(None, "--backend-option", "--opt", help=BACKEND_OPTION_HELP),
    models: list[str] = typer.Option(
        None, "--models", "-m",
        help="Models (.onnx, graph .json, torchvision:NAME, nb201:ARCH, hf:NAME): --models A B, -m A -m B, or A B alone.",
    ),
    more_models: list[str] = typer.Argument(None, help="More models (as --models).", show_default=False),
    zoo: str = typer.Option(None, "--zoo", help="Evaluate a whole zoo: torchvision."),
    nb201: int = typer.Option(
        None, "--nb201", help="Evaluate N NAS-Bench-201 architectures drawn with --seed."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the NAS-Bench-201 sample and of the round order."),
    rounds: int = typer.Option(
        3, "--rounds", "-r", help="Interleaved measurement rounds (>= 2 for a noise floor)."
    ),
    profile: bool = typer.Option(True, "--profile/--no-profile", help="Profile per node in round 1."),
    title: str = typer.Option(None, "--title", help="Report title."),
    out: Path = typer.Option(..., "--out", "-o", help="Report directory (measurements are resumed from it)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Measure networks end to end, estimate them with every layer-model kind of HW, and write a report
    (report.html, summary.md, results.json, PNG plots) with MAPE, RMSPE, ±5/±10 % accuracy, Spearman and
    Kendall per kind and the noise floor. Rerunning with the same -o reuses finished measurements."""
    from annette.evaluate.report import flag_legend, network_rows, target_warnings, write_report
    from annette.evaluate.study import Progress as StudyProgress
    from annette.evaluate.study import StudySettings, nb201_specs, run_study, zoo_specs

    models = [*(models or ()), *(more_models or ())]
    chosen = [name for name, value in (("--models", models), ("--zoo", zoo), ("--nb201", nb201)) if value]
    if len(chosen) != 1:
        raise InvalidOptionError(
            "choose exactly one network set: --models FILE (repeatable), --zoo torchvision or --nb201 N; "
            f"got {', '.join(chosen) or 'none'}"
        )
    if models:
        specs, default_title = list(models), "annette evaluation"
    elif zoo:
        specs, default_title = zoo_specs(zoo), f"{zoo} zoo accuracy"
    else:
        specs, default_title = (
            nb201_specs(nb201, seed=seed),
            f"NAS-Bench-201 fidelity ({nb201} archs, seed {seed})",
        )
    settings = StudySettings(
        backend=backend,
        threads=threads,
        batch=batch,
        rounds=rounds,
        seed=seed,
        profile=profile,
        backend_options=parse_backend_options(backend_option),
    )
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=as_json,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def on_progress(p: StudyProgress) -> None:
            if p.phase not in tasks:
                tasks[p.phase] = bar.add_task(p.phase, total=p.total)
            where = f"round {p.round + 1}: " if p.round >= 0 else ""
            bar.update(
                tasks[p.phase], completed=p.done, total=p.total, description=escape(f"{p.phase} {where}{p.network}")
            )

        result = run_study(specs, hw, out, settings, title=title or default_title, progress=on_progress)
    files = write_report(result, out)
    if as_json:
        emit_json({**result.to_dict(), "report": {"html": str(files.html), "summary": str(files.summary)}})
        return
    for warning in target_warnings(result):
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    head, net_rows = network_rows(result)
    per_net = Table(title=escape(f"{result.title}: per network (label = {result.label_statistic})"))
    for i, col in enumerate(head):
        per_net.add_column(escape(col), justify="left" if i == 0 or col == "flags" else "right",
                           overflow="fold")
    for row in net_rows:
        per_net.add_row(*(escape(c) for c in row))
    console.print(per_net)
    for line in flag_legend(result):
        console.print(f"  flag {escape(line)}", highlight=False)
    table = Table(title=f"{result.title}: {len(result.networks)} networks, label = {result.label_statistic}")
    for col in ("model kind", "MAPE %", "RMSPE %", "±5 %", "±10 %", "Spearman", "Kendall"):
        table.add_column(col, justify="left" if col == "model kind" else "right")
    rows = list(result.overall.items())
    if result.noise_floor is not None:
        rows.append(("noise floor (round 1 vs 2)", result.noise_floor))
    for label, m in rows:
        table.add_row(
            label,
            f"{m.mape_pct:.2f}",
            f"{m.rmspe_pct:.2f}",
            f"{m.within5_pct:.1f}",
            f"{m.within10_pct:.1f}",
            f"{m.spearman:.3f}",
            f"{m.kendall:.3f}",
        )
    console.print(table)
    unsupported = [n.name for n in result.networks if any(n.unsupported.values())]
    if unsupported:
        console.print(f"[yellow]networks with layers no model covers:[/] {', '.join(unsupported)}")
    for spec, error in result.failed.items():
        console.print(f"[red]failed:[/] {escape(spec)}: {escape(error)}", highlight=False)
    console.print(f"report: {files.html}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
