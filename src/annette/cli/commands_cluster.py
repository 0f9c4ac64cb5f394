"""``annette bench --cluster ... --target ...`` and ``annette bench workers``: campaigns on Dask workers by label."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from annette.cli.common import console, emit_json, err_console, handle_errors, parse_backend_options
from annette.errors import ClusterError

if TYPE_CHECKING:
    from annette.bench.campaign import CampaignProgress, CampaignResult


def _minutes(seconds: float) -> str:
    return "?" if seconds == float("inf") else f"{seconds / 60:.1f} min"


class _ClusterBars:
    """One progress row per target label and one per worker under it (done, failed, rate, ETA)."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.rows: dict[str, TaskID] = {}
        self.lock = threading.Lock()

    def _row(self, key: str, description: str) -> TaskID:
        with self.lock:
            if key not in self.rows:
                self.rows[key] = self.bar.add_task(description, total=None, info="")
            return self.rows[key]

    def __call__(self, p: CampaignProgress) -> None:
        from annette.bench.cluster import ClusterProgress

        if not isinstance(p, ClusterProgress):
            return
        total = p.done + p.left
        self.bar.update(
            self._row(p.label, f"[bold]{escape(p.label)}[/]"), total=total, completed=p.done,
            info=f"{p.done} done, {p.failed} failed, {p.running} running, {p.left} left, "
                 f"{p.rate_per_min:.0f}/min, ETA {_minutes(p.eta_s)}  [dim]{escape(p.last)}[/]",
        )
        for w in p.workers:
            row = self._row(f"{p.label}|{w.address}", f"  {escape(w.host)} {escape(w.address)}")
            state = "" if w.alive else ", [red]gone[/]"
            self.bar.update(row, total=total, completed=w.done,
                            info=f"{w.done} done, {w.failed} failed, {w.rate_per_min:.0f}/min{state}")


def bench_on_cluster(
    scheduler: str | None,
    labels: list[str],
    out: Path,
    *,
    as_json: bool,
    batch_size: int,
    worker_wait_s: float,
    **campaign: Any,
) -> None:
    """The campaign of each target label on the cluster's workers, side by side; one store per label
    (``out`` for one label, ``out/LABEL`` for several)."""
    from annette.bench.campaign import run_campaign
    from annette.bench.cluster import ClusterSpec, TargetsResult, run_target_campaigns, target_store

    if scheduler is None or not labels:
        raise ClusterError("a cluster campaign needs both --cluster tcp://HOST:PORT (the Dask scheduler) and "
                           "--target NAME (a worker label; repeatable)")
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
        console=err_console, transient=as_json,
    ) as bar:
        bars = _ClusterBars(bar)
        if len(labels) == 1:  # its errors are the command's
            spec = ClusterSpec(scheduler, labels[0], batch_size, worker_wait_s)
            result: CampaignResult = run_campaign(target_store(out, labels, labels[0]), cluster=spec, progress=bars,
                                                  **campaign)
            results = TargetsResult({labels[0]: result})
        else:
            results = run_target_campaigns(out, labels, scheduler=scheduler, batch_size=batch_size,
                                           worker_wait_s=worker_wait_s, progress=bars, **campaign)
    if as_json:
        emit_json(results.to_dict() if len(labels) > 1 else results.results[labels[0]].to_dict())
    else:
        for label, r in results.results.items():
            doc = r.to_dict()
            extra = f", {doc['pending']} pending" if doc.get("pending") else ""
            console.print(
                f"[bold]{escape(label)}[/]: {r.measured} configurations measured ({r.failed} failed, {r.skipped} "
                f"already stored{extra}) in {r.elapsed_s / 60:.1f} min, {r.records_per_min:.0f}/min on "
                f"{len(doc.get('workers', []))} workers; stopped by {r.stopped_by}; store: {escape(r.store)}"
            )
    if results.errors:
        raise ClusterError("; ".join(f"target {k}: {v}" for k, v in results.errors.items()))


@handle_errors
def workers(
    scheduler: str = typer.Argument(..., help="The Dask scheduler, e.g. tcp://HOST:8786."),
    target: str = typer.Option(None, "--target", help="Describe and check the workers of this label."),
    backend: str = typer.Option("onnxruntime", "--backend", help="Backend the label's campaign would use."),
    threads: int = typer.Option(1, "--threads", help="Runtime threads."),
    opt: list[str] = typer.Option(None, "--backend-option", "--opt", help="A backend option KEY=VALUE; repeat it."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The target labels a scheduler's workers advertise; with --target, what each of its workers is (a label
    whose workers are not one target is an error)."""
    from annette.bench.cluster import cluster_labels, connect, describe_workers

    if target is None:
        with connect(scheduler) as client:
            labels = cluster_labels(client)
        if as_json:
            emit_json({"scheduler": scheduler, "labels": labels})
            return
        if not labels:
            console.print(f"no worker of {escape(scheduler)} advertises an annette-target-NAME resource")
        for label, n in labels.items():
            console.print(f"{escape(label)}: {n} workers")
        return
    info = describe_workers(scheduler, target, backend=backend,
                            backend_options={"threads": threads, **parse_backend_options(opt)})
    if as_json:
        emit_json(info.to_dict())
        return
    table = Table(title=f"{info.label}: {info.target.key}, {info.target.device_model}, "
                        f"{info.target.runtime} {info.target.runtime_version}")
    for col in ("worker", "host", "threads", "slots", "annette", "python"):
        table.add_column(col)
    for w in info.workers:
        table.add_row(w.address, w.host, str(w.nthreads), f"{w.slots:g}", w.annette_version, w.python)
    console.print(table)



def build_on_cluster(
    scheduler: str | None,
    labels: list[str],
    out: Path,
    *,
    as_json: bool,
    batch_size: int,
    worker_wait_s: float,
    bundle: Path | None,
    name: str | None,
    **build: Any,
) -> None:
    """``annette build`` of each target label on its workers, side by side (one build directory and bundle per
    label: ``out`` for one label, ``out/LABEL`` for several); fitting runs here."""
    from annette.bench.cluster import ClusterSpec, on_targets, target_store
    from annette.build import BuildProgress, run_build

    if scheduler is None or not labels:
        raise ClusterError("a cluster build needs both --cluster tcp://HOST:PORT (the Dask scheduler) and "
                           "--target NAME (a worker label; repeatable)")
    if bundle is not None and len(labels) > 1:
        raise ClusterError("--bundle names one file: with several --target, each bundle is OUT/LABEL/hardware.json")
    budget_s = 60.0 * float(build["budget_min"])
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
        console=err_console, transient=as_json,
    ) as bar:
        rows = {label: bar.add_task(f"[bold]{escape(label)}[/]", total=budget_s, info="") for label in labels}

        def one(label: str) -> Any:
            def progress(p: BuildProgress) -> None:
                bar.update(rows[label], completed=min(budget_s, p.elapsed_s),
                           info=f"{p.stage}: {p.done} done, {p.failed} failed [dim]{escape(p.message)}[/]")

            spec = ClusterSpec(scheduler, label, batch_size, worker_wait_s)
            label_name = name if len(labels) == 1 or name is None else f"{name}-{label}"
            return run_build(target_store(out, labels, label), cluster=spec, bundle=bundle, name=label_name,
                             progress=progress, **build)

        if len(labels) == 1:  # its errors are the command's
            from annette.bench.cluster import TargetsResult

            results = TargetsResult({labels[0]: one(labels[0])})
        else:
            results = on_targets(labels, one)
    if as_json:
        emit_json(results.to_dict() if len(labels) > 1 else results.results[labels[0]].to_dict())
    else:
        for label, r in results.results.items():
            measured = sum(s.measured for s in r.stages if s.name not in ("fit", "validate"))
            v = r.validation
            quality = (f"validation MAPE {v.metrics.mape_pct:.1f} %, Spearman {v.metrics.spearman:.3f} on {v.metrics.n} "
                       "networks" if v is not None else "not validated")
            console.print(f"[bold]{escape(label)}[/]: {measured} configurations measured in {r.elapsed_s / 60:.1f} min; "
                          f"{quality}; wrote {escape(r.bundle)}", highlight=False)
    if results.errors:
        raise ClusterError("; ".join(f"target {k}: {v}" for k, v in results.errors.items()))
