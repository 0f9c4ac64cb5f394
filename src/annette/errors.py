"""The error hierarchy. Every message says what was expected, what was got, and where."""

from __future__ import annotations


class AnnetteError(Exception):
    """Base class of every error annette raises on purpose."""


class ModelFileError(AnnetteError):
    """A model file is missing, unreadable, truncated or not the format it claims to be."""


class UnsupportedOperatorError(AnnetteError):
    """An operator that annette cannot account for or import."""


class GraphValidationError(AnnetteError):
    """A graph violates an invariant: duplicate names, dangling edges, cycles, missing shapes."""


class ShapeError(GraphValidationError):
    """A tensor shape is missing, symbolic or not positive where a concrete shape is needed."""


class UnknownNameError(AnnetteError, KeyError):
    """A name that is not in a registry; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DuplicateNameError(AnnetteError):
    """A name given twice where names must be unique (a registry, a list of networks)."""


class InvalidOptionError(AnnetteError, ValueError):
    """An option or argument is out of range, malformed, or combined with one it excludes; the message says
    what is valid. A ValueError too, as the library raised before."""


class InsufficientDataError(AnnetteError, ValueError):
    """Too few samples, records, rounds or networks to fit or compute a result; the message says how many are
    needed. A ValueError too, as the library raised before."""


class LegacyFormatError(AnnetteError):
    """A legacy ANNETTE graph/model file cannot be used (template, untraversable, malformed)."""


class BenchStoreError(AnnetteError):
    """A benchmark store is corrupt, foreign, or from an unknown schema version."""


class BackendError(AnnetteError):
    """A runtime backend is unavailable or failed to prepare or run a model."""


class HardwareModelError(AnnetteError):
    """A hardware-model bundle is malformed, incomplete or from an unknown schema version."""


class NotFittedError(AnnetteError):
    """A model's predict was called before fit."""


class UnsupportedLayerError(AnnetteError):
    """Under --strict: a layer that no layer model covers."""


class ClusterError(AnnetteError):
    """A benchmark cluster cannot be used: the scheduler is unreachable, a target label has no worker or mixes
    different targets, or a worker refused the campaign."""
