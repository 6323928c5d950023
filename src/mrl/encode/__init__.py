"""Encoding a corpus into resumable ``.npy`` shards with a manifest (:mod:`mrl.encode.shards`), any executor.

:func:`mrl.encode.text.encode_corpus` is the single-process text executor; a distributed executor
writes the same shards with :func:`~mrl.encode.shards.write_shard` and records them with
:meth:`~mrl.encode.shards.ShardSet.record`.
"""

from mrl.encode.shards import ShardReader, ShardSet, is_shard_folder, open_shards, write_shard

__all__ = ["ShardReader", "ShardSet", "is_shard_folder", "open_shards", "write_shard"]
