"""Per-prefix image<->text retrieval of two-tower models and of PCA of the fixed-feature baseline.

Protocol (held-out split, ``test`` by default): the database is the split's pictures for
text->image and the split's distinct captions for image->text. A caption's relevant pictures are all
pictures it captions; a picture's relevant captions are its own. Embeddings are truncated to each
prefix then L2-normalised and searched exactly (cosine). Reported: ``t2i_recall@k`` and
``i2t_recall@k`` for k in 1, 5, 10 (the share of queries with a relevant item in the top k).

Rows (``mode`` says which, as in the image report):

* ``mrl``: a model trained with the loss at every prefix;
* ``ff``: the same towers trained at full width only, truncated at evaluation;
* ``pca``: the FF model's embeddings projected on the principal components of its *training*
  embeddings (pictures and captions pooled: one projection for the shared space), truncated.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrl.data.image_text import ImageTextData, ImageTextSplit
from mrl.embeddings import l2_normalize
from mrl.errors import MRLError
from mrl.evaluate.baselines import pca_transform
from mrl.models.two_tower import embed_images, embed_texts, load_two_tower
from mrl.pair_recall import cross_modal_recall

KS = (1, 5, 10)
METHODS = {"mrl": "MRL", "ff": "FF (truncated)", "pca": "PCA of FF"}


def encode_split(model: Any, config: dict[str, Any], split: ImageTextSplit, *, cache_dir: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """Full-width embeddings of a split's pictures and distinct captions.

    Returns ``(pictures [N, D], captions [T, D], per-picture caption ids)``.
    """
    texts, per_image = split.caption_index()
    return embed_images(model, split.images), embed_texts(model, config, texts, cache_dir=cache_dir), per_image


def _record(mode: str, config: dict[str, Any], model: str, dims: Sequence[int], per_dim: dict[int, dict[str, float]], split: str, **extra: Any) -> dict[str, Any]:
    return {"method": METHODS[mode], "mode": mode, "task": "multimodal", "seed": config["seed"], "model": model, "dims": [int(d) for d in dims], "metric": "cosine", "split": split, "per_dim": {str(d): v for d, v in per_dim.items()}, **extra}


def evaluate_multimodal(runs: Sequence[str | os.PathLike[str]], data: ImageTextData, *, split: str = "test", dims: Sequence[int] | None = None, baselines: Sequence[str] = (), cache_dir: str | os.PathLike[str] | None = None, log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Evaluate two-tower run folders per prefix; add PCA of every FF run when ``"pca"`` in ``baselines``.

    ``dims`` defaults to each run's ``matryoshka_dims``.

    Returns one record per run (and per PCA baseline), ready for ``mrl report``.
    """
    unknown = set(baselines) - {"pca"}
    if unknown:
        raise MRLError(f"unknown baseline(s) {sorted(unknown)}; the multimodal evaluation offers: pca.")
    say = log or (lambda _m: None)
    held_out = data.split(split)
    records = []
    for run in runs:
        model, config = load_two_tower(run)
        if Path(config["dataset"]).resolve() != data.folder.resolve():
            say(f"note: {run} was trained on {config['dataset']}, evaluated on {data.folder}")
        run_dims = list(dims or config["matryoshka_dims"])
        if max(run_dims) > model.embed_dim:
            raise MRLError(f"dims go up to {max(run_dims)} but {run} embeds in {model.embed_dim} dims; drop the larger dims.")
        img, txt, per_image = encode_split(model, config, held_out, cache_dir=cache_dir)
        rec = _record(config["mode"], config, str(run), run_dims, cross_modal_recall(img, txt, per_image, run_dims, KS), split)
        records.append(rec)
        say(f"{rec['method']} {run}: text->image recall@10 " + ", ".join(f"{d}: {100 * v['t2i_recall@10']:.1f}" for d, v in rec["per_dim"].items()))
        if "pca" in baselines and config["mode"] == "ff":
            train = data.split("train")
            fit_img, fit_txt, _ = encode_split(model, config, train, cache_dir=cache_dir)
            fit = l2_normalize(np.concatenate([fit_img, fit_txt]))
            p_img, p_txt = pca_transform(fit, l2_normalize(img), l2_normalize(txt))
            pca_dims = [d for d in run_dims if d <= p_img.shape[1]]
            pca = _record("pca", config, str(run), pca_dims, cross_modal_recall(p_img, p_txt, per_image, pca_dims, KS), split, fit_rows=int(fit.shape[0]))
            records.append(pca)
            say(f"{pca['method']} {run}: text->image recall@10 " + ", ".join(f"{d}: {100 * v['t2i_recall@10']:.1f}" for d, v in pca["per_dim"].items()))
    return records
