"""``mrl``: Matryoshka Representation Learning — train nested embeddings, evaluate every prefix, use the nesting.

The public API of the README tour::

    from mrl import MatryoshkaLinear, MatryoshkaLoss, parse_dims, truncate
    from mrl import MatryoshkaIndex, Funnel, fit_cascade, TrainConfig, train, load_recipe

Heavy sub-packages (FAISS, sentence-transformers) load only when one of their names is first used.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("mrl")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

# public name -> module that defines it (resolved lazily on first attribute access)
_EXPORTS = {
    "parse_dims": "mrl.nesting",
    "log2_dims": "mrl.nesting",
    "validate_dims": "mrl.nesting",
    "MatryoshkaLinear": "mrl.heads",
    "MatryoshkaLoss": "mrl.losses",
    "MatryoshkaEmbeddingLoss": "mrl.losses",
    "create_weighting": "mrl.weighting",
    "truncate": "mrl.embeddings",
    "l2_normalize": "mrl.embeddings",
    "quantize": "mrl.embeddings",
    "MRLError": "mrl.errors",
    "TrainConfig": "mrl.train.config",
    "load_recipe": "mrl.train.recipe",
    "train": "mrl.train.loop",
    "load_model": "mrl.train.checkpoint",
    "Cascade": "mrl.adaptive.cascade",
    "fit_cascade": "mrl.adaptive.cascade",
    "evaluate_cascade": "mrl.adaptive.cascade",
    "MatryoshkaIndex": "mrl.index.matryoshka_index",
    "Funnel": "mrl.index.funnel",
    "MatryoshkaAdaptor": "mrl.models.adaptor",
    "load_adaptor": "mrl.models.adaptor",
    "fit_adaptor": "mrl.train.adaptor",
}

__all__ = ["__version__", *sorted(_EXPORTS)]  # noqa: PLE0604 - names are strings, listed in _EXPORTS


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mrl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
