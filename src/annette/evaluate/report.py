"""Study reports: ``results.json`` (every number), ``summary.md``, PNG plots and a self-contained HTML page.

Plots (matplotlib, drawn on ``Figure`` objects with the Agg canvas, so the global pyplot state is untouched):

- ``estimated_vs_measured.png``: per kind, estimate against measurement (log-log) with the ±10 % band;
- ``layer_breakdown.png``: per profiled network, the estimated time per layer type (best kind) next to the
  profiled kernel time per layer type plus the time outside kernels, as shares of the measured latency;
- ``error_by_type.png``: per kind and layer type, summed estimate against summed profiled kernel time;
- ``ranking.png``: estimated rank against measured rank per kind (fidelity, for NAS studies; only from
  :data:`MIN_RANKING_NETWORKS` networks on).

``error_by_type.png`` clips its axis at ±:data:`ERROR_AXIS_CLIP_PCT` (one type off by +900 % would squash
the others) and prints the value of every clipped bar. summary.md and the HTML page lead with the
per-network table, explain every stability flag shown, and put the hardware model's target (CPU, ISA,
runtime, threads) beside the measured one, with a warning where they differ or the machine was busy.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from annette.bench.runner import FLAG_MEANINGS
from annette.evaluate.metrics import Metrics, rankdata
from annette.evaluate.study import UNPROFILED, NetworkResult, StudyResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

MAX_BREAKDOWN_NETWORKS = 16
MAX_TYPES = 8
MIN_RANKING_NETWORKS = 5  # a rank plot of fewer networks says nothing
ERROR_AXIS_CLIP_PCT = 150.0  # error-by-type bars beyond ±this are clipped (their value is printed)
HIGH_LOAD_SHARE = 0.5  # warn when the 1-minute load average exceeds this share of the logical CPUs
FUSED_BY_RUNTIME = "fused by the runtime (no kernel of its own in the profile)"
KIND_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
TYPE_COLORS = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
)  # fmt: skip
OTHER_COLOR = "#bab0ac"
UNPROFILED_COLOR = "#d9d9d9"


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    summary: Path
    results: Path
    plots: tuple[Path, ...]


def best_kind(result: StudyResult) -> str | None:
    """The kind with the lowest MAPE (None when nothing was estimated)."""
    if not result.overall:
        return None
    return min(result.overall, key=lambda k: result.overall[k].mape_pct)


# -- text ----------------------------------------------------------------------------------------------
def _fmt(x: float | int | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, int):
        return str(x)
    return f"{x:.{digits}f}"


METRIC_COLUMNS = (
    ("n", "n", 0),
    ("MAPE %", "mape_pct", 2),
    ("RMSPE %", "rmspe_pct", 2),
    ("±5 % acc. %", "within5_pct", 1),
    ("±10 % acc. %", "within10_pct", 1),
    ("Spearman ρ", "spearman", 3),
    ("Kendall τ", "kendall", 3),
)


def metric_rows(result: StudyResult) -> list[tuple[str, Metrics]]:
    rows = [(kind, m) for kind, m in result.overall.items()]
    if result.noise_floor is not None:
        rows.append(("noise floor (round 1 vs 2)", result.noise_floor))
    return rows


def markdown_table(result: StudyResult) -> str:
    """The overall metrics per kind and the noise floor as a markdown table."""
    head = "| model kind | " + " | ".join(c for c, _, _ in METRIC_COLUMNS) + " |"
    sep = "|---|" + "---:|" * len(METRIC_COLUMNS)
    lines = [head, sep]
    for label, m in metric_rows(result):
        cells = [_fmt(getattr(m, attr), d) for _, attr, d in METRIC_COLUMNS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def settings_line(result: StudyResult) -> str:
    s = result.settings
    meta = result.metadata
    t = result.measured_target
    runtime = f"{t.get('runtime', s.backend)} {t.get('runtime_version', '')}".strip()
    return (
        f"{meta.get('date', '?')} on {meta.get('cpu', '?')} ({meta.get('host', '?')}); "
        f"backend {s.backend} ({runtime}), threads {s.threads}, batch {s.batch}, "
        f"{s.rounds} interleaved round(s), label = {result.label_statistic} over all rounds' samples; "
        f"hardware model {result.hw} ({result.hw_target})"
    )


def network_rows(result: StudyResult) -> tuple[list[str], list[list[str]]]:
    """The per-network table (the answer first): head and rows, one per network."""
    kinds = list(result.overall)
    head = ["network", "measured ms", "rounds ms", *(f"{k} ms (error)" for k in kinds), "unsupported", "flags"]
    rows = [
        [
            n.name,
            f"{n.measured_ms:.3f}",
            " / ".join(f"{r:.3f}" for r in n.rounds_ms),
            *(f"{n.estimated_ms[k]:.3f} ({n.error_pct(k):+.1f} %)" for k in kinds),
            str(max(n.unsupported.values(), default=0)),
            ", ".join(n.flags) or "-",
        ]
        for n in result.networks
    ]
    return head, rows


def flag_legend(result: StudyResult) -> list[str]:
    """One line per stability flag the networks carry, saying what it means."""
    used = sorted({f for n in result.networks for f in n.flags})
    return [f"{f}: {FLAG_MEANINGS.get(f, 'see annette.bench.runner')}" for f in used]


def type_error_cell(s: Mapping[str, float]) -> str:
    """The error of one layer type; a type estimated but absent from the profile was fused by the runtime."""
    if s["profiled_ms"] <= 0 and s["estimated_ms"] > 0:
        return FUSED_BY_RUNTIME
    return _fmt(s["error_pct"], 1)


def type_mape_cell(s: Mapping[str, float]) -> str:
    return "-" if s["profiled_ms"] <= 0 and s["estimated_ms"] > 0 else _fmt(s["mape_pct"], 1)


def _isa(target: Mapping[str, Any]) -> str:
    extra = target.get("extra") or {}
    return str(extra.get("isa", "?")) if isinstance(extra, Mapping) else "?"


def target_rows(result: StudyResult) -> list[list[str]]:
    """The hardware model's target beside the measured one: device (CPU), ISA, runtime, threads."""
    hw, got = result.hw_target_info, result.measured_target
    rows = []
    for label, key in (("device", "device_model"), ("runtime", "runtime"), ("runtime version", "runtime_version"),
                       ("threads", "threads"), ("precision", "precision")):
        rows.append([label, str(hw.get(key, "?")), str(got.get(key, "?"))])
    rows.append(["ISA", _isa(hw), _isa(got)])
    return rows


def target_warnings(result: StudyResult) -> list[str]:
    """Why the figures may not mean what they seem: the model describes another CPU/ISA/runtime than the
    one measured, or the machine was busy."""
    out = []
    hw, got = result.hw_target_info, result.measured_target
    if hw and got:
        for label, a, b in (
            ("CPU", hw.get("device_model"), got.get("device_model")),
            ("ISA", _isa(hw), _isa(got)),
            ("runtime", f"{hw.get('runtime')} {hw.get('runtime_version')}", f"{got.get('runtime')} "
             f"{got.get('runtime_version')}"),
            ("threads", hw.get("threads"), got.get("threads")),
        ):
            if a not in (None, "?") and b not in (None, "?") and a != b:
                out.append(f"the hardware model describes {label} {a!s}, but the networks were measured on {b!s}")
    load = result.metadata.get("loadavg") or []
    cpus = result.metadata.get("cpu_count") or 0
    if load and cpus and float(load[0]) > HIGH_LOAD_SHARE * cpus:
        out.append(f"the load average was {float(load[0]):.2f} on {cpus} logical CPUs when the report was made: "
                   "measurements on a busy machine are slower than the model expects")
    return out


def _markdown(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1),
            *("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows)]


def summary_markdown(result: StudyResult) -> str:
    lines = [f"# {result.title}", "", settings_line(result), ""]
    warnings = target_warnings(result)
    if warnings:
        lines += [f"- **Warning:** {w}." for w in warnings] + [""]
    if result.networks:
        lines += ["## Per network", "", *_markdown(*network_rows(result)), ""]
        legend = flag_legend(result)
        if legend:
            lines += ["Flags: " + "; ".join(legend) + ".", ""]
    lines += ["## Overall", "", markdown_table(result), ""]
    if result.noise_floor is None:
        lines += ["No noise floor: it needs at least 2 rounds.", ""]
    if result.hw_target_info:
        lines += ["## Target: hardware model vs measured", "",
                  *_markdown(["", f"hardware model {result.hw}", "measured"], target_rows(result)), ""]
    kind = best_kind(result)
    if kind is not None and result.by_type.get(kind):
        lines += [
            f"## Error by layer type ({kind}, summed over profiled networks; kernel times exclude overhead)",
            "",
            "| layer type | estimated ms | profiled ms | error % | per-network MAPE % |",
            "|---|---:|---:|---:|---:|",
        ]
        for t, s in result.by_type[kind].items():
            lines.append(
                f"| {t} | {s['estimated_ms']:.3f} | {s['profiled_ms']:.3f} | {type_error_cell(s)} | "
                f"{type_mape_cell(s)} |"
            )
        lines.append("")
    unsupported = {n.name: max(n.unsupported.values(), default=0) for n in result.networks}
    if any(unsupported.values()):
        lines += ["Networks with layers no layer model covers (their time is missing from the estimate): "]
        lines += [", ".join(f"{k} ({v})" for k, v in unsupported.items() if v), ""]
    if result.failed:
        lines += ["## Failed networks", ""] + [f"- `{k}`: {v}" for k, v in result.failed.items()] + [""]
    return "\n".join(lines)


# -- plots ---------------------------------------------------------------------------------------------
def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _kind_colors(kinds: Sequence[str]) -> dict[str, str]:
    return {k: KIND_COLORS[i % len(KIND_COLORS)] for i, k in enumerate(kinds)}


def plot_estimated_vs_measured(result: StudyResult) -> Figure:
    kinds = list(result.overall)
    colors = _kind_colors(result.kinds)
    cols = min(len(kinds), 2) or 1
    rows = math.ceil(len(kinds) / cols) or 1
    fig = _figure(5.0 * cols, 4.6 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    measured = np.array([n.measured_ms for n in result.networks])
    for ax, kind in zip(axes, kinds, strict=False):
        est = np.array([n.estimated_ms[kind] for n in result.networks])
        lo = float(min(measured.min(), est.min())) / 1.3
        hi = float(max(measured.max(), est.max())) * 1.3
        line = np.geomspace(lo, hi, 50)
        ax.fill_between(line, line * 0.9, line * 1.1, color="0.85", label="±10 %")
        ax.plot(line, line, color="0.4", lw=1, label="estimate = measured")
        ax.scatter(measured, est, s=18, color=colors[kind], alpha=0.8, edgecolors="none", label=kind)
        if len(result.networks) <= 25:
            for n, x, y in zip(result.networks, measured, est, strict=True):
                ax.annotate(n.name, (x, y), fontsize=6, xytext=(3, 2), textcoords="offset points", alpha=0.8)
        _log_axes(ax)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        m = result.overall[kind]
        ax.set_title(
            f"{kind}: MAPE {m.mape_pct:.1f} %, ±10 % {m.within10_pct:.0f} %, ρ {_fmt(m.spearman, 3)}",
            fontsize=10,
        )
        ax.set_xlabel(f"measured latency, ms ({result.label_statistic})")
        ax.set_ylabel("estimated latency, ms")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=8, loc="upper left")
    for ax in axes[len(kinds) :]:
        ax.set_visible(False)
    fig.suptitle(f"{result.title}: estimated vs measured ({len(result.networks)} networks)", fontsize=11)
    return fig


def _log_axes(ax: Axes) -> None:
    """Log-log axes with plain tick labels at 1, 2, 5 x 10^k (no crowded minor labels)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())


def _top_types(networks: Sequence[NetworkResult], kind: str) -> list[str]:
    totals: dict[str, float] = {}
    for n in networks:
        for t, v in (*n.profiled_by_type.items(), *n.estimated_by_type.get(kind, {}).items()):
            if t != UNPROFILED:
                totals[t] = totals.get(t, 0.0) + v / n.measured_ms
    return sorted(totals, key=lambda t: -totals[t])[:MAX_TYPES]


def plot_layer_breakdown(result: StudyResult, kind: str) -> Figure | None:
    nets = [n for n in result.networks if n.profiled_by_type][:MAX_BREAKDOWN_NETWORKS]
    if not nets:
        return None
    types = _top_types(nets, kind)
    colors = {t: TYPE_COLORS[i % len(TYPE_COLORS)] for i, t in enumerate(types)}
    fig = _figure(9.0, 1.6 + 0.62 * len(nets))
    ax = fig.subplots()
    ticks, labels = [], []
    used: set[str] = set()
    for i, net in enumerate(nets):
        for j, (label, parts) in enumerate(
            (("estimated", net.estimated_by_type.get(kind, {})), ("profiled", net.profiled_by_type))
        ):
            y = i * 2.6 + j * 1.0
            left = 0.0
            segments = [(t, parts.get(t, 0.0)) for t in types]
            segments.append(("other", sum(v for t, v in parts.items() if t not in types and t != UNPROFILED)))
            segments.append((UNPROFILED, parts.get(UNPROFILED, 0.0)))
            for t, v in segments:
                if v <= 0:
                    continue
                share = v / net.measured_ms
                color = colors.get(t, UNPROFILED_COLOR if t == UNPROFILED else OTHER_COLOR)
                ax.barh(y, share, left=left, height=0.9, color=color, label=t if t not in used else None)
                used.add(t)
                left += share
            ticks.append(y)
            labels.append(f"{net.name} · {label}")
    ax.axvline(1.0, color="0.3", lw=1, ls="--")
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("time / measured latency (1.0 = measured end-to-end latency)")
    ax.set_title(f"Per-layer-type time: estimate ({kind}) vs runtime profile", fontsize=10)
    fig.legend(fontsize=7, loc="outside lower center", ncols=min(5, len(used)))
    ax.grid(True, axis="x", alpha=0.25)
    return fig


def plot_error_by_type(result: StudyResult) -> Figure | None:
    kinds = [k for k in result.kinds if result.by_type.get(k)]
    if not kinds:
        return None
    types: list[str] = []
    for k in kinds:
        types += [t for t, s in result.by_type[k].items() if t not in types and math.isfinite(s["error_pct"])]
    types = types[:12]
    if not types:
        return None
    colors = _kind_colors(result.kinds)
    fig = _figure(8.0, 1.2 + 0.42 * len(types) * max(1, len(kinds)) ** 0.5)
    ax: Axes = fig.subplots()
    height = 0.8 / len(kinds)
    clip = ERROR_AXIS_CLIP_PCT
    clipped_any = False
    for j, kind in enumerate(kinds):
        vals = np.nan_to_num([result.by_type[kind].get(t, {}).get("error_pct", math.nan) for t in types])
        ys = np.arange(len(types)) + j * height - 0.4 + height / 2
        shown = np.clip(vals, -clip, clip)
        ax.barh(ys, shown, height=height, color=colors[kind], label=kind)
        for y, v, w in zip(ys, vals, shown, strict=True):
            if v != w:  # clipped: print the true value at the bar's end
                clipped_any = True
                ax.text(w * 0.98, y, f"{v:+.0f} %", va="center", ha="right" if v > 0 else "left", fontsize=7,
                        color="white", fontweight="bold")
    ax.set_xlim(-clip * 1.05, clip * 1.05)
    ax.axvline(0, color="0.3", lw=1)
    ax.set_yticks(np.arange(len(types)), types, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("(summed estimate − summed profiled kernel time) / profiled, %"
                  + (f"; axis clipped at ±{clip:.0f} %, clipped bars print their value" if clipped_any else ""))
    ax.set_title(
        "Error by layer type over profiled networks (kernel times exclude per-node overhead)", fontsize=10
    )
    ax.legend(fontsize=8)
    ax.grid(True, axis="x", alpha=0.25)
    return fig


def plot_ranking(result: StudyResult) -> Figure:
    kinds = list(result.overall)
    colors = _kind_colors(result.kinds)
    cols = min(len(kinds), 2) or 1
    rows = math.ceil(len(kinds) / cols) or 1
    fig = _figure(4.6 * cols, 4.4 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    measured_rank = rankdata([n.measured_ms for n in result.networks])
    n = len(result.networks)
    for ax, kind in zip(axes, kinds, strict=False):
        est_rank = rankdata([net.estimated_ms[kind] for net in result.networks])
        ax.plot([1, n], [1, n], color="0.5", lw=1)
        ax.scatter(measured_rank, est_rank, s=14, color=colors[kind], alpha=0.8, edgecolors="none")
        m = result.overall[kind]
        ax.set_title(f"{kind}: Spearman ρ {_fmt(m.spearman, 3)}, Kendall τ {_fmt(m.kendall, 3)}", fontsize=10)
        ax.set_xlabel("measured rank (1 = fastest)")
        ax.set_ylabel("estimated rank")
        ax.set_aspect("equal")
        ax.grid(True, alpha=0.25)
    for ax in axes[len(kinds) :]:
        ax.set_visible(False)
    if result.noise_floor is not None:
        nf = result.noise_floor
        fig.suptitle(
            f"Ranking fidelity ({n} networks); noise floor ρ {_fmt(nf.spearman, 3)}, τ {_fmt(nf.kendall, 3)}",
            fontsize=11,
        )
    else:
        fig.suptitle(f"Ranking fidelity ({n} networks)", fontsize=11)
    return fig


# -- HTML ----------------------------------------------------------------------------------------------
def _table(head: Sequence[str], rows: Sequence[Sequence[str]], right_from: int = 1) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="{"num" if i >= right_from else ""}">{html.escape(c)}</td>' for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px}th{background:#f3f3f3}td.num{text-align:right}.warn{color:#a30}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}code{font-size:12px}
"""


def render_html(result: StudyResult, plots: Sequence[Path]) -> str:
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(result.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(result.title)}</h1><p>{html.escape(settings_line(result))}</p>",
        *(f"<p class='warn'><b>Warning:</b> {html.escape(w)}.</p>" for w in target_warnings(result)),
        "<h2>Per network</h2>",
        _table(*network_rows(result)),
        *(["<p>Flags:</p><ul>"] + [f"<li>{html.escape(x)}</li>" for x in flag_legend(result)] + ["</ul>"]
          if flag_legend(result) else []),
        "<h2>Overall</h2>",
        _table(
            ["model kind", *(c for c, _, _ in METRIC_COLUMNS)],
            [
                [label, *(_fmt(getattr(m, a), d) for _, a, d in METRIC_COLUMNS)]
                for label, m in metric_rows(result)
            ],
        ),
    ]
    for plot in plots:
        data = base64.b64encode(plot.read_bytes()).decode("ascii")
        parts.append(f"<h3>{html.escape(plot.stem.replace('_', ' '))}</h3>")
        parts.append(f"<img alt='{html.escape(plot.name)}' src='data:image/png;base64,{data}'>")
    kinds = list(result.overall)
    if result.hw_target_info:
        parts.append("<h2>Target: hardware model vs measured</h2>")
        parts.append(_table(["", f"hardware model {result.hw}", "measured"], target_rows(result), right_from=9))
    for kind in kinds:
        if result.by_type.get(kind):
            parts.append(f"<h2>By layer type: {html.escape(kind)}</h2>")
            parts.append(
                _table(
                    [
                        "layer type",
                        "estimated ms",
                        "profiled ms",
                        "error %",
                        "per-network MAPE %",
                        "networks",
                    ],
                    [
                        [
                            t,
                            f"{s['estimated_ms']:.3f}",
                            f"{s['profiled_ms']:.3f}",
                            type_error_cell(s),
                            type_mape_cell(s),
                            str(int(s["networks"])),
                        ]
                        for t, s in result.by_type[kind].items()
                    ],
                )
            )
    if result.failed:
        parts.append("<h2>Failed</h2><ul>")
        parts += [
            f"<li><code>{html.escape(k)}</code>: {html.escape(v)}</li>" for k, v in result.failed.items()
        ]
        parts.append("</ul>")
    parts.append("<h2>Specs</h2>")
    parts.append(_table(["network", "spec"], [[n.name, n.spec] for n in result.networks], right_from=9))
    parts.append(f"<h2>Metadata</h2><pre>{html.escape(json.dumps(dict(result.metadata), indent=1))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(result: StudyResult, out_dir: str | Path) -> ReportFiles:
    """Write results.json, summary.md, the PNG plots and report.html (plots embedded) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.json"
    results.write_text(json.dumps(_jsonable(result.to_dict()), indent=1, allow_nan=False))
    summary = out / "summary.md"
    summary.write_text(summary_markdown(result))
    plots: list[Path] = []
    if result.networks and result.overall:
        figures: list[tuple[str, Figure | None]] = [
            ("estimated_vs_measured", plot_estimated_vs_measured(result)),
            ("ranking", plot_ranking(result) if len(result.networks) >= MIN_RANKING_NETWORKS else None),
        ]
        kind = best_kind(result)
        if kind is not None:
            figures.insert(1, ("layer_breakdown", plot_layer_breakdown(result, kind)))
        figures.insert(2, ("error_by_type", plot_error_by_type(result)))
        for name, fig in figures:
            if fig is None:
                continue
            path = out / f"{name}.png"
            fig.savefig(path)
            plots.append(path)
    page = out / "report.html"
    page.write_text(render_html(result, plots), encoding="utf-8")
    log.info("report written to %s", page)
    return ReportFiles(html=page, summary=summary, results=results, plots=tuple(plots))


def _jsonable(obj: Any) -> Any:
    """NaN/inf -> None, recursively (results.json stays strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj
