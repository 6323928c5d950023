"""Matryoshka class heads of a text model trained with ``loss: classify``.

One linear head per prefix (:class:`mrl.heads.MatryoshkaLinear`, independent heads as in MRL) reads
the first ``m`` dims of the model's unit-norm full-width embedding, multiplied by ``scale``::

    logits_m = W_m (scale * e[:m]) + b_m,     e = normalize(model.encode(text))

so a cascade (:mod:`mrl.adaptive.cascade`) that stops at ``m`` needs only the stored prefix ``e[:m]``
(not re-normalised: the heads were trained on the raw prefix of the unit vector, as MRL's heads read
the raw prefix of the feature vector).

Saved as ``matryoshka_heads.safetensors`` inside the sentence-transformers folder: ``weight``
``[G, C, D]`` and ``bias`` ``[G, C]``, with the dims, the class names and the scale in its metadata
(and its content hash, verified on load).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mrl.checks import check_matrix
from mrl.errors import CheckpointError, MRLError
from mrl.heads import MatryoshkaLinear
from mrl.io import load_safetensors, save_safetensors

HEADS_FILE = "matryoshka_heads.safetensors"


def heads_input(embeddings: torch.Tensor, scale: float) -> torch.Tensor:
    """What the heads read, in training and at inference alike: the L2-normalised rows times ``scale``.

    Shape: ``[N, D]`` -> ``[N, D]``.
    """
    return torch.nn.functional.normalize(embeddings, dim=-1) * scale


@dataclass
class TextHeads:
    """Class heads over a text model's prefixes: ``heads`` (``[D] -> [G, C]``), ``class_names``, ``scale``
    (and ``refit``: the per-prefix report when ``mrl cascade refit-heads`` fitted them, else None)."""

    heads: MatryoshkaLinear
    class_names: tuple[str, ...]
    scale: float
    refit: list[dict] | None = None

    @property
    def dims(self) -> tuple[int, ...]:
        return self.heads.matryoshka_dims

    def logits(self, embeddings: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Every head's logits. Shape: full-width embeddings ``[N, D]`` -> ``[G, N, C]`` float32.

        Rows are L2-normalised here (the model's own output already is); pass full-width vectors.
        """
        x = self.head_inputs(embeddings)
        out = np.empty((len(self.dims), x.shape[0], self.heads.num_classes), dtype=np.float32)
        with torch.inference_mode():
            for i in range(0, x.shape[0], batch_size):
                out[:, i : i + batch_size] = self.heads(torch.from_numpy(x[i : i + batch_size])).numpy()
        return out

    def head_inputs(self, embeddings: np.ndarray) -> np.ndarray:
        """What the heads read: the L2-normalised rows times ``scale``. Shape: ``[N, D]`` -> ``[N, D]`` float32."""
        x = np.asarray(embeddings, dtype=np.float32)
        check_matrix(x, "embeddings")
        if x.shape[1] != self.heads.in_features:
            raise MRLError(f"the heads read full-width embeddings [N, {self.heads.in_features}], got shape {x.shape}; encode with the same model and no truncate_dim.")
        return heads_input(torch.from_numpy(x), self.scale).numpy()


def save_text_heads(path: str | os.PathLike[str], heads: MatryoshkaLinear, class_names: tuple[str, ...], scale: float, *, refit: list[dict] | None = None) -> None:
    """Write ``heads`` (atomically, safetensors) with their dims, classes and scale in the metadata
    (and, for refitted heads, the per-prefix report of :func:`refit_text_heads` under ``refit``)."""
    if len(class_names) != heads.num_classes:
        raise MRLError(f"{len(class_names)} class names for {heads.num_classes} heads' classes.")
    meta = {"matryoshka_dims": json.dumps(list(heads.matryoshka_dims)), "class_names": json.dumps(list(class_names)), "scale": repr(float(scale)), "in_features": str(heads.in_features)}
    if refit is not None:
        meta["refit"] = json.dumps(refit)
    save_safetensors(path, {k: v for k, v in heads.state_dict().items()}, meta)


def load_text_heads(folder: str | os.PathLike[str]) -> TextHeads:
    """The heads saved in a text model folder.

    Raises:
        CheckpointError: no heads in the folder (not trained with ``loss: classify``), or a corrupted file.
    """
    path = Path(folder) / HEADS_FILE
    if not path.is_file():
        raise CheckpointError(f"{folder} has no class heads ({HEADS_FILE}); train the model with `loss: classify` on labelled texts.")
    tensors, meta = load_safetensors(path)
    try:
        dims = [int(d) for d in json.loads(meta["matryoshka_dims"])]
        names = tuple(str(c) for c in json.loads(meta["class_names"]))
        heads = MatryoshkaLinear(int(meta["in_features"]), len(names), dims)
        heads.load_state_dict(tensors)
        scale = float(meta["scale"])
        refit = json.loads(meta["refit"]) if "refit" in meta else None
    except (KeyError, TypeError, ValueError, RuntimeError, MRLError) as exc:
        raise CheckpointError(f"{path} does not hold valid class heads ({exc}); retrain the model with `loss: classify`.") from exc
    heads.eval()
    return TextHeads(heads, names, scale, refit)


def refit_text_heads(folder: str | os.PathLike[str], train_texts: str | os.PathLike[str], val_texts: str | os.PathLike[str], *, data_root: str | os.PathLike[str] | None = None, weight_decays: Sequence[float] | None = None, progress: bool = False) -> TextHeads:
    """Refit a text model's class heads on its frozen embeddings (:mod:`mrl.adaptive.head_refit`).

    Args:
        folder: a model trained with ``loss: classify`` (its heads give the dims, classes and scale).
        train_texts: labelled texts to fit on (``wordnet-classes:train`` or a ``.jsonl``; usually the
            training texts), every class present.
        val_texts: labelled texts that choose each prefix's weight decay: not trained on, and not
            the texts a cascade will be calibrated or reported on.

    Returns:
        The refitted :class:`TextHeads`; ``refit`` holds the per-prefix report, with the two texts'
        names. Nothing is written.
    """
    from mrl.adaptive.head_refit import WEIGHT_DECAYS, refit_prefix_heads
    from mrl.data.labelled_texts import load_labelled_texts
    from mrl.models.text import load_sentence_transformer
    from mrl.models.text_encode import encode_texts

    if str(train_texts) == str(val_texts):
        raise MRLError(f"the validation texts are the training texts ({val_texts}); choose the weight decays on other rows, e.g. wordnet-classes:val.")
    old = load_text_heads(folder)
    train = load_labelled_texts(train_texts, class_names=old.class_names, data_root=data_root)
    val = load_labelled_texts(val_texts, class_names=old.class_names, data_root=data_root)
    overlap = set(train.texts) & set(val.texts)
    if overlap:
        raise MRLError(f"{len(overlap)} validation texts are also training texts (e.g. {next(iter(overlap))[:60]!r}); validate on disjoint rows.")
    model = load_sentence_transformer(folder)
    inputs = [old.head_inputs(encode_texts(model, d.texts, progress=progress)) for d in (train, val)]
    refit = refit_prefix_heads(inputs[0], np.asarray(train.labels), inputs[1], np.asarray(val.labels), old.dims, len(old.class_names), weight_decays=WEIGHT_DECAYS if weight_decays is None else weight_decays)
    report = [{**r, "texts": str(train_texts), "val": str(val_texts)} for r in refit.report]
    return TextHeads(refit.heads, old.class_names, old.scale, report)
