"""Shared CLI plumbing: the app, output in table or --json form, and one-line errors."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click
import typer
from rich.console import Console
from rich.markup import escape

from annette.errors import AnnetteError, InvalidOptionError

F = TypeVar("F", bound=Callable[..., Any])

# Piped output (files, CI logs) is not wrapped at rich's 80-column default: per-layer tables need room
# (COLUMNS, where set, still decides).
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit() else 160)
err_console = Console(stderr=True)

STATE: dict[str, bool] = {"debug": False}


_SHOWN: set[str] = set()


def warn_once(messages: Any) -> None:
    """Print each warning (e.g. ``Estimate.warnings``) on stderr once per command, one line each."""
    for msg in messages:
        if msg not in _SHOWN:
            _SHOWN.add(msg)
            err_console.print(f"[bold yellow]warning:[/] {escape(msg)}", highlight=False, soft_wrap=True)


def emit_json(obj: Any) -> None:
    """Print machine-readable output (the only thing on stdout under --json): strict JSON, so NaN and
    infinities (which strict parsers reject) are written as null, with the reason in the object that held
    them (see :func:`finite_json`)."""
    sys.stdout.write(json.dumps(finite_json(obj), indent=1, default=str, allow_nan=False) + "\n")


def finite_json(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None; an object that held one gets ``"null_reasons"``:
    key -> why it is null (its ``note``, where it has one, e.g. "cannot account: ..." for a layer whose ops are
    unknown)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        reasons: dict[str, str] = {}
        for k, v in obj.items():
            if isinstance(v, float) and not math.isfinite(v):
                note = obj.get("note") or obj.get("reason")
                reasons[str(k)] = f"{v!r} is not a JSON number" + (f": {note}" if note else "")
                out[k] = None
            else:
                out[k] = finite_json(v)
        if reasons:
            out["null_reasons"] = {**dict(out.get("null_reasons") or {}), **reasons}
        return out
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


# One name for backend options in every command (``--opt`` is kept as a short alias).
BACKEND_OPTION_HELP = "A backend option KEY=VALUE (VALUE read as JSON where it parses, e.g. threads=2); repeat it."


def parse_backend_options(items: list[str] | None) -> dict[str, Any]:
    """``["opt_level=basic", "threads=2"]`` -> ``{"opt_level": "basic", "threads": 2}``: values parsed as JSON
    where they can be (numbers, booleans), else kept as strings."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidOptionError(f"backend option {item!r}: expected KEY=VALUE (e.g. opt_level=basic)")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def handle_errors(func: F) -> F:
    """Turn expected errors into one clear line on stderr and exit code 1 (traceback only with --debug)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, click.exceptions.ClickException, click.exceptions.Abort):
            raise
        except (AnnetteError, OSError) as exc:  # OSError: a path that cannot be read or written, a full disk
            if STATE["debug"]:
                raise
            _error_line(f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug or an unchecked input: still one line, the traceback under --debug
            if STATE["debug"]:
                raise
            _error_line(f"unexpected {type(exc).__name__}: {str(exc)[:500]} (run with --debug for the traceback "
                        "and report it: annette should have named this problem)")

    return wrapper  # type: ignore[return-value]


def _error_line(message: str) -> None:
    text = " ".join(message.split())  # one line, whatever the message holds
    err_console.print(f"[bold red]error:[/] {escape(text)}", highlight=False, markup=True,
                      soft_wrap=True)  # never wrapped, whatever the width (logs, CI)
    raise typer.Exit(code=1) from None


def _hide_flag_types() -> None:
    """typer's rich help prints a ``<bool>`` type for every on/off flag (``--json <bool>``), which reads as if
    the flag took a value: show no type for flags (options that take a value keep theirs)."""
    try:
        from typer.core import TyperOption
    except ImportError:  # another typer layout: keep its help as it is
        return
    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_annette_flags_hidden", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    display_type_rich._annette_flags_hidden = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_hide_flag_types()


def configure_logging(verbose: bool, debug: bool) -> None:
    level = logging.DEBUG if debug else (logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
