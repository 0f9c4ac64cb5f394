"""Shared CLI plumbing: the app, output in table or --json form, and one-line errors."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from annette.errors import AnnetteError

F = TypeVar("F", bound=Callable[..., Any])

# Piped output (files, CI logs) is not wrapped at rich's 80-column default: per-layer tables need room
# (COLUMNS, where set, still decides).
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit() else 160)
err_console = Console(stderr=True)

STATE: dict[str, bool] = {"debug": False}


def emit_json(obj: Any) -> None:
    """Print machine-readable output (the only thing on stdout under --json)."""
    sys.stdout.write(json.dumps(obj, indent=1, default=str) + "\n")


# One name for backend options in every command (``--opt`` is kept as a short alias).
BACKEND_OPTION_HELP = "A backend option KEY=VALUE (VALUE read as JSON where it parses, e.g. threads=2); repeat it."


def parse_backend_options(items: list[str] | None) -> dict[str, Any]:
    """``["opt_level=basic", "threads=2"]`` -> ``{"opt_level": "basic", "threads": 2}``: values parsed as JSON
    where they can be (numbers, booleans), else kept as strings."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise AnnetteError(f"backend option {item!r}: expected KEY=VALUE (e.g. opt_level=basic)")
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
        except (AnnetteError, FileNotFoundError, PermissionError) as exc:
            if STATE["debug"]:
                raise
            err_console.print(f"[bold red]error:[/] {type(exc).__name__}: {escape(str(exc))}", highlight=False,
                              markup=True, soft_wrap=True)  # one line, whatever the width
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


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
