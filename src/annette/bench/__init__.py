"""annette.bench

Importing the package completes the benchmark family registry (``annette.bench.blocks.FAMILIES``): the
transformer families of :mod:`annette.bench.transformer_blocks` register themselves into it here.
"""

from annette.bench import transformer_blocks as _transformer_blocks  # noqa: F401
