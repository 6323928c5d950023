"""Post-hoc baselines that shrink a normal (fixed-feature) embedding to ``d`` dims.

* ``pca``: project onto the top-``d`` principal components (fit once on the training embeddings,
  scikit-learn's PCA; the components are nested, so every ``d`` is a slice of one fit).
* ``random``: keep a random (seeded) subset of ``d`` coordinates.

Both return new arrays; the inputs are never modified. The evaluation then fits a linear probe
on the reduced features (the head accuracy of these baselines) and runs the same retrieval.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA

from mrl.checks import check_matrix
from mrl.errors import MRLError


@dataclass(frozen=True)
class Baseline:
    """A registered post-hoc baseline: its report ``label``, what it is (``description``, with
    ``{source}`` standing for the full-width model it reduces) and its reducer."""

    name: str
    label: str
    description: str
    reduce: Callable[..., Iterator[tuple[int, np.ndarray, list[np.ndarray]]]]


# name -> Baseline; filled by @register_baseline (one source of truth for names, labels and texts).
BASELINES: dict[str, Baseline] = {}


def register_baseline(name: str, label: str, description: str) -> Callable[[Callable[..., Iterator[tuple[int, np.ndarray, list[np.ndarray]]]]], Callable[..., Iterator[tuple[int, np.ndarray, list[np.ndarray]]]]]:
    """Decorator: register a reducer ``fn(train, others, dims, seed) -> (d, train_d, others_d)*``."""

    def wrap(fn: Callable[..., Iterator[tuple[int, np.ndarray, list[np.ndarray]]]]) -> Callable[..., Iterator[tuple[int, np.ndarray, list[np.ndarray]]]]:
        BASELINES[name] = Baseline(name, label, description, fn)
        return fn

    return wrap


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
    if method not in BASELINES:
        raise MRLError(f"unknown reduction {method!r}; choose one of {tuple(BASELINES)}.")
    for d in dims:
        if not 1 <= d <= train.shape[1]:
            raise MRLError(f"d must be in [1, {train.shape[1]}], got {d}.")
    yield from BASELINES[method].reduce(train, others, dims, seed)


@register_baseline("pca", "PCA", "PCA: the {source} embeddings projected on their top-d principal components (fit on the train split), with a linear probe for head top-1.")
def _pca(train: np.ndarray, others: list[np.ndarray], dims: Sequence[int], seed: int) -> Iterator[tuple[int, np.ndarray, list[np.ndarray]]]:
    projected = pca_transform(train, train, *others)  # fit once: the components are nested
    for d in dims:
        tr, *rest = (np.ascontiguousarray(p[:, :d]) for p in projected)
        yield int(d), tr, list(rest)


@register_baseline("random", "Random", "Random: a random d-subset of the {source} embedding coordinates, with a linear probe for head top-1.")
def _random(train: np.ndarray, others: list[np.ndarray], dims: Sequence[int], seed: int) -> Iterator[tuple[int, np.ndarray, list[np.ndarray]]]:
    for d in dims:
        cols = np.sort(np.random.default_rng(seed).choice(train.shape[1], size=d, replace=False))
        yield int(d), train[:, cols].astype(np.float32), [o[:, cols].astype(np.float32) for o in others]


REDUCERS = tuple(BASELINES)  # the registered baseline names


def reduce_embeddings(method: str, train: np.ndarray, others: list[np.ndarray], d: int, *, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """Fit ``method`` on ``train`` ``[N, D]`` and apply it to ``train`` and each of ``others``.

    Returns ``(train_reduced [N, d], [other_reduced [M, d], ...])`` float32.
    """
    _, tr, rest = next(reductions(method, train, others, [d], seed=seed))
    return tr, rest
