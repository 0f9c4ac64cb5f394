"""Checks of values read from files (bundles, graphs, stores, tables): one place for "what was expected, what
was got" about numbers, objects and lists, so every loader says the same thing the same way.

Each check raises :class:`ValueError` naming the parameter (``where``); loaders turn it into their own error
(:class:`~annette.errors.HardwareModelError`, :class:`~annette.errors.ModelFileError`, ...) with the file named.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# A dimension or count read from a file: ONNX stores int64, but nothing annette estimates comes near this,
# and a bound keeps products of dimensions exact in floats and far from overflowing int64.
MAX_DIM = 2**31 - 1


def read_json(path: str | Path, **kwargs: Any) -> Any:
    """A JSON file's value; raises ValueError saying why it cannot be read as JSON (not UTF-8, not JSON,
    nested too deeply for the parser); OSError as the OS raises it. ``kwargs`` go to ``json.loads``."""
    text = Path(path).read_bytes()
    try:
        return json.loads(text.decode("utf-8"), **kwargs)
    except UnicodeDecodeError as exc:
        raise ValueError(f"not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply to read (thousands of levels)") from None


def read_json_object(path: str | Path, **kwargs: Any) -> dict[str, Any]:
    """A JSON file's top-level object (:func:`read_json`, then checked to be an object): the one reader of
    bundles, graphs and legacy files. Raises ValueError saying why the file holds none; OSError as the OS
    raises it."""
    data = read_json(path, **kwargs)
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {_kind(data)}")
    return data


def check_schema(d: Mapping[str, Any], what: str, version: int, *, schema: str | None = None) -> None:
    """Check a JSON object's ``schema`` tag (where the format has one) and its integer ``schema_version``;
    raises ValueError saying what was expected and what was got (``what`` names the format)."""
    if schema is not None and d.get("schema") != schema:
        article = "an" if what[:1].lower() in "aeiou" else "a"
        raise ValueError(f'not {article} {what} (expected "schema": "{schema}", got {_kind(d.get("schema"))})')
    got = d.get("schema_version")
    if got != version or isinstance(got, bool):
        raise ValueError(
            f"{what} schema version {got!r} is not supported (expected the integer "
            f"{version}{', not a string' if isinstance(got, str) else ''})"
        )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def obj(value: Any, where: str) -> Mapping[str, Any]:
    """``value`` if it is a JSON object (mapping)."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be an object, got {_kind(value)}")
    return value


def seq(value: Any, where: str) -> list[Any]:
    """``value`` if it is a JSON list."""
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{where} must be a list, got {_kind(value)}")
    return list(value)


def text(value: Any, where: str, *, empty: bool = False) -> str:
    """``value`` if it is a string (non-empty unless ``empty``)."""
    if not isinstance(value, str):
        raise ValueError(f"{where} must be a string, got {_kind(value)}")
    if not value and not empty:
        raise ValueError(f"{where} must not be empty")
    return value


def number(
    value: Any, where: str, *, positive: bool = False, nonnegative: bool = False,
    low: float | None = None, high: float | None = None,
) -> float:
    """``value`` as a finite float (positive, non-negative or within [low, high] where asked)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} must be a number, got {_kind(value)}")
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"{where} must be a finite number, got {value!r}")
    if positive and not x > 0:
        raise ValueError(f"{where} must be positive, got {value!r}")
    if nonnegative and x < 0:
        raise ValueError(f"{where} must not be negative, got {value!r}")
    if (low is not None and x < low) or (high is not None and x > high):
        bounds = f"within [{low}, {high}]" if low is not None and high is not None else (
            f"at least {low}" if low is not None else f"at most {high}")
        raise ValueError(f"{where} must be {bounds}, got {value!r}")
    return x


def optional_number(value: Any, where: str, **bounds: Any) -> float | None:
    """None for null, else :func:`number`."""
    return None if value is None else number(value, where, **bounds)


def integer(value: Any, where: str, *, low: int | None = None, high: int | None = MAX_DIM) -> int:
    """``value`` if it is an integer (a float with an integral value counts) within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} must be an integer, got {_kind(value)}")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{where} must be an integer, got {value!r}")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        lo = "" if low is None else f">= {low}"
        hi = "" if high is None else f"<= {high}"
        raise ValueError(f"{where} must be {' and '.join(x for x in (lo, hi) if x)}, got {v}")
    return v


def dims(value: Any, where: str, *, low: int = 1) -> tuple[int, ...]:
    """A shape: a list of integers in [low, MAX_DIM]."""
    return tuple(integer(d, f"{where} dimension {i}", low=low) for i, d in enumerate(seq(value, where)))


# -- hardware-model bundles ------------------------------------------------------------------------------------
_BUNDLE_OBJECTS = ("target", "features", "mapping", "overhead", "layer_models")
_BUNDLE_OPTIONAL_OBJECTS = ("fallbacks", "provenance", "quality", "element_bits", "cache", "calibration")
_TARGET_TEXT = ("backend", "device_model", "runtime", "precision")


def check_bundle_parts(d: Mapping[str, Any]) -> None:
    """The types of a bundle's parts (each part's own ``from_dict`` checks its numbers): what a wrongly typed
    part is, named by its path, before any part is parsed."""
    text(d.get("name"), "name")
    for key in _BUNDLE_OBJECTS:
        obj(d[key], key)
    for key in _BUNDLE_OPTIONAL_OBJECTS:
        if d.get(key) is not None:
            obj(d[key], key)
    target = d["target"]
    for key in _TARGET_TEXT:
        text(target.get(key), f"target.{key}")
    for key in ("device", "runtime_version", "provider"):
        text(target.get(key), f"target.{key}", empty=True)
    integer(target.get("threads"), "target.threads", low=0)
    integer(target.get("batch", 1), "target.batch", low=0)  # 0: fitted over several batches
    if target.get("extra") is not None:
        obj(target["extra"], "target.extra")
    names = seq(d["features"].get("names"), "features.names")
    for i, n in enumerate(names):
        text(n, f"features.names[{i}]")
    for type_name, kinds in d["layer_models"].items():
        for kind, md in obj(kinds, f"layer_models.{type_name}").items():
            obj(md, f"layer_models.{type_name}.{kind}")
    for k, v in (d.get("fallbacks") or {}).items():
        text(v, f"fallbacks.{k}")
    if d.get("default_type") is not None:
        text(d["default_type"], "default_type")
