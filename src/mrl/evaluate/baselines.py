"""Post-hoc baselines that shrink a normal (fixed-feature) embedding to ``d`` dims.

* ``pca``: project onto the top-``d`` principal components (fit once on the training embeddings,
  scikit-learn's PCA; the components are nested, so every ``d`` is a slice of one fit).
* ``random``: keep a random (seeded) subset of ``d`` coordinates.

Both return new arrays; the inputs are never modified. The evaluation then fits a linear probe
on the reduced features (the head accuracy of these baselines) and runs the same retrieval.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from sklearn.decomposition import PCA

from mrl.checks import check_matrix
from mrl.errors import MRLError

REDUCERS = ("pca", "random")


def pca_transform(fit_on: np.ndarray, *arrays: np.ndarray) -> list[np.ndarray]:
    """Project ``arrays`` onto all principal components of ``fit_on`` (centred, ordered by variance).

    PCA components are nested, so one full fit serves every prefix ``d``: the first ``d`` columns
    of the projection equal a ``d``-component PCA (scikit-learn's full-SVD solver, fit once).

    Shape: fit_on ``[N, D]``, each array ``[M, D]`` -> ``[M, min(N, D)]`` float32.
    """
    check_matrix(fit_on, "PCA training embeddings")
    for a in arrays:
        check_matrix(a, "embeddings", cols=fit_on.shape[1])
    pca = PCA(n_components=min(fit_on.shape), svd_solver="full").fit(fit_on)
    return [pca.transform(a).astype(np.float32) for a in arrays]


def reductions(method: str, train: np.ndarray, others: list[np.ndarray], dims: Sequence[int], *, seed: int = 0) -> Iterator[tuple[int, np.ndarray, list[np.ndarray]]]:
    """Reduce ``train`` ``[N, D]`` and each of ``others`` to every ``d`` in ``dims``, fitting once.

    Yields ``(d, train_reduced [N, d], [other_reduced [M, d], ...])`` float32, contiguous. PCA is
    fit a single time (its components are nested); the random subset is drawn per ``d``.
    """
    check_matrix(train, "train embeddings")
    for o in others:
        check_matrix(o, "embeddings", cols=train.shape[1])
    if method not in REDUCERS:
        raise MRLError(f"unknown reduction {method!r}; choose one of {REDUCERS}.")
    for d in dims:
        if not 1 <= d <= train.shape[1]:
            raise MRLError(f"d must be in [1, {train.shape[1]}], got {d}.")
    projected = pca_transform(train, train, *others) if method == "pca" else None
    for d in dims:
        if projected is not None:
            tr, *rest = (np.ascontiguousarray(p[:, :d]) for p in projected)
        else:
            cols = np.sort(np.random.default_rng(seed).choice(train.shape[1], size=d, replace=False))
            tr, rest = train[:, cols].astype(np.float32), [o[:, cols].astype(np.float32) for o in others]
        yield int(d), tr, list(rest)


def reduce_embeddings(method: str, train: np.ndarray, others: list[np.ndarray], d: int, *, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """Fit ``method`` on ``train`` ``[N, D]`` and apply it to ``train`` and each of ``others``.

    Returns ``(train_reduced [N, d], [other_reduced [M, d], ...])`` float32.
    """
    _, tr, rest = next(reductions(method, train, others, [d], seed=seed))
    return tr, rest
