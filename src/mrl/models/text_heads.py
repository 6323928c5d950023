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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mrl.checks import check_matrix
from mrl.errors import CheckpointError, MRLError
from mrl.heads import MatryoshkaLinear
from mrl.io import load_safetensors, save_safetensors

HEADS_FILE = "matryoshka_heads.safetensors"


@dataclass
class TextHeads:
    """Class heads over a text model's prefixes: ``heads`` (``[D] -> [G, C]``), ``class_names``, ``scale``."""

    heads: MatryoshkaLinear
    class_names: tuple[str, ...]
    scale: float

    @property
    def dims(self) -> tuple[int, ...]:
        return self.heads.matryoshka_dims

    def logits(self, embeddings: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Every head's logits. Shape: full-width embeddings ``[N, D]`` -> ``[G, N, C]`` float32.

        Rows are L2-normalised here (the model's own output already is); pass full-width vectors.
        """
        x = np.asarray(embeddings, dtype=np.float32)
        check_matrix(x, "embeddings")
        if x.shape[1] != self.heads.in_features:
            raise MRLError(f"the heads read full-width embeddings [N, {self.heads.in_features}], got shape {x.shape}; encode with the same model and no truncate_dim.")
        out = np.empty((len(self.dims), x.shape[0], self.heads.num_classes), dtype=np.float32)
        with torch.inference_mode():
            for i in range(0, x.shape[0], batch_size):
                e = torch.nn.functional.normalize(torch.from_numpy(x[i : i + batch_size]), dim=-1) * self.scale
                out[:, i : i + batch_size] = self.heads(e).numpy()
        return out


def save_text_heads(path: str | os.PathLike[str], heads: MatryoshkaLinear, class_names: tuple[str, ...], scale: float) -> None:
    """Write ``heads`` (atomically, safetensors) with their dims, classes and scale in the metadata."""
    if len(class_names) != heads.num_classes:
        raise MRLError(f"{len(class_names)} class names for {heads.num_classes} heads' classes.")
    meta = {"matryoshka_dims": json.dumps(list(heads.matryoshka_dims)), "class_names": json.dumps(list(class_names)), "scale": repr(float(scale)), "in_features": str(heads.in_features)}
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
    except (KeyError, TypeError, ValueError, RuntimeError, MRLError) as exc:
        raise CheckpointError(f"{path} does not hold valid class heads ({exc}); retrain the model with `loss: classify`.") from exc
    heads.eval()
    return TextHeads(heads, names, scale)
