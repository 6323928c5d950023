"""Post-hoc baselines that shrink a normal (fixed-feature) embedding to ``d`` dims.

* ``pca``: project onto the top-``d`` principal components (fit on the training embeddings,
  scikit-learn's PCA).
* ``random``: keep a random (seeded) subset of ``d`` coordinates.

Both return new arrays; the inputs are never modified. The evaluation then fits a linear probe
on the reduced features (the head accuracy of these baselines) and runs the same retrieval.
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA

from mrl.checks import check_matrix
from mrl.errors import MRLError

REDUCERS = ("pca", "random")


def reduce_embeddings(method: str, train: np.ndarray, others: list[np.ndarray], d: int, *, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """Fit ``method`` on ``train`` ``[N, D]`` and apply it to ``train`` and each of ``others``.

    Returns ``(train_reduced [N, d], [other_reduced [M, d], ...])`` float32.
    """
    check_matrix(train, "train embeddings")
    for o in others:
        check_matrix(o, "embeddings", cols=train.shape[1])
    if not 1 <= d <= train.shape[1]:
        raise MRLError(f"d must be in [1, {train.shape[1]}], got {d}.")
    if method == "pca":
        pca = PCA(n_components=d, svd_solver="full", random_state=seed).fit(train)
        return pca.transform(train).astype(np.float32), [pca.transform(o).astype(np.float32) for o in others]
    if method == "random":
        cols = np.sort(np.random.default_rng(seed).choice(train.shape[1], size=d, replace=False))
        return train[:, cols].astype(np.float32), [o[:, cols].astype(np.float32) for o in others]
    raise MRLError(f"unknown reduction {method!r}; choose one of {REDUCERS}.")
