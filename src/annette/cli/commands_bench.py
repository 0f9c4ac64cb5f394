"""``annette bench`` (campaign, status, import, export) and ``annette measure``: run benchmarks on real runtimes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
from annette.errors import InvalidOptionError

bench_app = typer.Typer(
    help="Benchmark campaigns into a store (micro-kernels and blocks), store status, import and export.",
    invoke_without_command=True,
)


@bench_app.callback()
@handle_errors
def bench(
    ctx: typer.Context,
    backend: str = typer.Option("onnxruntime", "--backend", help="Backend: onnxruntime, openvino, torch, simulated."),
    threads: int = typer.Option(1, "--threads", help="Runtime threads."),
    out: Path = typer.Option(None, "--out", "-o", help="Store directory (created; holds store.sqlite)."),
    budget_min: float = typer.Option(30.0, "--budget-min", help="Time budget in minutes."),
    resume: bool = typer.Option(False, "--resume", help="Continue the campaign already in --out."),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="With --resume: measure the configurations stored as failed again."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the campaign's plan (configurations and order)."),
    max_configs: int = typer.Option(None, "--max-configs", help="Stop after this many configurations."),
    micro_share: float = typer.Option(0.75, "--micro-share", help="Share of micro-kernels (the rest: blocks)."),
    plan_size: int = typer.Option(20_000, "--plan-size", help="Configurations in the campaign's plan."),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds one configuration may take before it fails."),
    profile_runs: int = typer.Option(10, "--profile-runs", help="Profiled runs per configuration (0: none)."),
    opt: list[str] = typer.Option(None, "--backend-option", "--opt", help=BACKEND_OPTION_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the campaign result as JSON."),
    cluster: str = typer.Option(None, "--cluster", help="Run on a Dask scheduler's workers, e.g. tcp://HOST:8786."),
    targets: list[str] = typer.Option(None, "--target", help="Worker label to run on (repeatable; with --cluster)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Configurations per cluster task."),
    worker_wait: float = typer.Option(60.0, "--worker-wait", help="Seconds to wait for a worker of a label that has none."),
) -> None:
    """Run a benchmark campaign: a seeded, shuffled mix of micro-kernels (~75 %) and blocks (~25 %).
    With --cluster and --target, on the workers of each target label (one store each: --out for one label,
    OUT/LABEL for several)."""
    if ctx.invoked_subcommand is not None:
        return
    if out is None:
        raise InvalidOptionError("annette bench needs --out DIR (the store directory); see annette bench --help")
    from annette.backends import BACKENDS
    from annette.bench.campaign import CampaignProgress, check_campaign_options, run_campaign

    BACKENDS.get(backend)  # an unknown name fails before the progress bar shows
    check_campaign_options(budget_s=budget_min * 60.0, max_configs=max_configs, plan_size=plan_size,
                           timeout_s=timeout, profile_runs=profile_runs, micro_share=micro_share)
    if retry_failed and not resume:
        raise InvalidOptionError("--retry-failed continues a campaign: pass --resume too")
    budget_s = budget_min * 60.0
    options = {"threads": threads, **parse_backend_options(opt)}
    if cluster is not None or targets:
        from annette.cli.commands_cluster import bench_on_cluster

        bench_on_cluster(cluster, list(targets or []), out, as_json=as_json, batch_size=batch_size,
                         worker_wait_s=worker_wait, backend=backend, backend_options=options, budget_s=budget_s,
                         max_configs=max_configs, seed=seed, resume=resume, micro_share=micro_share,
                         plan_size=plan_size, timeout_s=timeout, profile_runs=profile_runs)
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[done]} done, {task.fields[failed]} failed, {task.fields[left]} left"),
        TimeElapsedColumn(),
        TextColumn("ETA {task.fields[eta]}"),
        console=err_console,
        transient=as_json,
    ) as bar:
        task = bar.add_task(f"bench {backend}", total=budget_s, done=0, failed=0, left="?", eta="?")

        def progress(p: CampaignProgress) -> None:
            bar.update(task, completed=min(budget_s, p.elapsed_s), done=p.done, failed=p.failed, left=p.left,
                       eta=f"{p.eta_s / 60:.1f} min", description=f"bench {backend} [dim]{escape(p.last)}[/]")

        result = run_campaign(
            out, backend=backend, backend_options=options, budget_s=budget_s, max_configs=max_configs, seed=seed,
            resume=resume, micro_share=micro_share, plan_size=plan_size, timeout_s=timeout, profile_runs=profile_runs, progress=progress,
            retry_failed=retry_failed,
        )
    if as_json:
        emit_json(result.to_dict())
        return
    console.print(
        f"{result.measured} configurations measured ({result.failed} failed, {result.skipped} already stored) "
        f"in {result.elapsed_s / 60:.1f} min, {result.records_per_min:.0f}/min; stopped by {result.stopped_by}; "
        f"store: {result.store}"
    )


@bench_app.command("status")
@handle_errors
def status(
    store_dir: Path = typer.Argument(..., help="Store directory."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Counts by kind, family and status; targets; time span."""
    from annette.bench.store import BenchStore

    with BenchStore(store_dir, create=False) as store:
        summary = store.summary()
    if as_json:
        emit_json(summary)
        return
    table = Table(title=f"{summary['path']}: {summary['total']} records")
    for col in ("kind/family", "ok", "failed"):
        table.add_column(col, justify="left" if col == "kind/family" else "right")
    for fam, counts in summary["by_family"].items():
        table.add_row(fam, str(counts.get("ok", 0)), str(counts.get("failed", 0)))
    console.print(table)
    for key, n in summary["targets"].items():
        console.print(f"target {key}: {n} records")
    console.print(f"from {summary['first']} to {summary['last']} ({summary['span_s'] / 60:.1f} min)")


@bench_app.command("import")
@handle_errors
def import_(
    tables: list[Path] = typer.Argument(..., help="CSV table(s) to import."),
    fmt: str = typer.Option("h200-torch-eager", "--format", help="Table format."),
    out: Path = typer.Option(..., "--out", "-o", help="Store directory (created)."),
    batch: int = typer.Option(None, "--batch", help="Keep only the rows of this batch size."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
) -> None:
    """Import an external micro-kernel table (e.g. shared/data/h200-torch-eager/*.csv) into a store."""
    from annette.bench.external import import_table

    with err_console.status("importing ...") as spinner:
        counts = import_table(list(tables), out, format=fmt, batch=batch,
                              progress=lambda n: spinner.update(f"importing ... {n} rows"))
    if as_json:
        emit_json({"store": str(out), **counts})
    else:
        console.print(f"{counts['ok']} ok and {counts['failed']} failed rows added, {counts['skipped']} skipped; store: {out}")


@bench_app.command("export")
@handle_errors
def export(
    store_dir: Path = typer.Argument(..., help="Store directory."),
    dest: Path = typer.Argument(..., help="Output file: .csv, .parquet (flat rows) or .jsonl (full records)."),
) -> None:
    """Export every record of a store."""
    from annette.bench.store import BenchStore

    with BenchStore(store_dir, create=False) as store:
        path = store.export(dest)
        n = store.count()
    console.print(f"{n} records written to {path}")


@handle_errors
def measure(
    model: str = typer.Argument(..., help="Model: .onnx file, torchvision:NAME, nb201:ARCH or hf:NAME."),
    backend: str = typer.Option("onnxruntime", "--backend", help="Backend: onnxruntime, openvino, torch."),
    threads: int = typer.Option(1, "--threads", help="Runtime threads."),
    batch: int = typer.Option(1, "--batch", "-b", help="Batch size."),
    profile: bool = typer.Option(False, "--profile", help="Also report the per-node profile."),
    opt: list[str] = typer.Option(None, "--backend-option", "--opt", help=BACKEND_OPTION_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Measure a network end to end under the measurement protocol (latency = the label statistic)."""
    from annette.bench.measure import measure_model
    from annette.cli.commands_graph import loading_message
    from annette.stats import LABEL_STATISTIC

    first = loading_message(model, batch)  # a first torchvision export takes seconds to minutes: say so
    message = f"measuring {model} on {backend} ..." if first.startswith("importing") else (
        first.removesuffix(" ...") + f"; then measuring it on {backend} ...")
    if not err_console.is_terminal and not first.startswith("importing"):
        err_console.print(message, highlight=False, markup=False)
    with err_console.status(escape(message)):
        rec = measure_model(model, backend=backend, threads=threads, batch=batch, profile=profile, **parse_backend_options(opt))
    m = rec.measurement
    assert m is not None
    doc: dict[str, Any] = {
        "model": model,
        "latency_ms": m.label_ms,
        "label_statistic": LABEL_STATISTIC,
        "median_ms": m.median_ms,
        "min_ms": m.min_ms,
        "samples_ms": list(m.samples_ms),
        "inner_loops": m.inner_loops,
        "flags": list(m.flags),
        "target": rec.target.to_dict(),
    }
    if profile:
        doc["profile"] = [p.to_dict() for p in rec.profile]
        doc["profile_sum_ms"] = sum(p.time_ms for p in rec.profile)
    if as_json:
        emit_json(doc)
        return
    console.print(
        f"{model} on {rec.target.key} ({rec.target.device_model}): [bold]{m.label_ms:.3f} ms[/] ({LABEL_STATISTIC}), "
        f"median {m.median_ms:.3f} ms, {len(m.samples_ms)} samples x {m.inner_loops} calls"
        + (f", flags: {', '.join(m.flags)}" if m.flags else "")
    )
    if profile:
        table = Table(title=f"{len(rec.profile)} executed nodes, sum {doc['profile_sum_ms']:.3f} ms")
        for col in ("node", "op", "time ms", "covers"):
            table.add_column(col)
        for p in rec.profile:
            table.add_row(p.node, p.op_type, f"{p.time_ms:.4f}", ", ".join(p.covers) or "(inserted)")
        console.print(table)


def register(app: typer.Typer) -> None:
    from annette.cli.commands_cluster import workers

    bench_app.command("workers")(workers)
    app.add_typer(bench_app, name="bench")
    app.command("measure")(measure)
