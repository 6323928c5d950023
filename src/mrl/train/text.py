"""Matryoshka training of sentence-transformers encoders on the sentence-transformers Trainer.

``train_text(config, out_dir)`` builds a ``SentenceTransformerTrainer`` run from a ``task: text``
recipe (:class:`TextTrainConfig`). Three families of ``loss``:

* ``distill`` (the default recipe, ``configs/text_distill.yaml``): label-free adaptation that keeps the
  base model. The frozen base model (or ``teacher``) embeds the user's own texts once; the student is
  the encoder plus a linear layer (a sentence-transformers ``Dense``) initialised from PCA of those
  embeddings (``projection: pca``) or from a fitted unsupervised adaptor (``projection: adaptor``);
  every prefix learns to reproduce the teacher's full-width similarity structure on
  neighbour-structured batches (:class:`mrl.train.text_losses.PrefixDistillLoss`). With
  ``train_layers: N`` and ``max_steps > 0`` (``configs/text_distill_encoder.yaml``) the top N
  encoder layers train jointly with the projection; the teacher stays the frozen base model (its
  cached vectors), and the full-width prefix's own term (weighted ``full_weight``) is what holds the
  full-width geometry at the teacher's (``dropout: false`` so that it starts at exactly 0).
* ``mnrl``, ``cached_mnrl``, ``cosent``, ``mse_distill``: sentence-transformers' ``MatryoshkaLoss``
  around that base loss, on pairs (WordNet or a pair file) or, for ``mse_distill``, texts.
* ``classify``: Matryoshka cross-entropy of one class head per prefix on labelled texts
  (``wordnet-classes`` or a ``.jsonl`` of text/label; :mod:`mrl.train.text_classify`); the heads are
  saved in the model folder (``matryoshka_heads.safetensors``) for ``mrl cascade``.

Per-prefix losses combine through an :mod:`mrl.weighting` strategy. Checkpoints (model, optimizer,
scheduler, RNG, data position: the Trainer's own) are written every ``save_steps`` under
``OUT/checkpoints/``; so is the projection fit (``projection: rotation``/``adaptor``, the default
recipe's long phase: ``OUT/checkpoints/projection_fit.safetensors``, every ``save_steps`` fit steps or
once a minute, see :mod:`mrl.train.adaptor`); ``resume=True`` continues from the last of each, to the
same model as an uninterrupted run. bf16 autocast is used when
``bf16`` is true (default: where it is native, see :func:`mrl.precision.bf16_pays`). Multi-GPU: launch the same command with
``accelerate launch -m mrl.cli train ...`` or ``torchrun --nproc_per_node N -m mrl.cli train ...``;
the Trainer shards batches across processes.

The finished ``OUT`` is a sentence-transformers folder (``SentenceTransformer(OUT, truncate_dim=d)``;
pass ``normalize_embeddings=True`` to ``encode`` since prefixes must be re-normalised) with
``is_matryoshka``/``matryoshka_dimensions`` in its configs, a model card (``README.md``) stating the
dims and training data, ``matryoshka.json`` (recipe, statistics, the list of files written;
written last) and ``metrics.csv``. The folder's ``manifest.json`` (:mod:`mrl.io.ownership`) lists
every file with its size and SHA-256 (verified when mrl loads the model); the folder is locked for
the whole run and must be new, empty, or a previous text model of mrl (``overwrite``: its listed
files, checkpoints included, are removed just before the new run writes its first checkpoint;
nothing else in the folder is touched).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mrl.data.pairs import PairSet, load_pairs
from mrl.data.texts import load_texts
from mrl.data.wordnet import load_wordnet
from mrl.errors import MRLError
from mrl.io import MANIFEST, Output, open_output, read_json, write_csv, write_json, write_manifest, writer_lock
from mrl.models.rotation import mean_last_rotation
from mrl.models.text import MATRYOSHKA_FILE, TEXT_MODEL_KIND, append_projection, load_sentence_transformer, mark_matryoshka, model_dim, resolve_model_path
from mrl.models.text_encode import cached_encode
from mrl.nesting import validate_dims
from mrl.precision import bf16_pays
from mrl.progress import throttle_progress
from mrl.train.adaptor import AdaptorConfig, AdaptorResult, FitCheckpoint, fit_adaptor
from mrl.train.text_config import CHECKPOINTS, PROJECTIONS, TextTrainConfig, load_text_config
from mrl.train.text_losses import PrefixDistillLoss, WeightedMatryoshkaLoss, build_pair_loss

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

FIT_CHECKPOINT = "projection_fit.safetensors"  # under CHECKPOINTS: the projection fit's resumable state
__all__ = ["CHECKPOINTS", "PROJECTIONS", "TextTrainConfig", "TextTrainResult", "load_text_config", "train_text"]  # the recipe's names live in mrl.train.text_config


def load_training_pairs(cfg: TextTrainConfig) -> PairSet:
    if cfg.dataset == "wordnet":
        return load_wordnet(cfg.data_root, seed=cfg.seed, max_train=cfg.max_train).train
    if Path(cfg.dataset).is_dir():
        raise MRLError(f"loss {cfg.loss} trains on pairs, but {cfg.dataset} is a folder; give a pair file (anchor, positive[, negative]) or use loss: distill for unlabeled texts.")
    pairs = load_pairs(cfg.dataset)
    return pairs.subset(range(min(len(pairs), cfg.max_train))) if cfg.max_train else pairs


@dataclass
class TextTrainResult:
    """``steps``, ``seconds`` (Trainer wall-clock), ``steps_per_s``, ``history`` (logged rows),
    ``wall_seconds`` (the whole call: teacher encoding, projection fit and the steps); of the
    projection fit (``projection: rotation``/``adaptor``; 0 and empty when none ran): ``fit_steps``,
    ``fit_seconds`` and its last logged loss per prefix, ``fit_loss_per_dim`` (``{dim: loss}``)."""

    out_dir: Path
    steps: int
    seconds: float
    steps_per_s: float
    history: list[dict[str, float]]
    wall_seconds: float = float("nan")
    fit_steps: int = 0
    fit_seconds: float = 0.0
    fit_loss_per_dim: dict[int, float] = field(default_factory=dict)

    def summary(self, model: str, loss: str) -> str:
        """One line saying what the run did: the projection fit and/or the encoder steps."""
        parts = []
        if self.fit_steps:
            per_dim = ", ".join(f"{d}: {v:.3f}" for d, v in self.fit_loss_per_dim.items())
            parts.append(f"fitted the projection for {self.fit_steps} steps in {self.fit_seconds:.0f}s (final loss per dim: {per_dim})")
        if self.steps:
            last = self.history[-1] if self.history else {}
            per_dim = ", ".join(f"{k.split('@')[1]}: {v:.3f}" for k, v in last.items() if k.startswith("loss@"))
            parts.append(f"trained the encoder for {self.steps} steps in {self.seconds:.0f}s ({self.steps_per_s:.2f} steps/s; last loss per dim: {per_dim or 'not logged'})")
        elif not self.fit_steps:
            parts.append("no fitting step and no encoder step (the base model plus its initial projection)")
        else:
            parts.append("no encoder steps (frozen encoder)")
        return f"{model} ({loss}): " + "; ".join(parts) + f"; {self.wall_seconds:.0f}s in all."


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MRLError("device 'cuda' was asked for but CUDA is not available; use device=auto or cpu.")
    return name


def _bf16(cfg: TextTrainConfig, device: str) -> bool:
    if cfg.bf16 is not None:
        if cfg.bf16 and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
            raise MRLError("bf16: true but this GPU does not support bfloat16; set bf16: false.")
        return cfg.bf16
    return bf16_pays(device)


def _check_resume(out: Path, resume: bool) -> None:
    if not resume:
        return
    if (out / MATRYOSHKA_FILE).is_file():
        raise MRLError(f"{out} already holds a finished model; nothing to resume (use --overwrite to train again).")
    if not any((out / CHECKPOINTS).glob("checkpoint-*")) and not (out / CHECKPOINTS / FIT_CHECKPOINT).is_file():
        raise MRLError(f"no checkpoint to resume in {out / CHECKPOINTS}; run without --resume.")


def _adopt_legacy(out: Path) -> None:
    """Folders written before output manifests existed: ``matryoshka.json``'s file list (a finished
    model) or a ``checkpoints/`` folder of ``checkpoint-*`` (an interrupted run) proves what mrl wrote;
    record it as the folder's manifest so --overwrite/--resume treat it like a new-style output."""
    if (out / MANIFEST).exists() or not out.is_dir():
        return
    done = out / MATRYOSHKA_FILE
    listed: list[str] = []
    if done.is_file():
        doc = read_json(done)
        listed = [f for f in doc.get("files", []) if isinstance(f, str)] if isinstance(doc, dict) else []
    elif not any((out / CHECKPOINTS).glob("checkpoint-*")):
        return
    entries = {}
    for name in {*listed, MATRYOSHKA_FILE} if listed else set():
        p = out / name
        if p.is_dir():
            entries.update({str(f.relative_to(out)): None for f in p.rglob("*") if f.is_file()})
        elif p.is_file():
            entries[name] = None
    if (out / CHECKPOINTS).is_dir():
        entries[CHECKPOINTS + "/"] = None
    write_manifest(out / MANIFEST, {"format": TEXT_MODEL_KIND, "files": entries, "state": "adopted"})


def _teacher_embeddings(cfg: TextTrainConfig, texts: tuple[str, ...], base: Path, bf16: bool, model: SentenceTransformer | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(teacher embeddings ``[N, Dt]``, base-model embeddings ``[N, D]``) of the pool texts, cached.
    ``model``: the base model already loaded on the run's device (the student before any step), which
    then encodes them there (a GPU) instead of a fresh CPU copy."""
    enc = dict(cache_dir=cfg.cache_dir, max_seq_length=cfg.max_seq_length, progress=cfg.progress, bf16=bf16)
    base_emb = cached_encode(base, texts, **enc, model=model)
    if cfg.teacher is None:
        return base_emb, base_emb
    teacher_emb = cached_encode(resolve_model_path(cfg.teacher), texts, **enc)
    return teacher_emb, base_emb


def _projection_init(cfg: TextTrainConfig, x: np.ndarray, dims: tuple[int, ...], checkpoint: Callable[[], FitCheckpoint] | None = None) -> tuple[torch.Tensor, torch.Tensor | None, AdaptorResult | None]:
    """``(W [D_out, D_in], b [D_out] or None, the fit or None)`` of the linear layer: PCA of ``x`` or a fitted adaptor.

    ``checkpoint`` (called once, just before a fit starts: its first write) says where the fit
    checkpoints and whether it resumes (:class:`mrl.train.adaptor.FitCheckpoint`).

    ``pca`` and ``adaptor`` compute ``W (x - mu)``; PCA rows are the principal axes by decreasing
    variance. ``rotation`` is :func:`mrl.models.rotation.mean_last_rotation` with no bias: every
    prefix short of full width starts as a centred PCA projection, while the full-width map is
    orthogonal, so every full-width cosine (and ranking) is the base model's exactly; the trainer
    keeps it orthogonal (:class:`mrl.train.text_trainer.OrthogonalProjection`).
    """
    from mrl.models.adaptor import MatryoshkaAdaptor

    d_in, d_out = x.shape[1], dims[-1]
    if d_out > d_in:
        raise MRLError(f"matryoshka_dims end at {d_out} but the base model is {d_in}-d; a PCA/adaptor projection cannot add dimensions: end the dims at <= {d_in}.")

    def fitted(kind: str) -> AdaptorResult:
        # the recipe's `threads: null` (torch's default, for the encodings) fits on one thread: on two the fit is 1.4-1.7x faster
        # on the idle 2-core machine but 8.5x slower when any other job shares the cores (RESULTS, fit-speed); an explicit
        # `threads: N` applies to the fit too
        config = AdaptorConfig(sorted(set(dims) | {d_in}), kind=kind, steps=cfg.init_steps, lr=cfg.init_lr, orthogonal=cfg.init_orthogonal, seed=cfg.seed, progress=cfg.progress, threads=cfg.threads or 1)
        return fit_adaptor(x, config, checkpoint=checkpoint() if checkpoint is not None else None)

    if cfg.projection == "rotation":  # fitted only at the model's own width; narrower, the mean-last PCA rows
        if d_out == d_in and cfg.init_steps:
            fit = fitted("rotation")
            return fit.model.linear.weight.detach().clone(), None, fit
        return mean_last_rotation(torch.as_tensor(x))[:d_out].contiguous(), None, None
    fit = None
    if cfg.projection == "adaptor":
        if d_out != d_in:
            raise MRLError(f"projection: adaptor keeps the model width {d_in}; end matryoshka_dims at {d_in} or use projection: pca.")
        fit = fitted("linear")
        ad = fit.model
    else:
        ad = MatryoshkaAdaptor(d_in)
        ad.init_pca(torch.as_tensor(x))
    w = ad.linear.weight.detach()[:d_out].clone()
    return w, -(w @ ad.mean.detach()), fit


def _distill_setup(cfg: TextTrainConfig, model: SentenceTransformer, base: Path, device: str, bf16: bool, dims: tuple[int, ...], checkpoint: Callable[[], FitCheckpoint] | None = None) -> tuple[Any, torch.nn.Module, dict[str, Any], int]:
    """Texts, teacher table, projection, batch order and loss of a distill run (and its step count);
    ``checkpoint``: where the projection fit checkpoints (see :func:`_projection_init`)."""
    from mrl.train.text_data import batch_order, distill_dataset, neighbour_table, with_pseudo_queries

    texts = load_texts(cfg.dataset, max_texts=cfg.max_texts, seed=cfg.seed, data_root=cfg.data_root)
    if cfg.pseudo_queries:
        texts = with_pseudo_queries(texts)
    general_start = None
    if cfg.general_text:
        general = [t for t in load_texts(cfg.general_text, max_texts=cfg.max_texts, seed=cfg.seed + 1, data_root=cfg.data_root) if t not in set(texts)]
        general_start, texts = len(texts), texts + tuple(general)
    teacher, base_emb = _teacher_embeddings(cfg, texts, base, bf16, model)
    fit = None
    if cfg.projection != "none":
        w, b, fit = _projection_init(cfg, base_emb, dims, checkpoint)
        append_projection(model, w, b)
    elif dims[-1] != model_dim(model):
        raise MRLError(f"matryoshka_dims end at {dims[-1]} but the model is {model_dim(model)}-d; end them at the model width or use projection: pca.")
    n_domain = len(texts) if general_start is None else general_start
    total = cfg.max_steps if cfg.max_steps is not None else max(1, cfg.epochs * n_domain // cfg.batch_size)  # an epoch: as many texts as the domain pool holds
    order = np.zeros(0, dtype=np.int64)  # max_steps: 0 runs no batch
    if total:
        neigh = neighbour_table(teacher, max(1, cfg.neighbours))
        order = batch_order(neigh, total, cfg.batch_size, group=cfg.neighbours + 1, seed=cfg.seed, general_start=general_start, general_fraction=cfg.general_fraction)
    loss = PrefixDistillLoss(
        model, torch.as_tensor(teacher), dims, weighting=cfg.build_weighting(), tau=cfg.tau, sim_weight=cfg.sim_weight, rank_weight=cfg.rank_weight,
        rank_boost=cfg.rank_boost, rank_boost_max_dim=cfg.rank_boost_max_dim, full_weight=cfg.full_weight, pair_weight=cfg.pair_weight, scale=cfg.scale,
    )
    info = {"train_texts": len(texts), "general_texts": 0 if general_start is None else len(texts) - general_start, "teacher": cfg.teacher or str(cfg.model), "teacher_dim": int(teacher.shape[1])}
    if fit is not None:  # what the projection fit did (the summary and matryoshka.json report it)
        last = fit.history[-1] if fit.history else {}
        info.update({"fit_steps": fit.steps, "fit_seconds": fit.seconds, "fit_loss_per_dim": {int(k.split("@")[1]): v for k, v in last.items() if k.startswith("loss@")}})
        if fit.config is not None:
            info.update({"fit_batch_size": fit.config.batch_size, "fit_lr": fit.config.lr, "fit_orthogonal": fit.config.orthogonal, "fit_threads": fit.config.threads or torch.get_num_threads()})
    return distill_dataset(texts, order), loss, info, total


def _pair_setup(cfg: TextTrainConfig, model: SentenceTransformer, device: str, bf16: bool, dims: tuple[int, ...]) -> tuple[Any, torch.nn.Module, dict[str, Any]]:
    from datasets import Dataset

    if dims[-1] != model_dim(model):
        raise MRLError(f"matryoshka_dims end at {dims[-1]} but the model is {model_dim(model)}-d; loss {cfg.loss} trains the model's own width.")
    if cfg.loss == "classify":
        from mrl.data.labelled_texts import load_labelled_texts
        from mrl.train.text_classify import PrefixClassifierLoss

        if cfg.n_dims_per_step is not None:
            raise MRLError("n_dims_per_step applies to the pair losses; the classify loss evaluates every head on the shared batch (set n_dims_per_step: null).")

        labelled = load_labelled_texts(cfg.dataset, data_root=cfg.data_root)
        data = Dataset.from_dict({"text": list(labelled.texts), "label": labelled.labels.tolist()})
        loss = PrefixClassifierLoss(model, labelled.class_names, dims, weighting=cfg.build_weighting(), scale=cfg.head_scale, label_smoothing=cfg.label_smoothing, self_distill=cfg.self_distill)
        return data, loss, {"train_texts": len(labelled), "classes": len(labelled.class_names)}
    if cfg.loss == "mse_distill":
        texts = load_texts(cfg.dataset, max_texts=cfg.max_texts, seed=cfg.seed, data_root=cfg.data_root)
        teacher = cached_encode(resolve_model_path(cfg.teacher or cfg.model), texts, cfg.cache_dir, max_seq_length=cfg.max_seq_length, progress=cfg.progress, bf16=bf16)
        if teacher.shape[1] != model_dim(model):
            raise MRLError(f"mse_distill regresses the teacher's vectors, but the teacher is {teacher.shape[1]}-d and the student {model_dim(model)}-d; use loss: distill (compares similarities, any width) or a teacher of the same width.")
        data = Dataset.from_dict({"text": list(texts), "label": teacher.tolist()})
        info = {"train_texts": len(texts), "teacher": cfg.teacher or str(cfg.model)}
    elif cfg.loss == "cosent":
        from mrl.data.pairs import load_scored_pairs

        a, b, s = load_scored_pairs(cfg.dataset)
        data = Dataset.from_dict({"sentence1": list(a), "sentence2": list(b), "score": list(s)})
        info = {"train_pairs": len(a)}
    else:
        pairs = load_training_pairs(cfg)
        cols = {"anchor": list(pairs.anchor), "positive": list(pairs.positive)}
        if pairs.negative is not None:
            cols["negative"] = list(pairs.negative)
        data = Dataset.from_dict(cols)
        info = {"train_pairs": len(pairs)}
    base_loss = build_pair_loss(cfg.loss, model, scale=cfg.scale, mini_batch_size=cfg.mini_batch_size)
    loss = WeightedMatryoshkaLoss(model, base_loss, dims, cfg.build_weighting(), cfg.n_dims_per_step)
    return data, loss, info


def train_text(config: TextTrainConfig, out_dir: str | os.PathLike[str], *, overwrite: bool = False, resume: bool = False) -> TextTrainResult:
    """Train a Matryoshka text encoder with the sentence-transformers Trainer (see module docstring).

    Raises:
        OutputExistsError: ``out_dir`` holds results and neither ``overwrite`` nor ``resume``.
        MRLError: bad config, dims above the model width, unusable model folder or data, a
            non-finite loss, or ``resume`` without a checkpoint.
    """
    out = Path(out_dir)
    inputs = [resolve_model_path(config.model), *([resolve_model_path(config.teacher)] if config.teacher else [])]
    inputs += [Path(p) for p in (config.dataset, config.general_text) if p and p != "wordnet" and Path(p).exists()]
    with writer_lock(out):
        _adopt_legacy(out)
        _check_resume(out, resume)
        with open_output(out, TEXT_MODEL_KIND, overwrite=overwrite, append=resume, inputs=inputs) as writer:
            return _train_text(config, out, writer, resume=resume)


def _train_text(cfg: TextTrainConfig, out: Path, writer: Output, *, resume: bool) -> TextTrainResult:
    from mrl.train.text_trainer import OrthogonalProjection, run_trainer

    t_start = time.perf_counter()
    throttle_progress()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = _device(cfg.device)
    bf16 = _bf16(cfg, device)
    base = resolve_model_path(cfg.model)
    model = load_sentence_transformer(base, device=device)
    model.max_seq_length = cfg.max_seq_length
    dims = validate_dims(cfg.matryoshka_dims)
    if cfg.train_layers is not None:
        freeze_lower_layers(model, cfg.train_layers)
    if not cfg.dropout:
        disable_dropout(model)
    if cfg.loss == "distill":
        if cfg.n_dims_per_step is not None:
            raise MRLError("n_dims_per_step applies to the pair losses; the distill loss evaluates every prefix on the shared batch (set n_dims_per_step: null).")

        def fit_checkpoint() -> FitCheckpoint:  # the projection fit's checkpoint: the run's first write
            return FitCheckpoint(writer.claim_dir(CHECKPOINTS) / FIT_CHECKPOINT, resume=resume, every_steps=cfg.save_steps)

        data, loss, info, total = _distill_setup(cfg, model, base, device, bf16, dims, fit_checkpoint)
    else:
        data, loss, info = _pair_setup(cfg, model, device, bf16, dims)
        per_epoch = len(data) // cfg.batch_size
        if per_epoch == 0:
            raise MRLError(f"only {len(data)} training rows, fewer than batch_size={cfg.batch_size}; lower batch_size or add data.")
        total = cfg.max_steps or cfg.epochs * per_epoch
    callbacks = [OrthogonalProjection(model[-2].linear)] if cfg.loss == "distill" and cfg.projection == "rotation" else []
    writer.claim_dir(CHECKPOINTS)  # the first write: a previous model in `out` is removed here, not earlier
    if total:
        trained, history, steps, seconds = run_trainer(cfg, model, loss, data, out, total=total, device=device, bf16=bf16, resume=resume, dims=dims, callbacks=callbacks)
    else:  # max_steps: 0 (distill): the model is the base plus its fitted projection
        trained, history, steps, seconds = model.eval(), [], 0, 0.0
    wall = time.perf_counter() - t_start
    info.update({"steps": steps, "seconds": seconds, "steps_per_s": steps / seconds if seconds else float("nan"), "device": device, "bf16": bf16, "threads": torch.get_num_threads(), "setup_seconds": wall - seconds, "wall_seconds": wall})
    _save_final(cfg, trained, loss, out, dims, info, history, writer)
    return TextTrainResult(out_dir=out, steps=steps, seconds=seconds, steps_per_s=info["steps_per_s"], history=history, wall_seconds=wall, fit_steps=info.get("fit_steps", 0), fit_seconds=info.get("fit_seconds", 0.0), fit_loss_per_dim=info.get("fit_loss_per_dim", {}))


def freeze_lower_layers(model: SentenceTransformer, train_layers: int) -> None:
    """Freeze the embeddings and all but the top ``train_layers`` transformer layers.

    Raises:
        MRLError: the model has no ``encoder.layer`` stack (not a BERT-like transformer).
    """
    backbone = getattr(model[0], "auto_model", None)
    layers = getattr(getattr(backbone, "encoder", None), "layer", None)
    if backbone is None or layers is None:
        raise MRLError("train_layers needs a BERT-like transformer (auto_model.encoder.layer); set train_layers: null for this model.")
    if train_layers > len(layers):
        raise MRLError(f"train_layers={train_layers} but the model has {len(layers)} layers; use at most {len(layers)} or null.")
    keep = {id(p) for layer in list(layers)[len(layers) - train_layers :] for p in layer.parameters()}
    for p in backbone.parameters():
        p.requires_grad_(id(p) in keep)


def disable_dropout(model: torch.nn.Module) -> int:
    """Switch off every ``nn.Dropout`` of ``model`` (``p = 0``; the saved config keeps its rates, so a
    later fine-tune of the saved model gets them back). Returns how many layers were switched off.

    In train mode the distill student would otherwise differ from the teacher (the same model in eval
    mode, whose vectors are cached) before any step: with MiniLM's 0.1 rates the full-width geometry
    loss of an unchanged encoder is ~0.12 instead of 0, and the full-width term would push the encoder
    after dropout noise instead of holding it at the teacher.
    """
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    for m in layers:
        m.p = 0.0
    return len(layers)


def _save_final(cfg: TextTrainConfig, model: SentenceTransformer, loss: torch.nn.Module, out: Path, dims: tuple[int, ...], info: dict[str, Any], history: list[dict[str, float]], writer: Output) -> None:
    """Write the model into ``out`` (each file listed in the manifest, then moved into place;
    ``matryoshka.json`` last = complete)."""
    from mrl.train.divergence import check_finite_weights
    from mrl.train.text_card import model_card_section, prepare_card_data

    check_finite_weights(model)
    tmp = writer.claim_dir(".final.tmp")
    writer.clear_folder(".final.tmp")  # a killed earlier save's leftovers; a file mrl cannot prove it wrote stops the save
    prepare_card_data(model, cfg, out)  # the snippet loads `out` itself; the base model is named
    model._model_card_text = None  # else sentence-transformers re-saves the base model's own card (its usage code omits our layer) when no Trainer ran
    model.save(str(tmp), model_name=f"Matryoshka {Path(str(cfg.model)).name} ({cfg.loss})", create_model_card=True)
    mark_matryoshka(tmp, dims)
    if getattr(loss, "heads", None) is not None:  # loss: classify
        from mrl.models.text_heads import HEADS_FILE, save_text_heads

        save_text_heads(tmp / HEADS_FILE, loss.heads, loss.class_names, loss.scale)
    card = tmp / "README.md"
    text = card.read_text() if card.is_file() else ""
    head, body = "", text
    if text.startswith("---\n") and "\n---\n" in text[4:]:  # keep the card's YAML front matter first
        end = text.index("\n---\n", 4) + 5
        head, body = text[:end], text[end:]
    card.write_text(head + "\n" + model_card_section(cfg, dims, info, out) + "\n" + body)
    if history:
        write_csv(tmp / "metrics.csv", history)
    names = sorted(p.name for p in tmp.iterdir())
    for f in sorted(tmp.rglob("*")):  # write-ahead: every file is listed before it appears in `out`
        if f.is_file():
            writer.claim(str(f.relative_to(tmp)))
    for name in names:
        dst = out / name
        if dst.is_dir():
            writer.clear_folder(name)  # only files this output listed; a foreign file stops the save
        os.replace(tmp / name, dst)
    writer.remove(".final.tmp")
    writer.remove(CHECKPOINTS)
    record = {
        "matryoshka_dims": list(dims), "embedding_dim": dims[-1], "base_model": str(cfg.model), "truncate_then_normalize": True,
        "loss": loss.get_config_dict(), "config": cfg.to_dict(), "files": names + [MATRYOSHKA_FILE], **info,
    }
    with writer.file(MATRYOSHKA_FILE) as p:
        write_json(p, record)
