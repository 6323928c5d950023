"""Persistent Matryoshka retrieval index: full vectors on disk, funnel search over prefixes."""

from mrl.index.funnel import Funnel, FunnelError, Stage
from mrl.index.matryoshka_index import MatryoshkaIndex
from mrl.index.search import SearchStats

__all__ = ["Funnel", "FunnelError", "MatryoshkaIndex", "SearchStats", "Stage"]
