"""Cost models for adaptive inference, counted in multiply-adds per query.

* Classification cascade: evaluating the head at prefix ``d`` costs ``d * C`` multiply-adds, so
  with a fixed number of classes the cost is proportional to ``d``. The *cumulative* cost of a
  sample is the sum of the dims of every head evaluated before it exits (the backbone runs once).
* Retrieval funnels: see :meth:`mrl.index.funnel.Funnel.flops`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def cumulative_dims(dims: Sequence[int]) -> np.ndarray:
    """``[G]`` running sum of ``dims``: the cost of exiting at each stage of a cascade."""
    return np.cumsum(np.asarray(dims, dtype=np.int64))

