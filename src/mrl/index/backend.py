"""One index interface, two backends: the local :class:`~mrl.index.MatryoshkaIndex` and Milvus.

Both implement :class:`IndexBackend`, so library code, the CLI (``mrl index ... [--milvus URI]``)
and the server call the same methods:

    >>> index = open_index("my-index")                                   # local folder
    >>> index = open_index("my-index", milvus="mrl.db", collection="docs")  # Milvus Lite / cluster
    >>> index.add(vectors, ids, metadata={"lang": ["en", ...]})
    >>> scores, ids = index.search(queries, 10, recall_target=0.99, filter='lang == "en"')

A search names its funnel explicitly (``funnel="64:400 -> 384:10"``), or asks for the fastest
tuned funnel meeting a recall target (``recall_target``, read from the tuning record the tuner
stored with the index or collection, :func:`choose_funnel`), or uses the default tuned funnel.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from mrl.errors import MRLError
from mrl.index.catalog import Metadata
from mrl.index.filters import Filter
from mrl.index.frontier import choose_funnel
from mrl.index.funnel import Funnel

__all__ = ["IndexBackend", "choose_funnel", "open_index"]  # choose_funnel lives in mrl.index.frontier (below every backend)


@runtime_checkable
class IndexBackend(Protocol):
    """What every index backend offers.

    Shape: ``add/upsert(vectors [n, D], ids [n] int64, metadata {field: [n]})``;
    ``search(queries [B, D], k) -> (scores [B, k] float32, ids [B, k] int64)``, ``-1`` ids pad.
    """

    dim: int
    metric: str
    funnel: Funnel | None
    tuning: dict[str, Any] | None

    @property
    def count(self) -> int:
        """Live vectors (deleted ones excluded)."""

    @property
    def schema(self) -> dict[str, str]:
        """Metadata fields and their types (``"str"`` | ``"int"``)."""

    def add(self, vectors: np.ndarray, ids: np.ndarray | None = None, metadata: Metadata = None) -> None:
        """Insert; ids already present are refused."""

    def upsert(self, vectors: np.ndarray, ids: np.ndarray, metadata: Metadata = None) -> None:
        """Insert or replace by id."""

    def delete(self, ids: Any) -> int:
        """Remove by id; returns how many were present."""

    def search(self, queries: np.ndarray, k: int | None = None, *, funnel: Funnel | str | None = None, recall_target: float | None = None, filter: str | dict[str, Any] | Filter | None = None) -> Any:
        """Funnel search; see :meth:`MatryoshkaIndex.search`."""

    def info(self) -> dict[str, Any]:
        """A JSON-able summary (count, dim, metric, funnel, fields, backend specifics)."""


def open_index(folder: str | None = None, *, milvus: str | None = None, collection: str | None = None, **kw: Any) -> IndexBackend:
    """The local index in ``folder``, or the Milvus collection ``collection`` at URI ``milvus``."""
    if milvus is not None:
        if not collection:
            raise MRLError("a Milvus index needs a collection name (--collection NAME).")
        from mrl.index.backends.milvus import MilvusIndex

        return MilvusIndex.open(milvus, collection, **kw)
    if folder is None:
        raise MRLError("give an index folder, or --milvus URI --collection NAME.")
    from mrl.index import MatryoshkaIndex

    return MatryoshkaIndex.load(folder, **kw)
