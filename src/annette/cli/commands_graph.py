"""``annette info``, ``annette import`` and ``annette export``: look at, convert and export models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from annette.cli.common import console, emit_json, err_console, handle_errors
from annette.errors import ShapeError
from annette.graph.ir import Graph

MODEL_HELP = (
    "Model: an .onnx file, a graph .json (annette or legacy ANNETTE), torchvision:NAME, nb201:ARCH or hf:NAME "
    "('hf:gpt2?seq=256')."
)
SHAPE_HELP = "Set an input's shape, NAME=D0,D1,... (repeatable; ONNX files only)."


def parse_input_shapes(values: list[str] | None) -> dict[str, tuple[int, ...]] | None:
    """``["x=1,3,224,224"]`` -> ``{"x": (1, 3, 224, 224)}``."""
    if not values:
        return None
    out: dict[str, tuple[int, ...]] = {}
    for value in values:
        name, sep, dims = value.rpartition("=")
        try:
            shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
        except ValueError:
            shape = ()
        if not sep or not name or not shape:
            raise ShapeError(f"--input-shape expects NAME=D0,D1,... (e.g. input=1,3,224,224), got {value!r}")
        out[name] = shape
    return out


def loading_message(model: str, batch: int | None) -> str:
    """What the user waits for while ``model`` loads: a first torchvision or hf export takes seconds to minutes."""
    scheme, _, name = model.partition(":")
    if scheme == "torchvision":
        from annette.importers.zoo import cache_dir, is_cached

        if not is_cached(name, batch=batch or 1):
            return (f"exporting {model} with torch (first use: seconds to minutes for large models; "
                    f"cached in {cache_dir()}) ...")
    if scheme == "hf":
        from annette.importers import hf
        from annette.importers.zoo import cache_dir

        if hf.needs_export(name, batch=batch or 1):
            return (f"exporting {model} with torch and transformers (first use: seconds to a minute; "
                    f"cached in {cache_dir()}) ...")
    return f"importing {model} ..."


def load_with_status(model: str, batch: int | None, input_shapes: dict[str, tuple[int, ...]] | None) -> Graph:
    """:func:`annette.importers.load_model` with a status line on stderr (a plain line when it is no terminal
    and the load is a first torchvision export)."""
    from annette.importers import load_model

    message = loading_message(model, batch)
    if not err_console.is_terminal:
        if message.startswith("exporting"):
            err_console.print(message, highlight=False, markup=False)
        return load_model(model, batch=batch, input_shapes=input_shapes)
    with err_console.status(escape(message)):
        return load_model(model, batch=batch, input_shapes=input_shapes)


def _load(model: str, batch: int | None, input_shape: list[str] | None) -> Graph:
    return load_with_status(model, batch, parse_input_shapes(input_shape))


def _si(n: int | float) -> str:
    for div, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f} {unit}"
    return str(int(n))


def info_dict(graph: Graph) -> dict[str, Any]:
    """The ``annette info --json`` document: name, layer count, totals and per-layer costs."""
    from annette.graph.accounting import account_graph

    costs = account_graph(graph)
    return {
        "name": graph.name,
        "n_layers": len(graph.layers),
        "n_zero_cost": sum(1 for c in costs.layers.values() if c.zero_cost),
        "inputs": [t.to_dict() for t in graph.inputs],
        "totals": costs.total.to_dict(),
        "layers": [
            {"name": layer.name, "op": layer.op, "output_shape": list(layer.outputs[0].shape) if layer.outputs else [],
             **costs.layers[layer.name].to_dict()}
            for layer in graph.layers
        ],
    }


@handle_errors
def info(
    model: str = typer.Argument(..., help=MODEL_HELP),
    batch: int = typer.Option(None, "--batch", "-b", help="Batch size (default: the model's, or 1 if dynamic)."),
    input_shape: list[str] = typer.Option(None, "--input-shape", help=SHAPE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Per-layer MACs, parameters and bytes of a model, and the totals."""
    graph = _load(model, batch, input_shape)
    doc = info_dict(graph)
    if as_json:
        emit_json(doc)
        return
    table = Table(
        title=f"{graph.name}: {doc['n_layers']} layers ({doc['n_zero_cost']} zero-cost, dimmed)",
        caption="bytes = activation inputs + outputs + weights",
    )
    table.add_column("layer", overflow="fold", min_width=16)
    table.add_column("op", overflow="ellipsis", max_width=18)
    table.add_column("output shape", overflow="fold")
    for col in ("MACs", "FLOPs", "params", "bytes"):
        table.add_column(col, justify="right", no_wrap=True)
    for row in doc["layers"]:
        bytes_ = row["input_bytes"] + row["output_bytes"] + row["weight_bytes"]
        table.add_row(escape(row["name"]), escape(row["op"]), "x".join(map(str, row["output_shape"])), _si(row["macs"]),
                      _si(row["flops"]), _si(row["params"]), _si(bytes_), style="dim" if row["zero_cost"] else None)
    t = doc["totals"]
    table.add_section()
    table.add_row("total", "", "", _si(t["macs"]), _si(t["flops"]), _si(t["params"]),
                  _si(t["input_bytes"] + t["output_bytes"] + t["weight_bytes"]), style="bold")
    console.print(table)
    inputs = ", ".join(f"{i['name']} {'x'.join(map(str, i['shape']))} {i['dtype']}" for i in doc["inputs"])
    console.print(f"inputs: {inputs}; MACs {t['macs']:,}; FLOPs {t['flops']:,}; params {t['params']:,}; "
                  f"weights {t['weight_bytes']:,} B", highlight=False)


@handle_errors
def import_(
    model: str = typer.Argument(..., help=MODEL_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the annette graph JSON."),
    batch: int = typer.Option(None, "--batch", "-b", help="Batch size."),
    input_shape: list[str] = typer.Option(None, "--input-shape", help=SHAPE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Import a model and write it as an annette graph (JSON)."""
    graph = _load(model, batch, input_shape)
    out.parent.mkdir(parents=True, exist_ok=True)
    graph.to_json(out)
    summary = {"name": graph.name, "n_layers": len(graph.layers), "out": str(out)}
    if as_json:
        emit_json(summary)
    else:
        console.print(f"wrote {out} ({graph.name}, {len(graph.layers)} layers)", highlight=False)


@handle_errors
def export(
    model: str = typer.Argument(..., help="Model: an .onnx file, torchvision:NAME, nb201:ARCH or hf:NAME."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the ONNX model."),
    batch: int = typer.Option(None, "--batch", "-b", help="Batch size."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Write the ONNX form of a model (torchvision exports use random weights)."""
    import onnx

    from annette.importers import model_to_onnx

    message = loading_message(model, batch)
    if not err_console.is_terminal and message.startswith("exporting"):
        err_console.print(message, highlight=False, markup=False)
    with err_console.status(escape(message)):
        proto = model_to_onnx(model, batch=batch)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(out))
    summary = {"name": proto.graph.name, "n_nodes": len(proto.graph.node), "out": str(out)}
    if as_json:
        emit_json(summary)
    else:
        console.print(f"wrote {out} ({summary['n_nodes']} ONNX nodes)", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("info")(info)
    app.command("import")(import_)
    app.command("export")(export)
