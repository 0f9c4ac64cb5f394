"""Hardware-model bundles built from foreign data (``scripts/build_shipped_models.py`` runs them).

- :mod:`annette.convert.legacy_bundle`: the original ANNETTE's DNNDK (ZCU102) and NCS2 roofline and
  refined-roofline layer models and mapping models, converted to bundles (``annette-dnndk``,
  ``annette-ncs2``).
- :mod:`annette.convert.h200`: bundles fitted from the H200 PyTorch-eager micro-kernel tables
  (``h200-torch-eager-fp16``, ``h200-torch-eager-fp32``).
"""

from __future__ import annotations
