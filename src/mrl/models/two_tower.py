"""Two-tower image-text models whose both towers emit ``D``-dim Matryoshka embeddings.

* :class:`ImageTower`: a vision backbone from :func:`mrl.models.vision.create_backbone` (the small
  ResNet by default, on RGB input) followed by a linear map to ``D``.
* :class:`TextProjection`: sentence-encoder features (e.g. all-MiniLM-L6-v2's 384-d vectors) through
  an optional hidden layer to ``D``. With a frozen encoder the features are computed once and
  cached, so training touches only this projection on the text side.
* :class:`TwoTower`: both towers plus one learned log inverse temperature per trained prefix (the
  model owns its temperatures, as CLIP does).

Saved models are one safetensors file with the config in its metadata; a fine-tuned text encoder is
saved beside it as a sentence-transformers folder (``text_encoder/``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mrl.contrastive import initial_log_scales
from mrl.data.image_text import images_to_tensor
from mrl.errors import CheckpointError, MRLError
from mrl.io import load_safetensors, save_safetensors, verify_output
from mrl.models.text_features import cached_features, encode_features, encoder_forward, load_text_encoder
from mrl.models.vision import create_backbone

FORMAT = "mrl.two_tower/1"
TOWERS = ("image", "text")


class ImageTower(nn.Module):
    """Backbone (``features`` wide) -> linear -> ``embed_dim``.

    The linear layer lets the embedding take any sign (the small ResNet's pooled features are
    post-ReLU), which a cosine-similarity contrastive loss needs.

    Shape: ``[N, 3, S, S]`` float -> ``[N, embed_dim]``.
    """

    def __init__(self, embed_dim: int, *, backbone: str = "small_resnet", width: int = 32, features: int = 256) -> None:
        super().__init__()
        self.backbone = create_backbone(backbone, features, in_channels=3, width=width)  # options a backbone lacks are ignored
        self.head = nn.Linear(features, embed_dim)
        self.embed_dim = embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise MRLError(f"the image tower reads RGB pictures [N, 3, S, S], got {tuple(x.shape)}.")
        return self.head(self.backbone(x))


class TextProjection(nn.Module):
    """Text-encoder features (``in_dim`` wide) -> [hidden layer] -> ``embed_dim``.

    Args:
        in_dim: width of the text encoder's sentence embeddings (384 for all-MiniLM-L6-v2).
        embed_dim: ``D``.
        hidden: width of a GELU hidden layer (0: a single linear map).

    Shape: ``[N, in_dim]`` -> ``[N, embed_dim]``.
    """

    def __init__(self, in_dim: int, embed_dim: int, hidden: int = 0) -> None:
        super().__init__()
        if in_dim <= 0 or embed_dim <= 0 or hidden < 0:
            raise MRLError(f"need in_dim > 0, embed_dim > 0 and hidden >= 0, got {in_dim}, {embed_dim}, {hidden}.")
        self.in_dim = in_dim
        self.net: nn.Module = nn.Linear(in_dim, embed_dim) if hidden == 0 else nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, embed_dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim != 2 or features.shape[1] != self.in_dim:
            raise MRLError(f"the text projection takes {self.in_dim}-d features but got {tuple(features.shape)}; use the text model it was trained with (same width), or retrain with this one.")
        return self.net(features)


class TwoTower(nn.Module):
    """An image tower and a text tower sharing one ``D``-dim Matryoshka space.

    The text tower is :class:`TextProjection` over sentence-encoder features; with ``encoder`` (a
    sentence-transformers model being fine-tuned) it runs the encoder first. ``log_scales`` ``[G]``:
    one learned log inverse temperature per trained prefix.

    Shape (``forward``): pictures ``[N, 3, S, S]`` and either features ``[N, text_dim]`` or ``N``
    caption strings (with ``encoder``) -> ``([N, D], [N, D])``.
    """

    def __init__(self, embed_dim: int, text_dim: int, num_scales: int, *, backbone: str = "small_resnet", width: int = 32, image_features: int = 256, text_hidden: int = 0, encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.image = ImageTower(embed_dim, backbone=backbone, width=width, features=image_features)
        self.text = TextProjection(text_dim, embed_dim, text_hidden)
        self.encoder = encoder
        self.log_scales = nn.Parameter(initial_log_scales(num_scales))
        self.embed_dim = embed_dim

    def embed_text(self, text: torch.Tensor | Sequence[str]) -> torch.Tensor:
        """Caption embeddings from encoder features ``[N, text_dim]`` or, with an encoder, strings."""
        if self.encoder is not None:
            if isinstance(text, torch.Tensor):
                raise MRLError("this model fine-tunes its text encoder: pass caption strings, not features.")
            text = encoder_forward(self.encoder, text)
        elif not isinstance(text, torch.Tensor):
            raise MRLError("this model's text tower reads encoder features; compute them with mrl.models.text_features first.")
        return self.text(text)

    def forward(self, images: torch.Tensor, text: torch.Tensor | Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.image(images), self.embed_text(text)


def build_two_tower(config: dict[str, Any], text_dim: int, encoder: nn.Module | None = None) -> TwoTower:
    """The :class:`TwoTower` a multimodal recipe (as a dict) describes, for a text encoder ``text_dim`` wide."""
    dims = config["matryoshka_dims"]
    num_scales = 1 if config.get("mode", "mrl") == "ff" else len(dims)
    return TwoTower(dims[-1], text_dim, num_scales, backbone=config["backbone"], width=config["width"], image_features=config["image_features"], text_hidden=config["text_hidden"], encoder=encoder)


def save_two_tower(path: str | os.PathLike[str], model: TwoTower, config: dict[str, Any], text_dim: int, image_size: int) -> None:
    """Write the weights (both towers, temperatures, a fine-tuned encoder) with what rebuilds and
    feeds them: the recipe, the text encoder's width and the picture size trained on."""
    meta = {"format": FORMAT, "config": json.dumps(config), "text_dim": str(text_dim), "image_size": str(image_size)}
    save_safetensors(path, model.state_dict(), metadata=meta)


def load_two_tower(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> tuple[TwoTower, dict[str, Any]]:
    """Rebuild a :class:`TwoTower` from ``model.safetensors`` (or a run folder holding it).

    A fine-tuned text encoder is rebuilt from the recipe's ``text_model`` then given its trained
    weights. Returns ``(model in eval mode, config dict)``.

    Raises:
        CheckpointError: not a two-tower model file, or weights that do not fit its config.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "model.safetensors"
    verify_output(p.parent, [p.name, "config.json"])  # a run folder's manifest: checksum, sizes and SHA-256s
    tensors, meta = load_safetensors(p)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not an image-text two-tower model (format {meta.get('format')!r}); train one with a `task: multimodal` recipe.")
    try:
        config = json.loads(meta["config"])
        text_dim = int(meta["text_dim"])
        image_size = int(meta["image_size"])
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{p} lacks the two-tower metadata (config, text_dim); it was not written by mrl.") from exc
    encoder = None
    if config.get("text_tower") == "finetune":
        encoder, width = load_text_encoder(config["text_model"], max_seq_length=config["max_seq_length"])
        check_text_width(width, text_dim, config["text_model"])
    try:
        model = build_two_tower(config, text_dim, encoder)
        model.load_state_dict(tensors)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{p} does not rebuild into a two-tower model ({exc}); it is corrupted or from another version: retrain it.") from exc
    return model.to(map_location).eval(), {**config, "image_size": image_size}


def check_text_width(width: int, expected: int, model_name: str) -> None:
    """Refuse a text encoder whose width is not what the projection was built for."""
    if width != expected:
        raise MRLError(f"text model {model_name!r} emits {width}-d features but the text projection takes {expected}-d; use the text model the run was trained with, or retrain with text_model set to this one.")


@torch.inference_mode()
def embed_images(model: TwoTower, images: np.ndarray, *, batch_size: int = 512, device: str | torch.device = "cpu") -> np.ndarray:
    """Full-width embeddings of uint8 pictures through the image tower (eval mode).

    Shape: ``[N, S, S, 3]`` uint8 -> float32 ``[N, D]``.
    """
    model.eval()
    parts = [model.image(images_to_tensor(images[i : i + batch_size]).to(device)).float().cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(parts).numpy() if parts else np.zeros((0, model.embed_dim), np.float32)


@torch.inference_mode()
def embed_texts(model: TwoTower, config: dict[str, Any], texts: Sequence[str], *, text_model: str | None = None, cache_dir: str | os.PathLike[str] | None = None, features: np.ndarray | None = None, batch_size: int = 512) -> np.ndarray:
    """Full-width embeddings of captions through the text tower (eval mode).

    Frozen encoders: ``features`` when given, else the encoder's features (cached in ``cache_dir``
    when given). ``text_model`` overrides the recipe's encoder; its width must match the projection.

    Shape: ``T`` strings -> float32 ``[T, D]``.
    """
    model.eval()
    texts = list(texts)
    if model.encoder is not None:
        feats = torch.from_numpy(encode_features(model.encoder, texts, batch_size=batch_size))
    else:
        if features is None:
            name = text_model or config["text_model"]
            if cache_dir is not None:
                features = cached_features(name, texts, cache_dir, max_seq_length=config["max_seq_length"])
            else:
                st, _ = load_text_encoder(name, max_seq_length=config["max_seq_length"])
                features = encode_features(st, texts, batch_size=batch_size)
        feats = torch.from_numpy(np.asarray(features, dtype=np.float32))
        if feats.ndim != 2 or feats.shape[0] != len(texts):
            raise MRLError(f"need one feature row per caption: got {tuple(feats.shape)} for {len(texts)} captions.")
        check_text_width(int(feats.shape[1]), model.text.in_dim, text_model or config["text_model"])
    device = next(model.parameters()).device
    parts = [model.text(feats[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(feats), batch_size)]
    return torch.cat(parts).numpy() if parts else np.zeros((0, model.embed_dim), np.float32)


def export_text_tower(model: TwoTower, config: dict[str, Any], out: str | os.PathLike[str], *, overwrite: bool = False, inputs: list[Any] | None = None) -> Path:
    """Save the text tower as a plain sentence-transformers folder (encoder + ``Dense`` layers).

    The folder loads with ``SentenceTransformer(out)`` anywhere, is marked Matryoshka-trained
    (``is_matryoshka``, ``matryoshka_dimensions``) the way serving stacks read it, and embeds queries
    into the pictures' space: ``mrl embed-text`` / ``mrl serve`` on it search an index of
    ``mrl embed --tower image`` vectors with text. Its outputs equal :func:`embed_texts`'s.
    The folder is written through :func:`mrl.io.open_output` (a text model of mrl): it must be new,
    empty or a previous export (``overwrite``), and is swapped in as a whole.
    """
    from sentence_transformers.sentence_transformer.modules import Dense

    from mrl.io import check_output, open_output
    from mrl.models.text import TEXT_MODEL_KIND, mark_matryoshka

    check_output(out, TEXT_MODEL_KIND, overwrite=overwrite, staged=True, inputs=inputs or [])  # before any work

    st = model.encoder if model.encoder is not None else load_text_encoder(config["text_model"], max_seq_length=config["max_seq_length"])[0]
    net = model.text.net
    layers = [(net, None)] if isinstance(net, nn.Linear) else [(net[0], nn.GELU()), (net[2], None)]
    for linear, act in layers:
        dense = Dense(linear.in_features, linear.out_features, activation_function=act if act is not None else nn.Identity())
        with torch.no_grad():
            dense.linear.weight.copy_(linear.weight)
            dense.linear.bias.copy_(linear.bias)
        st.append(dense.to(st.device))
    target = Path(out)
    with open_output(target, TEXT_MODEL_KIND, overwrite=overwrite, staged=True, inputs=inputs or []) as writer:
        tmp = writer.path
        st.save(str(tmp))
        mark_matryoshka(tmp, config["matryoshka_dims"] if config.get("mode", "mrl") == "mrl" else [config["matryoshka_dims"][-1]])
    return target
