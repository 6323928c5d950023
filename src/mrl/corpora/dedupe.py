"""Near-duplicate detection for pictures: perceptual hashes, Hamming neighbours, connected groups.

A perceptual hash (``imagehash.phash``: the signs of the low DCT frequencies of a 32x32 grey
thumbnail, 64 bits) changes little when a picture is resized, recoloured slightly or re-rendered.
Pairs within a Hamming radius are found with FAISS's exact binary index (``range_search``), pairs
of pictures whose stored pixels nearly match with FAISS's exact L2 range search, and groups are the
connected components of the resulting graph (scipy), so chains of near-duplicates end up together.
"""

from __future__ import annotations

from collections.abc import Sequence

import faiss
import imagehash
import numpy as np
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from mrl.data.image_items import on_white
from mrl.errors import MRLError

HASH_BITS = 64


def phash_bits(images: Sequence[Image.Image]) -> np.ndarray:
    """64-bit perceptual hashes of pictures composited on white.

    Shape: returns ``[N, 8]`` uint8 (the bits packed 8 per byte, FAISS's binary layout).
    """
    out = np.zeros((len(images), HASH_BITS // 8), dtype=np.uint8)
    for i, im in enumerate(images):
        out[i] = np.packbits(imagehash.phash(on_white(im), hash_size=8).hash.reshape(-1))
    return out


def near_pairs(codes: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """All pairs ``(i, j)``, ``i < j``, whose hashes differ in at most ``radius`` bits.

    Shape: ``codes`` ``[N, 8]`` uint8 -> two int64 arrays ``[P]``.
    """
    if codes.ndim != 2 or codes.dtype != np.uint8 or codes.shape[1] * 8 != HASH_BITS:
        raise MRLError(f"hash codes must be uint8 [N, {HASH_BITS // 8}], got {codes.dtype} {codes.shape}.")
    if radius < 0 or len(codes) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    index = faiss.IndexBinaryFlat(HASH_BITS)
    index.add(np.ascontiguousarray(codes))
    lims, _dist, ids = index.range_search(np.ascontiguousarray(codes), radius + 1)  # FAISS keeps distances < radius + 1
    rows = np.repeat(np.arange(len(codes)), np.diff(lims.astype(np.int64)))
    keep = rows < ids
    return rows[keep].astype(np.int64), ids[keep].astype(np.int64)


def pixel_pairs(images: np.ndarray, max_rms: float) -> tuple[np.ndarray, np.ndarray]:
    """All pairs ``(i, j)``, ``i < j``, of pictures whose RMS pixel difference is at most ``max_rms``.

    The difference is measured on the stored pixels (0-255), with FAISS's exact L2 range search.

    Shape: ``images`` uint8 ``[N, S, S, C]`` -> two int64 arrays ``[P]``.
    """
    if max_rms < 0 or len(images) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    flat = np.ascontiguousarray(images.reshape(len(images), -1), dtype=np.float32)
    index = faiss.IndexFlatL2(flat.shape[1])
    index.add(flat)
    lims, _dist, ids = index.range_search(flat, float(max_rms) ** 2 * flat.shape[1] + 1e-3)
    rows = np.repeat(np.arange(len(flat)), np.diff(lims.astype(np.int64)))
    keep = rows < ids
    return rows[keep].astype(np.int64), ids[keep].astype(np.int64)


def components(n: int, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Connected components of the graph on ``n`` nodes with the given edge lists.

    Shape: each edge list is two int arrays ``[P]``; returns ``[n]`` int64 component ids, numbered
    in order of each component's smallest node.
    """
    rows = np.concatenate([p[0] for p in pairs] + [np.zeros(0, np.int64)])
    cols = np.concatenate([p[1] for p in pairs] + [np.zeros(0, np.int64)])
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    first: dict[int, int] = {}
    for lab in labels.tolist():
        first.setdefault(lab, len(first))
    return np.array([first[lab] for lab in labels.tolist()], dtype=np.int64)


def key_pairs(keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Edges linking every item to the first item with the same key (enough to connect them).

    Shape: returns two int64 arrays ``[P]``.
    """
    first: dict[str, int] = {}
    rows, cols = [], []
    for i, k in enumerate(keys):
        j = first.setdefault(k, i)
        if j != i:
            rows.append(j)
            cols.append(i)
    return np.asarray(rows, np.int64), np.asarray(cols, np.int64)
