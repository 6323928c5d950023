"""Post-hoc Matryoshka adaptor module: make the prefixes of frozen embeddings (any model, any API) usable.

Given embeddings ``x [N, D]`` that you cannot retrain, an adaptor ``f: R^D -> R^D`` is learned so
that for every prefix ``m`` in ``matryoshka_dims`` the truncated-then-normalised ``f(x)[:, :m]`` keeps
the geometry of the full original embedding (in the spirit of Matryoshka-Adaptor, Yoon et al. 2024,
arXiv:2407.20243). Fitting lives in :mod:`mrl.train.adaptor`; this module holds the module itself
and its folder format.

Model: ``f(x) = W (x - mu)`` (``kind="linear"``), optionally plus a residual MLP
``z + MLP(z)`` (``kind="mlp"``, last layer zero-initialised). ``W`` starts as the PCA rotation of the
training vectors. ``kind="rotation"`` is ``f(x) = W x`` with ``W`` kept orthogonal and no centring:
it never changes a full-width cosine (full-D quality is the original's exactly), while its prefixes
start as centred PCA (:func:`mrl.models.rotation.mean_last_rotation`) and train from there.
``kind="residual"`` bends only where it pays: ``f(x) = z + [c g(z), 0]`` with ``z = W x`` a rotation
exactly as ``kind="rotation"`` (same start, kept orthogonal while it trains) and ``g`` an MLP
(:class:`mrl.models.residual.LeadingResidual`) that changes only the first ``residual_dim`` coordinates
(default 64), its length capped at ``residual_bend`` (default 0.3) times theirs, so full-width
cosines move a little and never far.

**Classification heads** (optional, when the adaptor is fitted with class labels): one linear head per
prefix (:class:`mrl.heads.MatryoshkaLinear`, independent heads as in MRL) reads the adapted prefix
``f(x)[:, :m]``; :meth:`MatryoshkaAdaptor.logits` gives every head's logits at once, which is what the
adaptive cascade (:mod:`mrl.adaptive.cascade`) consumes. A stored item then needs only the prefix the
cascade exits at.

Saved as ``adaptor.safetensors`` (weights, with the config and a content hash in its metadata) +
``adaptor.json`` (the same config, for humans) + ``manifest.json``, written into a temporary
folder and renamed into place (see :func:`mrl.io.open_output`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mrl.checks import check_matrix
from mrl.errors import CheckpointError, MRLError
from mrl.heads import MatryoshkaLinear
from mrl.io import load_safetensors, open_output, save_safetensors, verify_output, write_json
from mrl.models.residual import LeadingResidual
from mrl.nesting import validate_dims

KINDS = ("linear", "mlp", "rotation", "residual")
RESIDUAL_DIM = 64  # kind residual: leading coordinates the residual may change, by default (at most D)
RESIDUAL_BEND = 0.3  # kind residual: cap on the bend's length relative to those coordinates' (measured, see mrl.models.residual)
WEIGHTS_FILE = "adaptor.safetensors"
CONFIG_FILE = "adaptor.json"
ADAPTOR_KIND = "mrl.adaptor"  # manifest format of an adaptor folder


class MatryoshkaAdaptor(nn.Module):
    """``f(x) = W (x - mu)`` (+ residual MLP for ``kind="mlp"``; ``kind="residual"``: rotation ``W``
    plus a capped residual on the leading ``residual_dim`` coordinates), optionally with per-prefix class heads.

    Shape:
        - input: ``[N, D]`` frozen embeddings.
        - output: ``[N, D]`` adapted embeddings; use prefixes ``[:, :m]`` (then L2-normalise).
        - ``heads`` (when ``num_classes`` is given): adapted ``[N, D]`` -> logits ``[G, N, C]``, one
          matrix per prefix in ``head_dims``.
    """

    def __init__(self, dim: int, kind: str = "linear", hidden: int | None = None, *, num_classes: int | None = None, head_dims: tuple[int, ...] | list[int] | None = None, residual_dim: int | None = None, residual_bend: float | None = None) -> None:
        super().__init__()
        if kind not in KINDS:
            raise MRLError(f"adaptor kind must be one of {KINDS}, got {kind!r}.")
        if (residual_dim is not None or residual_bend is not None) and kind != "residual":
            raise MRLError(f"residual_dim and residual_bend are options of kind 'residual' only (got kind {kind!r}); drop them or use kind residual.")
        self.dim, self.kind, self.hidden = dim, kind, hidden or dim
        self.num_classes = num_classes
        self.head_dims: tuple[int, ...] | None = None
        self.heads: MatryoshkaLinear | None = None
        if num_classes is not None:
            if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
                raise MRLError(f"class heads need at least 2 classes, got {num_classes!r}.")
            if head_dims is None:
                raise MRLError("class heads need head_dims (the prefixes they read), e.g. the adaptor's matryoshka_dims.")
            self.head_dims = validate_dims(head_dims, dim)
            self.heads = MatryoshkaLinear(dim, num_classes, self.head_dims)
        self.register_buffer("mean", torch.zeros(dim))
        self.linear = nn.Linear(dim, dim, bias=False)
        self.mlp: nn.Module | None = None
        if kind == "mlp":
            self.mlp = nn.Sequential(nn.Linear(dim, self.hidden), nn.GELU(), nn.Linear(self.hidden, dim))
            nn.init.zeros_(self.mlp[2].weight)
            nn.init.zeros_(self.mlp[2].bias)
        self.residual: LeadingResidual | None = None
        self.residual_dim: int | None = None
        self.residual_bend: float | None = None
        if kind == "residual":
            self.residual_dim = min(RESIDUAL_DIM, dim) if residual_dim is None else residual_dim
            self.residual_bend = RESIDUAL_BEND if residual_bend is None else residual_bend
            self.residual = LeadingResidual(dim, self.residual_dim, self.hidden, self.residual_bend)

    def init_pca(self, x: torch.Tensor) -> None:
        """Set ``mu`` to the mean of ``x`` and ``W`` to its principal axes (rows by variance);
        ``kind="rotation"``: ``mu = 0`` and ``W`` = :func:`mrl.models.rotation.mean_last_rotation`."""
        if self.kind in ("rotation", "residual"):
            from mrl.models.rotation import mean_last_rotation

            with torch.no_grad():
                self.mean.zero_()
                self.linear.weight.copy_(mean_last_rotation(x))
            return
        mu = x.mean(0)
        cov = torch.cov((x - mu).T.double())
        _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
        with torch.no_grad():
            self.mean.copy_(mu)
            self.linear.weight.copy_(vecs.flip(1).T.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x - self.mean)
        if self.residual is not None:
            return self.residual(z)
        return z + self.mlp(z) if self.mlp is not None else z

    @torch.no_grad()
    def logits(self, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Every class head's logits on its adapted prefix. Shape: ``[N, D]`` -> ``[G, N, C]`` float32.

        Raises:
            MRLError: the adaptor has no class heads (fit it with labels), or ``x`` does not fit.
        """
        if self.heads is None:
            raise MRLError("this adaptor has no class heads; fit it with class labels (`mrl adapt --labels`).")
        z = torch.from_numpy(self.transform(x, batch_size))
        out = [self.heads(z[i : i + batch_size]).numpy() for i in range(0, z.shape[0], batch_size)]
        return np.concatenate(out, axis=1).astype(np.float32, copy=False)

    @torch.no_grad()
    def transform(self, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Adapt numpy vectors. Shape: ``[N, D] -> [N, D]`` float32 (a new array).

        Raises:
            MRLError: ``x`` is not ``[N, D]`` with the adaptor's ``D``, or holds NaN/Inf.
        """
        check_matrix(x, "embeddings")
        if x.shape[1] != self.dim:
            raise MRLError(f"this adaptor was trained on {self.dim}-d vectors but got {x.shape[1]}-d; apply it to embeddings of the same model it was fit on.")
        self.eval()
        out = [self(torch.from_numpy(np.array(x[i : i + batch_size], dtype=np.float32))).numpy() for i in range(0, x.shape[0], batch_size)]
        return np.concatenate(out).astype(np.float32, copy=False)


def save_adaptor(model: MatryoshkaAdaptor, config: dict[str, Any], out_dir: str | os.PathLike[str], *, extra: dict[str, Any] | None = None, overwrite: bool = False, inputs: list[Any] | None = None) -> Path:
    """Write the adaptor folder atomically (temporary sibling folder, then rename).

    The folder must be new, empty or a previous adaptor (``overwrite``); ``inputs`` are never replaced.
    """
    out = Path(out_dir)
    heads: dict[str, Any] = {"num_classes": model.num_classes, "head_dims": list(model.head_dims)} if model.heads is not None else {}
    if model.residual is not None:
        heads.update(residual_dim=model.residual_dim, residual_bend=model.residual_bend)
    meta = {"format": "mrl.adaptor/1", "dim": model.dim, "kind": model.kind, "hidden": model.hidden, **heads, "config": config, **(extra or {})}
    with open_output(out, ADAPTOR_KIND, overwrite=overwrite, staged=True, inputs=inputs or []) as writer:
        tmp = writer.path
        save_safetensors(tmp / WEIGHTS_FILE, model.state_dict(), metadata={"adaptor": json.dumps({k: meta[k] for k in ("format", "dim", "kind", "hidden", *heads)}), "config": json.dumps(config)})
        write_json(tmp / CONFIG_FILE, meta)
    return out


def load_adaptor(path: str | os.PathLike[str]) -> MatryoshkaAdaptor:
    """Load an adaptor folder written by :func:`mrl.train.adaptor.fit_adaptor` / ``mrl adapt``.

    Raises:
        CheckpointError: missing/corrupted files or weights that do not match the config.
    """
    p = Path(path)
    if not (p / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"{p} is not an adaptor folder (no {WEIGHTS_FILE}); create one with `mrl adapt`.")
    verify_output(p, [WEIGHTS_FILE, CONFIG_FILE])  # the folder's manifest: checksum, sizes and SHA-256s
    tensors, meta = load_safetensors(p / WEIGHTS_FILE)
    try:
        info = json.loads(meta["adaptor"])
        heads = {"num_classes": int(info["num_classes"]), "head_dims": [int(m) for m in info["head_dims"]]} if "num_classes" in info else {}
        if "residual_dim" in info:
            heads.update(residual_dim=int(info["residual_dim"]), residual_bend=float(info["residual_bend"]))
        model = MatryoshkaAdaptor(int(info["dim"]), info["kind"], int(info["hidden"]), **heads)
        model.load_state_dict(tensors)
    except (KeyError, TypeError, ValueError, RuntimeError, MRLError) as exc:
        raise CheckpointError(f"{p / WEIGHTS_FILE} does not hold a valid adaptor ({exc}); re-create it with `mrl adapt`.") from exc
    model.eval()
    return model

