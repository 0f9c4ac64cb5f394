"""Reading the legacy JSON files: one place for "not found / not JSON / not an object" errors.

Duplicate keys are resolved as Python's ``json`` module does (and so the original): the **last** value wins,
at the position of the first occurrence. The duplicates are reported so callers can say so.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from annette import checks
from annette.errors import LegacyFormatError

log = logging.getLogger(__name__)

JsonSource = str | Path | Mapping[str, Any]


def read_json_object(source: JsonSource, what: str) -> tuple[dict[str, Any], str, tuple[str, ...]]:
    """Return ``(object, label, duplicate_keys)`` for a path or an already parsed mapping.

    ``what`` names the expected content ("legacy graph", "layer model", ...) for error messages.
    """
    if isinstance(source, Mapping):
        return dict(source), f"<{what} dict>", ()
    path = Path(source)
    if not path.is_file():
        raise LegacyFormatError(f"{what} file not found: {path}")
    duplicates: list[str] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen and key not in duplicates:
                duplicates.append(key)
            seen.add(key)
        return dict(pairs)  # last value wins, like json's default

    try:
        data = checks.read_json_object(path, object_pairs_hook=pairs_hook)
    except ValueError as exc:
        raise LegacyFormatError(f"{path}: expected a {what} in JSON: {exc}") from exc
    if duplicates:
        log.info("%s: duplicate JSON keys %s, the last value of each is used", path, duplicates)
    return data, str(path), tuple(duplicates)
