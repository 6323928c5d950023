"""Fitting the post-hoc Matryoshka adaptor (:class:`mrl.models.adaptor.MatryoshkaAdaptor`).

``W`` starts as the PCA rotation of the training vectors, so training starts exactly at the PCA
baseline and moves away only where the objective improves.

Unsupervised objective, at each prefix ``m`` (combined over prefixes by a :mod:`mrl.weighting`
strategy through :class:`mrl.train.geometry_loss.PrefixGeometryLoss`), on a batch made of random anchors and
their true nearest neighbours (so local neighbourhoods are present in every batch):

* **similarity matching**: mean ``|S_m - S|`` over pairs, ``S`` = cosine similarities of the original
  full vectors, ``S_m`` = cosine similarities of the adapted prefixes;
* **neighbour ranking**: KL(softmax(S / tau) || softmax(S_m / tau)) per row, a listwise
  distillation that makes each row's top-k neighbours rank the same way at every prefix;

plus, when query/document pairs are given, the supervised in-batch-negatives ranking loss on
``(f(q)[:, :m], f(d)[:, :m])``; and, when class labels are given, a Matryoshka cross-entropy:
one linear class head per prefix reads ``f(x)[:, :m]`` (dropout ``dropout`` in training), the heads
are trained with the adaptor and saved with it (:meth:`mrl.models.adaptor.MatryoshkaAdaptor.logits`),
so the adaptive cascade can classify from the smallest confident prefix. With labels, set
``sim_weight = rank_weight = 0`` for a purely supervised fit, or keep them to also keep the geometry.

A long fit (the default text recipe's rotation fit runs for minutes) is resumable: with
``checkpoint=PATH`` the whole state (adaptor, optimizer, scheduler, loss weighting, torch/numpy RNGs,
the batch sampler's generator, the step and the history; :mod:`mrl.train.checkpoint`'s one-file
layout) is written atomically every ``checkpoint_steps`` steps or ``checkpoint_seconds`` seconds,
whichever comes first, and at the end; ``resume=True`` continues from it to the same result as an
uninterrupted fit (the checkpoint carries a fingerprint of the data and config, checked on resume).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mrl.checks import check_labels, check_matrix
from mrl.errors import MRLError
from mrl.io import check_output, writer_lock
from mrl.losses import MatryoshkaEmbeddingLoss, MatryoshkaLoss
from mrl.models.adaptor import ADAPTOR_KIND, KINDS, MatryoshkaAdaptor, save_adaptor
from mrl.models.rotation import project_orthogonal_
from mrl.nesting import validate_dims
from mrl.progress import progress
from mrl.train.checkpoint import load_checkpoint, restore, save_checkpoint
from mrl.train.divergence import check_finite_loss, check_finite_weights
from mrl.train.geometry_loss import GeometryLoss, PrefixGeometryLoss
from mrl.weighting import create_weighting

# How a rotation fit keeps W orthogonal. "cayley": W = W0 Q(A), Q the Cayley transform of a skew A (torch's orthogonal
# parametrization), so every step moves along the rotations; "polar": AdamW on W itself, then the nearest orthogonal
# matrix (mrl.models.rotation.project_orthogonal_). Measured in benchmarks/RESULTS.md (fit-speed).
ORTHOGONAL_MAPS = ("cayley", "polar")


@dataclass
class AdaptorConfig:
    """Hyper-parameters of :func:`fit_adaptor`. ``matryoshka_dims`` must end at the input width."""

    matryoshka_dims: list[int]
    kind: str = "linear"
    hidden: int | None = None
    residual_dim: int | None = None  # kind residual: leading coordinates the residual MLP may change (None: min(64, D))
    residual_bend: float | None = None  # kind residual: cap on the bend's length relative to those coordinates' (None: 0.3)
    orthogonal: str = "cayley"  # kinds rotation and residual: how W stays orthogonal, "cayley" (torch's parametrization) or "polar" (projected AdamW)
    steps: int = 1000
    batch_size: int = 512
    neighbours: int = 7
    lr: float = 1e-3
    tau: float = 0.05
    sim_weight: float = 1.0
    rank_weight: float = 1.0
    supervised_weight: float = 0.0
    label_weight: float = 0.0  # Matryoshka cross-entropy of the class heads (needs labels)
    dropout: float = 0.0  # on the adapted vectors before the class heads, in training only
    weight_decay: float = 0.0  # AdamW decoupled weight decay on the adaptor and its heads
    scale: float = 20.0
    weighting: str = "uniform"
    weighting_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    threads: int | None = 1  # torch threads of the fit; None: every core torch uses (1.4-1.7x one thread on an idle 2-core CPU, 8.5x slower than one with other jobs on the cores)
    progress: bool = True

    def __post_init__(self) -> None:
        self.matryoshka_dims = list(validate_dims(self.matryoshka_dims))
        if self.kind not in KINDS:
            raise MRLError(f"adaptor kind must be one of {KINDS}, got {self.kind!r}.")
        if self.residual_dim is not None and (self.kind != "residual" or isinstance(self.residual_dim, bool) or not isinstance(self.residual_dim, int) or self.residual_dim < 1):
            raise MRLError(f"residual_dim must be a positive integer and is an option of kind 'residual' only; got {self.residual_dim!r} with kind {self.kind!r}.")
        if self.residual_bend is not None and (self.kind != "residual" or isinstance(self.residual_bend, bool) or not isinstance(self.residual_bend, (int, float)) or not 0 < self.residual_bend < float("inf")):
            raise MRLError(f"residual_bend must be a finite number > 0 (e.g. 0.3) and is an option of kind 'residual' only; got {self.residual_bend!r} with kind {self.kind!r}.")
        if self.orthogonal not in ORTHOGONAL_MAPS:
            raise MRLError(f"orthogonal must be one of {ORTHOGONAL_MAPS}, got {self.orthogonal!r}.")
        for name in ("steps", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise MRLError(f"{name} must be a positive integer, got {v!r}.")
        if self.neighbours < 0 or self.neighbours >= self.batch_size:
            raise MRLError(f"neighbours must be in [0, batch_size), got {self.neighbours}.")
        if min(self.sim_weight, self.rank_weight, self.supervised_weight, self.label_weight, self.weight_decay) < 0 or not self.lr > 0 or not self.tau > 0:
            raise MRLError("loss weights and weight_decay must be >= 0, lr > 0 and tau > 0.")
        if not 0.0 <= self.dropout < 1.0:
            raise MRLError(f"dropout must be in [0, 1), got {self.dropout}.")
        if self.sim_weight == self.rank_weight == self.supervised_weight == self.label_weight == 0:
            raise MRLError("every loss weight is 0, so nothing would be trained; set sim_weight/rank_weight (geometry), supervised_weight (pairs) or label_weight (labels).")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class AdaptorResult:
    """The trained ``model``, its folder (``out_dir``; None when not saved), wall-clock, loss history and the fit's ``config``."""

    model: MatryoshkaAdaptor
    out_dir: Path | None
    seconds: float
    steps: int
    history: list[dict[str, float]]
    config: AdaptorConfig | None = None


def _neighbour_table(x: np.ndarray, k: int) -> np.ndarray:
    """Ids ``[N, k]`` of each row's nearest neighbours by cosine (self excluded), via FAISS."""
    from mrl.embeddings import l2_normalize
    from mrl.knn import knn_search  # the same exact FAISS search the evaluation uses

    xn = l2_normalize(x)
    _, ids = knn_search(xn, xn, min(k + 1, x.shape[0]), metric="ip")
    return ids[:, 1:]


@dataclass(frozen=True)
class FitCheckpoint:
    """Where and how often :func:`fit_adaptor` checkpoints; ``resume``: continue from ``path`` if it exists."""

    path: Path
    resume: bool = False
    every_steps: int = 200
    every_seconds: float = 60.0


def fit_adaptor(x: np.ndarray, config: AdaptorConfig, out_dir: str | os.PathLike[str] | None = None, *, pairs: tuple[np.ndarray, np.ndarray] | None = None, labels: np.ndarray | None = None, overwrite: bool = False, inputs: list[Any] | None = None, checkpoint: FitCheckpoint | None = None) -> AdaptorResult:
    """Train a :class:`MatryoshkaAdaptor` on frozen embeddings and save it to ``out_dir``.

    Args:
        x: frozen embeddings ``[N, D]`` (e.g. corpus + queries, or an API's vectors).
        config: :class:`AdaptorConfig`; ``matryoshka_dims[-1]`` must equal ``D``.
        out_dir: folder for ``adaptor.safetensors`` + ``adaptor.json`` (None: do not save).
        pairs: optional ``(queries [P, D], documents [P, D])``, row ``i`` relevant to row ``i``,
            for the supervised ranking term (weight ``config.supervised_weight``).
        labels: optional class ids ``[N]`` (int, ``0..C-1``), one per row of ``x``: the adaptor gets one
            class head per prefix, trained with weight ``config.label_weight`` and saved with it.
        overwrite: replace an existing adaptor folder (only a previous adaptor, never other files).
        inputs: files the caller read ``x``/``pairs`` from; the save refuses to replace them.
        checkpoint: checkpoint the fit there (see the module docstring); with ``resume`` and an
            existing file, continue from it (a checkpoint of another fit raises CheckpointError).

    Returns:
        :class:`AdaptorResult` with the trained module at ``result.model``.
    """
    cfg = config
    check_matrix(x, "embeddings")
    n, dim = x.shape
    dims = validate_dims(cfg.matryoshka_dims, dim)
    if pairs is not None:
        q, d = pairs
        check_matrix(q, "query embeddings", cols=dim)
        check_matrix(d, "document embeddings", cols=dim)
        if q.shape[0] != d.shape[0] or q.shape[0] < 2:
            raise MRLError(f"query and document embeddings must pair row for row (>= 2 rows), got {q.shape[0]} and {d.shape[0]}.")
    if cfg.supervised_weight and pairs is None:
        raise MRLError("supervised_weight > 0 needs query/document pairs; pass pairs=(queries, docs) or set it to 0.")
    if labels is not None:
        check_labels(labels, n, "class labels")
        if cfg.label_weight <= 0:
            raise MRLError("class labels were given but label_weight is 0, so they would be ignored; set label_weight > 0 (e.g. 1.0).")
        if int(np.asarray(labels).max()) < 1:
            raise MRLError("class labels hold a single class; a classifier needs at least 2 (ids 0..C-1).")
    elif cfg.label_weight:
        raise MRLError("label_weight > 0 needs class labels; pass labels=[N] integer ids or set it to 0.")
    if n < 2:
        raise MRLError("need at least 2 embeddings to fit an adaptor.")
    if dim < 2:
        raise MRLError(f"the embeddings have {dim} column; an adaptor needs vectors of at least 2 dims to nest prefixes.")
    if cfg.residual_dim is not None and cfg.residual_dim > dim:
        raise MRLError(f"residual_dim {cfg.residual_dim} is above the embedding width {dim}; the residual changes the leading residual_dim coordinates, so use <= {dim} (e.g. 64).")
    out = Path(out_dir) if out_dir is not None else None
    if checkpoint is not None and (checkpoint.every_steps <= 0 or not checkpoint.every_seconds > 0):
        raise MRLError(f"checkpoint every_steps and every_seconds must be positive, got {checkpoint.every_steps} and {checkpoint.every_seconds}.")
    if out is None:
        return _fit_threads(x, cfg, dims, None, pairs, labels, overwrite=overwrite, inputs=inputs, checkpoint=checkpoint)
    with writer_lock(out):
        check_output(out, ADAPTOR_KIND, overwrite=overwrite, staged=True, inputs=inputs or [])  # fail before fitting
        return _fit_threads(x, cfg, dims, out, pairs, labels, overwrite=overwrite, inputs=inputs, checkpoint=checkpoint)


def _fingerprint(cfg: AdaptorConfig, arrays: list[np.ndarray | None]) -> str:
    """SHA-256 of the fit's config (less progress/threads, which do not change the result) and data."""
    h = hashlib.sha256(json.dumps({k: v for k, v in cfg.to_dict().items() if k not in ("progress", "threads")}, sort_keys=True).encode())
    for a in arrays:
        if a is not None:
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(a.data)
    return h.hexdigest()


def _fit_threads(x: np.ndarray, cfg: AdaptorConfig, dims: tuple[int, ...], out: Path | None, pairs: tuple[np.ndarray, np.ndarray] | None, labels: np.ndarray | None, *, overwrite: bool, inputs: list[Any] | None, checkpoint: FitCheckpoint | None = None) -> AdaptorResult:
    # Measured on the 2-core CPU (benchmarks/fit_speed.py, 10,000 vectors, 300 steps): idle, two threads fit 1.6-1.7x
    # faster than one (rotation 9.7 vs 16.3 s, linear 6.6 vs 10.6 s); with other jobs on the cores, even at nice 19, two
    # OpenMP threads wait on each other at every barrier: the Cayley fit took 138.6 s at two threads against 16.3 s at
    # one. One thread is the default: a few seconds slower on an idle machine, never minutes slower on a busy one.
    saved_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _fit(x, cfg, dims, out, pairs, labels, overwrite=overwrite, inputs=inputs, checkpoint=checkpoint)
    finally:
        torch.set_num_threads(saved_threads)


def _fit(x: np.ndarray, cfg: AdaptorConfig, dims: tuple[int, ...], out: Path | None, pairs: tuple[np.ndarray, np.ndarray] | None, labels: np.ndarray | None, *, overwrite: bool, inputs: list[Any] | None, checkpoint: FitCheckpoint | None = None) -> AdaptorResult:
    n, dim = x.shape
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    num_classes = int(np.asarray(labels).max()) + 1 if labels is not None else None
    model = MatryoshkaAdaptor(dim, cfg.kind, cfg.hidden, num_classes=num_classes, head_dims=dims if num_classes else None, residual_dim=cfg.residual_dim, residual_bend=cfg.residual_bend)
    model.init_pca(xt)
    cayley = cfg.kind in ("rotation", "residual") and cfg.orthogonal == "cayley"  # residual: its W is a rotation too
    if cayley:
        _parametrize_orthogonal(model.linear)
    g = len(dims)
    # The full width stays in a rotation's loss although its cosines cannot change: with AdamW + projection its
    # Euclidean gradient (normal to the rotations) still feeds Adam's second moments, and leaving it out changed
    # the fit (RESULTS, fit-speed: man pages 8-d +3.9, WordNet 32-d -3.6 points).
    geometry = GeometryLoss(cfg)
    unsup = PrefixGeometryLoss(dims, geometry, weighting=create_weighting(cfg.weighting, g, **cfg.weighting_kwargs))
    sup = MatryoshkaEmbeddingLoss(dims, lambda a, p: _in_batch(a, p, cfg.scale)) if pairs is not None and cfg.supervised_weight else None
    classify = MatryoshkaLoss(dims, weighting=create_weighting(cfg.weighting, g, **cfg.weighting_kwargs)) if num_classes else None
    yt = torch.as_tensor(np.asarray(labels, dtype=np.int64)) if labels is not None else None
    dropout = torch.nn.Dropout(cfg.dropout)
    geometric = bool(cfg.sim_weight or cfg.rank_weight)
    params = [*model.parameters(), *unsup.parameters(), *(classify.parameters() if classify is not None else ())]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.steps)

    per_anchor = cfg.neighbours + 1
    n_anchor = max(1, cfg.batch_size // per_anchor)
    neigh = _neighbour_table(x, cfg.neighbours) if cfg.neighbours else np.zeros((n, 0), dtype=np.int64)
    xn_full = F.normalize(xt, dim=1)
    pq = pd = None
    if sup is not None and pairs is not None:
        pq, pd = (torch.as_tensor(np.asarray(a, dtype=np.float32)) for a in pairs)
    history: list[dict[str, float]] = []
    losses = torch.nn.ModuleDict({"unsup": unsup, **({"classify": classify} if classify is not None else {})})
    start, spent = 0, 0.0
    fingerprint = _fingerprint(cfg, [x, *(pairs or (None, None)), labels]) if checkpoint is not None else ""
    if checkpoint is not None and checkpoint.resume and checkpoint.path.is_file():
        start, spent, history = _resume(checkpoint.path, fingerprint, rng, model=model, optimizer=optimizer, scheduler=schedule, losses=losses)

    def save(step: int, elapsed: float) -> None:
        assert checkpoint is not None
        extra = {"fingerprint": fingerprint, "sampler_rng": rng.bit_generator.state, "seconds": elapsed}
        save_checkpoint(checkpoint.path, model=model, optimizer=optimizer, scheduler=schedule, weighting=losses, epoch=step, config=cfg.to_dict(), history=history, extra=extra)

    t0 = time.perf_counter() - spent
    last_save = time.perf_counter()
    model.train()
    for step in progress(range(start, cfg.steps), desc="adaptor", unit="step", disable=not cfg.progress, total=cfg.steps, initial=start):
        anchors = rng.choice(n, size=min(n_anchor, n), replace=False)
        idx = np.unique(np.concatenate([anchors, neigh[anchors].ravel()]))
        idx = idx[idx >= 0]
        z = model(xt[idx])
        parts: dict[str, Any] = {}  # history prefix -> (dims, per-dim losses) of that term
        total = z.new_zeros(())
        if geometric:
            geometry.target = xn_full[idx] @ xn_full[idx].T
            res = unsup(z)
            check_finite_loss(res, dims, f"step {step + 1}")
            total, parts["loss"] = res.total, (dims, res.per_dim)
        if classify is not None and yt is not None and model.heads is not None:
            cls_res = classify(model.heads(dropout(z)), yt[idx])
            check_finite_loss(cls_res, dims, f"step {step + 1} (class heads)")
            total, parts["ce"] = total + cfg.label_weight * cls_res.total, (dims, cls_res.per_dim)
        if sup is not None and pq is not None and pd is not None:
            j = rng.choice(pq.shape[0], size=min(cfg.batch_size // 2, pq.shape[0]), replace=False)
            sup_res = sup(model(pq[j]), model(pd[j]))
            check_finite_loss(sup_res, dims, f"step {step + 1} (supervised term)")
            total = total + cfg.supervised_weight * sup_res.total
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        schedule.step()
        if cfg.kind in ("rotation", "residual") and not cayley:
            project_orthogonal_(model.linear.weight)
        if (step + 1) % max(1, cfg.steps // 20) == 0 or step + 1 == cfg.steps:
            history.append({"step": step + 1, "loss": float(total.item()), **{f"{name}@{m}": float(v) for name, (term_dims, per_dim) in parts.items() for m, v in zip(term_dims, per_dim.tolist())}})
        if checkpoint is not None and step + 1 < cfg.steps and ((step + 1) % checkpoint.every_steps == 0 or time.perf_counter() - last_save >= checkpoint.every_seconds):
            save(step + 1, time.perf_counter() - t0)
            last_save = time.perf_counter()
    seconds = time.perf_counter() - t0
    if checkpoint is not None and start < cfg.steps:  # the finished fit: a resume after a later kill returns it at once
        save(cfg.steps, seconds)
    if cayley:  # back to a plain (orthogonal) weight: the saved format is the same for every rotation fit
        torch.nn.utils.parametrize.remove_parametrizations(model.linear, "weight", leave_parametrized=True)
        project_orthogonal_(model.linear.weight)  # float32 rounding of the Cayley map (~1e-6) squared away
    model.eval()
    check_finite_weights(model, "adaptor")
    result = AdaptorResult(model=model, out_dir=out, seconds=seconds, steps=cfg.steps, history=history, config=cfg)
    if out is not None:
        save_adaptor(model, cfg.to_dict(), out, extra={"train_rows": n, "seconds": seconds, "pairs": 0 if pairs is None else int(pairs[0].shape[0]), "labelled_rows": 0 if labels is None else n, "history": history}, overwrite=overwrite, inputs=inputs)
    return result


def _parametrize_orthogonal(linear: torch.nn.Linear) -> None:
    """Make ``linear.weight`` a Cayley-parametrized rotation that starts at its current (orthogonal) value."""
    start = linear.weight.detach().clone()
    torch.nn.utils.parametrizations.orthogonal(linear, orthogonal_map="cayley")
    with torch.no_grad():
        linear.weight = start  # right-inverse: the base becomes ``start``, the skew part 0


def _resume(path: Path, fingerprint: str, rng: np.random.Generator, **states: Any) -> tuple[int, float, list[dict[str, float]]]:
    """Restore a fit checkpoint into ``states`` (model, optimizer, scheduler, losses) and ``rng``;
    returns (steps done, seconds spent, history).

    Raises:
        CheckpointError: the file is corrupted or was written by a fit of other data or config.
    """
    from mrl.errors import CheckpointError

    tensors, state = load_checkpoint(path)
    extra = state.get("extra") or {}
    if extra.get("fingerprint") != fingerprint:
        raise CheckpointError(f"{path} is a checkpoint of another fit (other data or settings); resume with the same data and config, or start again without --resume.")
    restore(tensors, state, model=states["model"], optimizer=states["optimizer"], scheduler=states["scheduler"], weighting=states["losses"])
    rng.bit_generator.state = extra["sampler_rng"]
    return int(state["epoch"]), float(extra.get("seconds", 0.0)), list(state["history"])


def _in_batch(a: torch.Tensor, p: torch.Tensor, scale: float) -> torch.Tensor:
    from mrl.losses import in_batch_negatives_loss

    return in_batch_negatives_loss(a, p, scale=scale)


