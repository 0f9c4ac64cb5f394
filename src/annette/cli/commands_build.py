"""``annette build``: measure, fit and validate a hardware model of this machine in one command."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from annette.cli.common import (
    BACKEND_OPTION_HELP,
    console,
    emit_json,
    err_console,
    handle_errors,
    parse_backend_options,
)


@handle_errors
def build(
    backend: str = typer.Option("onnxruntime", "--backend", help="Backend: onnxruntime, openvino, torch, simulated."),
    threads: int = typer.Option(1, "--threads", help="Runtime threads."),
    out: Path = typer.Option(..., "--out", "-o", help="Build directory (created): store.sqlite and hardware.json."),
    budget_min: float = typer.Option(30.0, "--budget-min", help="Time budget of the whole build in minutes."),
    resume: bool = typer.Option(False, "--resume", help="Continue the build already in --out."),
    seed: int = typer.Option(0, "--seed", help="Seed of the build's plans."),
    name: str = typer.Option(None, "--name", help="Name of the hardware model (default: from the target)."),
    bundle: Path = typer.Option(None, "--bundle", help="Where to write the hardware model (default OUT/hardware.json)."),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds one configuration may take before it fails."),
    validate_n: int = typer.Option(24, "--validate", help="Generated networks measured end to end to validate."),
    opt: list[str] = typer.Option(None, "--backend-option", "--opt", help=BACKEND_OPTION_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the build result as JSON."),
    cluster: str = typer.Option(None, "--cluster", help="Build on a Dask scheduler's workers, e.g. tcp://HOST:8786."),
    targets: list[str] = typer.Option(None, "--target", help="Worker label to build for (repeatable; with --cluster)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Configurations per cluster task."),
    worker_wait: float = typer.Option(60.0, "--worker-wait", help="Seconds to wait for a worker of a label that has none."),
) -> None:
    """Build a hardware model for this machine: benchmark every family (micro-kernels, blocks, blocks in context,
    cells, node chains, cache pressure), refine where the model errs until the budget ends, fit, and validate
    on generated networks no stage measured."""
    from annette.backends import BACKENDS
    from annette.build import BuildProgress, run_build

    BACKENDS.get(backend)  # an unknown name fails before the progress bar shows
    budget_s = budget_min * 60.0
    options = parse_backend_options(opt)
    if cluster is not None or targets:  # for the targets of worker labels (one build each: OUT or OUT/LABEL)
        from annette.cli.commands_cluster import build_on_cluster

        build_on_cluster(cluster, list(targets or []), out, as_json=as_json, batch_size=batch_size,
                         worker_wait_s=worker_wait, bundle=bundle, name=name, backend=backend, threads=threads,
                         budget_min=budget_min, seed=seed, resume=resume, backend_options=options, timeout_s=timeout,
                         validate_n=validate_n)
        return
    live = err_console.is_terminal and not as_json
    last_line = [0.0]
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(), console=err_console, disable=not live, transient=as_json,
    ) as bar:
        task = bar.add_task("build", total=budget_s, status="")

        def progress(p: BuildProgress) -> None:
            status = f"{p.done} done, {p.failed} failed" + (f" [dim]{escape(p.message)}[/]" if p.message else "")
            bar.update(task, completed=min(budget_s, p.elapsed_s), description=f"build {p.stage}", status=status)
            now = time.monotonic()
            if not live and (now - last_line[0] >= 60.0 or p.done == 0):  # a plain line per minute in a log
                last_line[0] = now
                err_console.print(f"{p.elapsed_s / 60:5.1f} min  {p.stage}: {p.done} done, {p.failed} failed "
                                  f"{escape(p.message)}", highlight=False, soft_wrap=True)

        result = run_build(
            out, backend=backend, threads=threads, budget_min=budget_min, seed=seed, resume=resume,
            backend_options=options, bundle=bundle, name=name, timeout_s=timeout, validate_n=validate_n,
            progress=progress,
        )
    if as_json:
        emit_json(result.to_dict())
        return
    table = Table(title=f"annette build: {result.elapsed_s / 60:.1f} min")
    for col in ("stage", "measured", "failed", "skipped", "min", "note"):
        table.add_column(col, justify="left" if col in ("stage", "note") else "right")
    for s in result.stages:
        table.add_row(s.name, str(s.measured), str(s.failed), str(s.skipped), f"{s.elapsed_s / 60:.1f}", escape(s.note))
    console.print(table)
    v = result.validation
    if v is not None:
        m, nf = v.metrics, v.noise_floor
        console.print(
            f"validation ({v.kind}, {m.n} generated networks no stage measured): MAPE {m.mape_pct:.1f} %, "
            f"{m.within10_pct:.0f} % within ±10 %, Spearman {m.spearman:.3f}; noise floor (round 1 vs 2): MAPE "
            f"{nf.mape_pct:.1f} %, Spearman {nf.spearman:.3f}", highlight=False,
        )
    console.print(f"wrote {result.bundle}; store: {result.store}", highlight=False)




@handle_errors
def calibrate(
    hw: str = typer.Option(..., "--hw", help="Base hardware model: a JSON file or a shipped name."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the calibrated hardware model (JSON)."),
    minutes: float = typer.Option(3.0, "--minutes", help="Time to measure and fit (this machine)."),
    backend: str = typer.Option(None, "--backend", help="Backend to measure with (default: the base's)."),
    threads: int = typer.Option(None, "--threads", help="Runtime threads (default: the base's)."),
    measured: Path = typer.Option(
        None, "--measured", help="CSV of whole-network timings measured elsewhere (columns model,latency_ms): "
        "calibrate from them instead of measuring here."),
    device: str = typer.Option(None, "--device", help="With --measured: the device's name, for the bundle."),
    store: Path = typer.Option(None, "--store", help="Keep the calibration measurements in this store directory."),
    name: str = typer.Option(None, "--name", help="Name of the new hardware model (default: BASE-calibrated)."),
    opt: list[str] = typer.Option(None, "--backend-option", "--opt", help=BACKEND_OPTION_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the calibration report as JSON."),
) -> None:
    """Adapt a hardware model to this machine in a few minutes (or to a device, from timings measured there)."""
    from annette.calibrate import calibrate_here, calibrate_measured, read_measured

    if measured is not None:
        with err_console.status(f"reading {measured} ..."):
            rows = read_measured(measured)
        new, report = calibrate_measured(hw, rows, device=device, name=name)
    else:
        with err_console.status("calibrating ...") as status:
            new, report = calibrate_here(hw, minutes=minutes, backend=backend, threads=threads,
                                         backend_options=parse_backend_options(opt), store_dir=store, name=name,
                                         progress=lambda m: status.update(escape(m)))
    new.save(out)
    if as_json:
        emit_json({"out": str(out), "name": new.name, **report.to_dict()})
        return
    console.print(f"calibrated {escape(str(hw))} from {report.n_records} records in {report.elapsed_s / 60:.1f} min: "
                  f"global factor {report.default_scale:.3f}, {len(report.scales)} type factors "
                  f"({min(report.scales.values(), default=1):.2f}-{max(report.scales.values(), default=1):.2f}); "
                  f"{report.overhead.per_node_ms * 1e3:.2f} µs per node, {report.overhead.per_run_ms * 1e3:.2f} µs per run",
                  highlight=False)
    if report.before is not None and report.after is not None:
        b, a = report.before, report.after
        what = "leave-one-out" if measured is not None else "held-out calibration records"
        console.print(f"{what} ({a.n}): MAPE {b.mape_pct:.1f} % -> {a.mape_pct:.1f} %, within ±10 % "
                      f"{b.within10_pct:.0f} % -> {a.within10_pct:.0f} %, Spearman {b.spearman:.3f} -> {a.spearman:.3f}",
                      highlight=False)
    console.print(f"wrote {out}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("build")(build)
    app.command("calibrate")(calibrate)
