"""Executed-layer type strings, built and parsed in one place.

A type names what a target runs: its members' keys joined by ``+`` (``Conv+Relu``). A member key is an op
type, with a variant in brackets where one op type hides very different kernels (``Conv[dw]``: depthwise,
``Conv[grouped]``). An inserted node's type is its op type (``ReorderInput``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

SEPARATOR = "+"


def member_key(op: str, variant: str = "") -> str:
    """``Conv`` with variant ``dw`` -> ``Conv[dw]``; without a variant the op type itself."""
    return f"{op}[{variant}]" if variant else op


def member_op(key: str) -> str:
    """The op type of a member key: ``Conv[dw]`` -> ``Conv``."""
    return key.split("[", 1)[0]


@dataclass(frozen=True)
class LayerType:
    """An executed-layer type: its members' keys in execution order, e.g. ``("Conv[dw]", "Relu")``."""

    members: tuple[str, ...]

    @staticmethod
    def parse(text: str) -> LayerType:
        """``Conv[dw]+Relu`` -> ``LayerType(("Conv[dw]", "Relu"))``."""
        return LayerType(tuple(text.split(SEPARATOR)))

    @staticmethod
    def joined(types: Iterable[str]) -> LayerType:
        """The type whose members are those of ``types`` in turn (``Conv+Relu``, ``Add`` -> ``Conv+Relu+Add``)."""
        return LayerType(tuple(m for t in types for m in t.split(SEPARATOR)))

    def __str__(self) -> str:
        return SEPARATOR.join(self.members)

    @property
    def primary(self) -> str:
        """The first member's key (``Conv[dw]`` of ``Conv[dw]+Relu``)."""
        return self.members[0]

    @property
    def base_op(self) -> str:
        """The first member's op type, without its variant (``Conv`` of ``Conv[dw]+Relu``)."""
        return member_op(self.members[0])

    def fallbacks(self) -> list[str]:
        """Increasingly generic types to try: this one, its primary member, that member's op type."""
        chain = [str(self)]
        for t in (self.primary, self.base_op):
            if t not in chain:
                chain.append(t)
        return chain
