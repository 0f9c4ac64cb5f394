"""``annette fit``, ``annette estimate`` and ``annette hw list``: build, use and list hardware models."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from annette.cli.commands_graph import MODEL_HELP, SHAPE_HELP, _si, load_with_status, parse_input_shapes
from annette.cli.common import console, emit_json, err_console, handle_errors, warn_once
from annette.errors import AnnetteError, ModelFileError, UnknownNameError
from annette.layers import KINDS

if TYPE_CHECKING:
    from annette.estimate import Estimate
    from annette.hardware import HardwareModel
    from annette.quality import BundleQuality

hw_app = typer.Typer(help="Hardware models (shipped and fitted).", no_args_is_help=True)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _kinds(value: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in value.split(",") if k.strip())
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise UnknownNameError(f"unknown layer-model kind(s) {bad or [value]}; valid: {', '.join(KINDS)}")
    return kinds


@handle_errors
def fit(
    store_dirs: list[Path] = typer.Argument(..., help="Benchmark store directories (each holds store.sqlite)."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the hardware model (JSON)."),
    kinds: str = typer.Option(",".join(KINDS), "--kinds", help="Comma-separated layer-model kinds to fit."),
    seed: int = typer.Option(0, "--seed", help="Seed of the hold-out split and the tree ensembles."),
    holdout: float = typer.Option(0.15, "--holdout", help="Share of each family's records held out for quality."),
    name: str = typer.Option(None, "--name", help="Name of the hardware model (default: from the target)."),
    exclude_flag: list[str] = typer.Option(None, "--exclude-flag", help="Skip records with this stability flag."),
    use_networks: bool = typer.Option(False, "--use-networks", help="Also train on network records' profiles."),
    target: str = typer.Option(None, "--target", help="Target key, where the store holds several."),
    generic_default: bool = typer.Option(
        True, "--generic-default/--no-generic-default",
        help="Estimate op types no benchmark covered with the generic model (noted per layer), "
        "instead of reporting them unsupported.",
    ),
    cache_store: list[Path] = typer.Option(
        None, "--cache-store",
        help="Another store of cache-pressure blocks to fit the cache model from (annette build measures them in its own store).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the fit report as JSON."),
) -> None:
    """Fit a hardware model (mapping rules + layer models) from one or more benchmark stores."""
    from annette.fit import fit_store

    with err_console.status("fitting ...") as status:

        def progress(msg: str) -> None:  # messages name types like Conv[dw]: not rich markup
            status.update(escape(msg))
            err_console.print(f"[dim]{escape(msg)}[/]", highlight=False)

        hw, report = fit_store(
            store_dirs, kinds=_kinds(kinds), seed=seed, holdout=holdout, name=name,
            exclude_flags=tuple(exclude_flag or ()), use_networks=use_networks, target_key=target, progress=progress,
            generic_default=generic_default, cache_dirs=tuple(cache_store or ()),
        )
    hw.save(out)
    doc = report.to_dict()
    if as_json:
        emit_json({"out": str(out), "name": hw.name, **doc})
        return
    table = Table(title=f"{hw.name}: held-out quality per executed-layer type (kernel time)")
    for col in ("type", "kind", "n train", "n test", "MAPE", "R²"):
        table.add_column(col, justify="left" if col in ("type", "kind") else "right")
    for q in report.quality:
        table.add_row(escape(q.type), q.kind, str(q.n_train), str(q.n_test), _pct(q.mape),
                      "-" if q.r2 is None else f"{q.r2:.3f}")
    console.print(table)
    for kind, e2e in report.end_to_end.items():
        console.print(f"held-out multi-layer records, {kind}: MAPE {_pct(e2e['mape'])} over {e2e['n']}",
                      highlight=False)
    o = report.overhead
    console.print(f"overhead {o.per_node_ms * 1e3:.2f} µs/node + {o.per_run_ms * 1e3:.2f} µs/run ({o.method})",
                  highlight=False)
    if hw.cache is not None:
        c = hw.cache
        console.print(f"cache: {c.capacity_bytes / 2**20:.0f} MiB, weights fetched again at "
                      f"{c.bandwidth_bytes_per_s / 1e9:.1f} GB/s ({c.method})", highlight=False)
    for line in report.rules:
        console.print(f"  {escape(line)}", highlight=False)
    if report.skipped:
        console.print(f"skipped: {report.skipped}", highlight=False)
    console.print(f"wrote {out}", highlight=False)


def _model_specs(models: list[str]) -> list[str]:
    """The models of ``annette estimate``: each argument, a folder standing for its .onnx files (sorted)."""
    specs: list[str] = []
    for m in models:
        path = Path(m)
        if path.is_dir():
            found = sorted(str(p) for p in path.glob("*.onnx"))
            if not found:
                raise ModelFileError(f"folder {path} holds no .onnx file")
            specs.extend(found)
        else:
            specs.append(m)
    return specs


def _generic_text(est: Estimate) -> str:
    return (f"{est.n_generic} layer(s) guessed by the generic model ({est.generic_ms:.4f} ms, "
            f"{100 * est.generic_share:.1f} % of the total)")


@handle_errors
def estimate(
    models: list[str] = typer.Argument(
        ..., help=MODEL_HELP + " Several models, or a folder (its .onnx files), give one row per model."
    ),
    hw: str = typer.Option(..., "--hw", help="Hardware model: a JSON file or a shipped name (annette hw list)."),
    kind: str = typer.Option("mixed", "--kind", help=f"Layer-model kind: {', '.join(KINDS)}."),
    batch: int = typer.Option(None, "--batch", "-b", help="Batch size."),
    input_shape: list[str] = typer.Option(None, "--input-shape", help=SHAPE_HELP),
    strict: bool = typer.Option(
        False, "--strict",
        help="Fail if a layer has no layer model, or is only guessed by the bundle's generic default model "
        "(unless --allow-generic).",
    ),
    allow_generic: bool = typer.Option(
        False, "--allow-generic", help="Under --strict, accept layers costed by the generic default model."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print JSON instead of a table (a list of estimates for several models)."
    ),
) -> None:
    """Estimate a model's latency layer by layer on a hardware model (several models: one row each)."""
    from annette.hardware import HardwareModel

    if kind not in KINDS:
        raise UnknownNameError(f"unknown kind {kind!r}; valid: {', '.join(KINDS)}")
    specs = _model_specs(models)
    hardware = HardwareModel.load(hw)
    shapes = parse_input_shapes(input_shape)
    if len(specs) == 1:
        est = _estimate_one(specs[0], hardware, kind, batch, shapes, strict, allow_generic)
        if as_json:
            emit_json(est.to_dict())
        else:
            _print_layers(est)
        return
    _estimate_several(specs, hardware, kind, batch, shapes, strict, allow_generic, as_json)


def _estimate_one(
    spec: str, hardware: HardwareModel, kind: str, batch: int | None, shapes: dict[str, tuple[int, ...]] | None,
    strict: bool, allow_generic: bool,
) -> Estimate:
    from annette.estimate import estimate as run_estimate

    graph = load_with_status(spec, batch, shapes)
    est = run_estimate(graph, hardware, kind=kind, strict=strict, allow_generic=allow_generic)
    warn_once(est.warnings)
    return est


def _estimate_several(
    specs: list[str], hardware: HardwareModel, kind: str, batch: int | None,
    shapes: dict[str, tuple[int, ...]] | None, strict: bool, allow_generic: bool, as_json: bool,
) -> None:
    """One row per model; a model that fails is reported in its row (exit code 1 at the end)."""
    results: list[tuple[str, Estimate | None, str]] = []
    for spec in specs:
        try:
            results.append((spec, _estimate_one(spec, hardware, kind, batch, shapes, strict, allow_generic), ""))
        except (AnnetteError, FileNotFoundError) as exc:
            results.append((spec, None, f"{type(exc).__name__}: {exc}"))
    if as_json:
        emit_json([est.to_dict() if est is not None else {"model": spec, "error": error}
                   for spec, est, error in results])
    else:
        table = Table(title=escape(f"{len(specs)} models on {hardware.name} ({hardware.target.key}, {kind})"))
        table.add_column("model", overflow="fold", ratio=1)
        for col in ("total ms", "executed", "unsupported", "generic-model layers (ms, share)"):
            table.add_column(col, justify="right", no_wrap=True)
        for spec, est, _ in results:
            if est is None:
                table.add_row(escape(spec), "[red]failed[/]", "-", "-", "-")
                continue
            table.add_row(
                escape(spec), f"{est.total_ms:.4f}", str(est.n_executed),
                f"[red]{est.n_unsupported} (not in the total)[/]" if est.n_unsupported else "0",
                f"[yellow]{est.n_generic} ({est.generic_ms:.4f} ms, {100 * est.generic_share:.1f} %)[/]"
                if est.n_generic else "0",
            )
        console.print(table)
        for spec, est, error in results:
            if est is None:
                err_console.print(f"[bold red]error:[/] {escape(spec)}: {escape(error)}", highlight=False)
    if any(est is None for _, est, _ in results):
        raise typer.Exit(code=1)


def _print_layers(est: Estimate) -> None:
    notes = [("[yellow]generic model[/] " if x.generic else "") + escape(x.note) for x in est.layers]
    with_notes = any(notes)  # no column of empty cells
    table = Table(title=escape(f"{est.model} on {est.hardware} ({est.target}, {est.kind})"))
    table.add_column("executed layer", overflow="fold", ratio=3)
    table.add_column("type", no_wrap=True)  # a fused type is never cut
    table.add_column("covers", overflow="fold", ratio=3)
    for col in ("FLOPs", "bytes"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("bound", no_wrap=True)
    table.add_column("time ms", justify="right", no_wrap=True)
    if with_notes:
        table.add_column("note", overflow="fold", ratio=2)
    for x, note in zip(est.layers, notes, strict=True):
        covers = f"(inserted for {x.anchor})" if x.inserted else ",".join(x.covers)
        time_cell = "[red]unsupported[/]" if x.time_ms is None else f"{x.time_ms:.4f}"
        table.add_row(escape(x.name), escape(x.type), escape(covers), _si(x.flops), _si(x.bytes), x.bound,
                      time_cell, *((note,) if with_notes else ()))
    table.add_section()
    table.add_row("total", "", "", "", "", "", f"{est.total_ms:.4f}", *(("",) if with_notes else ()), style="bold")
    console.print(table)
    n_bad = len(est.unsupported)
    console.print(
        f"{len(est.layers)} executed layers, {len(est.removed)} graph layers removed; "
        f"{est.run_overhead_ms * 1e3:.2f} µs per run (and {est.node_overhead_ms * 1e3:.2f} µs per node, included in "
        f"each layer's time)" + (f"; {est.cache_ms:.4f} ms of weights fetched again (network larger than the cache, "
        "included)" if est.cache_ms else "") + "; total "
        f"{est.total_ms:.4f} ms" + (f"; [red]{n_bad} unsupported layer(s) not in the total[/]" if n_bad else "")
        + (f"; [yellow]{_generic_text(est)}[/]" if est.n_generic else "; no layer guessed by the generic model"),
        highlight=False,
    )


def _hw_row(name: str, hw: HardwareModel) -> dict[str, Any]:
    from annette.hardware import SHIPPED

    return {
        "name": name,
        "path": str(SHIPPED.get(name)),
        "target": hw.target.key,
        "device_model": hw.target.device_model,
        "runtime": f"{hw.target.runtime} {hw.target.runtime_version}",
        "kinds": list(hw.kinds),
        "n_types": len(hw.layer_models),
        "provenance": dict(hw.provenance),
        "accuracy": {k: e.mape for k, e in hw.quality.end_to_end.items()},
        "measured": {study: s.to_dict() for study, s in hw.quality.measured.items()},
    }


def _accuracy_cell(quality: BundleQuality) -> str:
    """Measured studies first (MAPE of each kind on real networks, with the noise floor); else held-out data."""
    lines = []
    for study, m in quality.measured.items():
        kinds = ", ".join(f"{k} {_num(a.mape_pct, '.1f')} %" for k, a in m.kinds.items())
        n = next(iter(m.kinds.values())).n if m.kinds else 0
        lines.append(f"{study} ({n} nets, {m.date[:10]}): {kinds}; noise floor {_num(m.noise_floor.mape_pct, '.1f')} %")
    if not lines and quality.end_to_end:
        held = ", ".join(f"{k} {_pct(e.mape)}" for k, e in quality.end_to_end.items())
        lines.append(f"held-out blocks/layers: {held}")
    return "\n".join(lines) or "-"


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


@handle_errors
def hw_list(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List the shipped hardware models."""
    from annette.hardware import SHIPPED, HardwareModel

    bundles = {name: HardwareModel.load(SHIPPED.get(name)) for name in SHIPPED.names()}
    rows = [_hw_row(name, hw) for name, hw in bundles.items()]
    if as_json:
        emit_json(rows)
        return
    table = Table(title="shipped hardware models (details: annette hw show NAME)")
    table.add_column("name", no_wrap=True)  # the name the user must type: never cut
    table.add_column("device", overflow="fold", ratio=2)
    table.add_column("runtime", overflow="fold", ratio=1)
    table.add_column("kinds", no_wrap=True)
    table.add_column("accuracy (MAPE)", overflow="fold", ratio=3)
    for r in rows:
        table.add_row(r["name"], escape(f"{r['device_model']}\n{r['target']}"), escape(r["runtime"]),
                      "\n".join(r["kinds"]), escape(_accuracy_cell(bundles[r["name"]].quality)))
    console.print(table)
    if not rows:
        console.print("no shipped hardware model yet: fit one with `annette fit STORE -o hw.json`")


def hw_show_dict(hw: HardwareModel, source: str) -> dict[str, Any]:
    """The ``annette hw show --json`` document: target, layer-model types and kinds, mapping, provenance."""
    return {
        "name": hw.name,
        "source": source,
        "target": hw.target.to_dict(),
        "kinds": list(hw.kinds),
        "types": {t: sorted(models) for t, models in sorted(hw.layer_models.items())},
        "default_type": hw.default_type,
        "fallbacks": dict(hw.fallbacks),
        "overhead": hw.overhead.to_dict(),
        "cache": None if hw.cache is None else hw.cache.to_dict(),
        "rules": {"fusions": len(hw.rules.fusions), "removals": len(hw.rules.removals),
                  "insertions": len(hw.rules.insertions), "merges": len(hw.rules.merges),
                  "layout_model": hw.rules.layouts is not None},
        "provenance": dict(hw.provenance),
        "quality": {k: v for k, v in hw.quality.to_dict().items() if k in ("measured", "end_to_end_holdout")},
    }


@handle_errors
def hw_show(
    name: str = typer.Argument(..., help="A shipped name (annette hw list) or a hardware-model JSON file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Show one hardware model: its target (CPU/ISA, runtime, precision, threads), layer-model types and kinds,
    generic default, overheads, cache model, provenance and measured accuracy."""
    from annette.hardware import SHIPPED, HardwareModel

    hw = HardwareModel.load(name)
    source = str(SHIPPED.get(name)) if name in SHIPPED.names() else str(Path(name))
    doc = hw_show_dict(hw, source)
    if as_json:
        emit_json(doc)
        return
    table = Table(title=escape(f"{hw.name} ({source})"), show_header=False)
    table.add_column("field", no_wrap=True, style="bold")
    table.add_column("value", overflow="fold")
    for key, value in doc["target"].items():
        table.add_row(f"target.{key}", escape(str(value)))
    table.add_row("kinds", ", ".join(doc["kinds"]))
    table.add_row("layer types", escape(f"{len(doc['types'])}: " + ", ".join(doc["types"])))
    table.add_row("generic default", escape(str(hw.default_type or "none (types without a model are unsupported)")))
    if hw.fallbacks:
        table.add_row("redirected types", escape(", ".join(f"{a}→{b}" for a, b in hw.fallbacks.items())))
    r = doc["rules"]
    table.add_row("mapping rules", f"{r['fusions']} fusions, {r['removals']} removals, {r['merges']} merges, "
                  f"{r['insertions']} insertions" + ("; blocked-layout model" if r["layout_model"] else ""))
    table.add_row("overhead", f"{hw.overhead.per_node_ms * 1e3:.2f} µs/node, {hw.overhead.per_run_ms * 1e3:.2f} µs/run")
    if hw.cache is not None:
        table.add_row("cache", f"{hw.cache.capacity_bytes / 2**20:.0f} MiB, weights fetched again at "
                      f"{hw.cache.bandwidth_bytes_per_s / 1e9:.1f} GB/s")
    for key, value in doc["provenance"].items():
        table.add_row(f"provenance.{key}", escape(str(value)))
    table.add_row("accuracy", escape(_accuracy_cell(hw.quality)))
    console.print(table)





@handle_errors
def hw_check(
    name: str = typer.Argument(..., help="A shipped name (annette hw list) or a hardware-model JSON file."),
    rounds: int = typer.Option(2, "--rounds", "-r", help="Interleaved measurement rounds (label: the minimum)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Check that a bundle holds on this machine (about a minute; changes nothing): measure its build-validation
    networks again and compare their times with those its build recorded (the speed ratio) and with its
    estimates. A machine of the same CPU model can run at another speed (another host, other tenants)."""
    from annette.drift import check_bundle
    from annette.hardware import HardwareModel

    hw = HardwareModel.load(name)
    message = f"measuring {hw.name}'s validation networks on this machine ({rounds} rounds)"
    if err_console.is_terminal:
        with err_console.status(escape(message)):
            result = check_bundle(hw, rounds=rounds)
    else:
        err_console.print(message, highlight=False, markup=False)
        result = check_bundle(hw, rounds=rounds)
    if as_json:
        emit_json(result.to_dict())
        return
    if result.mismatch:
        err_console.print(escape(f"warning: {hw.name} was {result.mismatch}"), highlight=False)
    console.print(escape(result.verdict()), highlight=False)


hw_app.command("list")(hw_list)
hw_app.command("show")(hw_show)
hw_app.command("check")(hw_check)


def register(app: typer.Typer) -> None:
    app.command("fit")(fit)
    app.command("estimate")(estimate)
    app.add_typer(hw_app, name="hw")
