"""``annette legacy-estimate``: the original ANNETTE's estimate on its own graph, layer- and mapping-model files."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from annette.cli.common import console, emit_json, handle_errors
from annette.legacy.estimate import LegacyEstimate


def estimate_doc(est: LegacyEstimate) -> dict[str, Any]:
    """The ``--json`` document: total, visited-layer count, per-layer rows and warnings."""
    keys = ("name", "type", "time_ms", "num_ops", "num_inputs", "num_outputs", "num_weights")
    return {
        "total_ms": est.total_ms,
        "n_layers": est.n_layers,
        "layers": [{k: row[k] for k in keys} for row in (r.to_dict() for r in est.layers)],
        "warnings": list(est.warnings),
    }


@handle_errors
def legacy_estimate(
    graph: str = typer.Argument(..., help="Legacy ANNETTE graph .json."),
    layer_model: str = typer.Option(..., "--layer-model", "-l", help="Legacy layer-model .json (e.g. ncs2-roofline.json)."),
    mapping_model: str = typer.Option(
        ..., "--mapping-model", "-m", help="Legacy mapping-model .json (e.g. ov.json), or 'none' to skip mapping."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Estimate a legacy graph exactly as the original ANNETTE does (roofline and refined roofline models)."""
    from annette.legacy import estimate_legacy

    est = estimate_legacy(graph, layer_model, None if mapping_model.lower() == "none" else mapping_model)
    if as_json:
        emit_json(estimate_doc(est))
        return
    table = Table(title=f"{est.graph} on {est.layer_model} (mapping: {est.mapping_model or 'none'})")
    for col in ("layer", "type", "entry", "bound", "time [ms]", "ops", "fused"):
        table.add_column(col, justify="right" if col in ("time [ms]", "ops") else "left")
    for r in est.layers:
        table.add_row(r.name, r.type, r.entry, r.bound, f"{r.time_ms:.6f}", str(r.num_ops), ", ".join(r.fused))
    console.print(table)
    console.print(f"total: [bold]{est.total_ms:.6f} ms[/] over {est.n_layers} visited layers")
    for w in est.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("legacy-estimate")(legacy_estimate)
