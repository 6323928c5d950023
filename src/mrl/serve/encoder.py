"""The served text encoder: a sentence-transformers model, optionally followed by a Matryoshka adaptor.

It knows whether its prefixes are usable on their own (``nested``): a model folder says it is
Matryoshka-trained the way serving stacks read it (``is_matryoshka`` / ``matryoshka_dimensions`` in
``config_sentence_transformers.json`` or ``config.json``, as vLLM does) or with the
``matryoshka.json`` that ``mrl train`` writes; an adaptor folder makes any model nested.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mrl.errors import MRLError
from mrl.io import read_json

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from mrl.models.adaptor import MatryoshkaAdaptor

CONFIG_FILES = ("config_sentence_transformers.json", "config.json")


def matryoshka_dimensions(folder: Path) -> tuple[int, ...] | None:
    """The trained prefix sizes a model folder records, or ``None`` if it is not Matryoshka-trained."""
    from mrl.models.text import read_matryoshka_dims

    dims = read_matryoshka_dims(folder)
    if dims:
        return tuple(int(d) for d in dims)
    for name in CONFIG_FILES:
        p = folder / name
        if not p.is_file():
            continue
        cfg = read_json(p)
        if isinstance(cfg, dict) and (cfg.get("is_matryoshka") or cfg.get("matryoshka_dimensions")):
            raw = cfg.get("matryoshka_dimensions") or ()
            return tuple(int(d) for d in raw) if isinstance(raw, list) else ()
    return None


@dataclass
class ServedModel:
    """A loaded encoder. ``encode`` returns full-width vectors (adaptor applied), not normalised.

    Attributes:
        name: the id clients pass as ``model``.
        dim: ``D``, the width of :meth:`encode`'s output.
        trained_dims: the prefix sizes it was trained for (``None``: not Matryoshka-trained).
        nested: prefixes are usable (Matryoshka-trained, or through an adaptor).
    """

    name: str
    st: SentenceTransformer
    adaptor: MatryoshkaAdaptor | None
    dim: int
    trained_dims: tuple[int, ...] | None
    path: Path

    @property
    def nested(self) -> bool:
        return self.trained_dims is not None or self.adaptor is not None

    @classmethod
    def load(cls, model: str, *, adaptor: Path | None = None, name: str | None = None, device: str | None = None) -> ServedModel:
        """Load the model (and adaptor) from local folders.

        Raises:
            MRLError: missing/corrupted folders, or an adaptor fit on another width.
        """
        from mrl.models.text import load_sentence_transformer, model_dim, resolve_model_path

        path = resolve_model_path(model)
        st = load_sentence_transformer(path, device=device)
        dim = model_dim(st)
        ad = None
        if adaptor is not None:
            from mrl.models.adaptor import load_adaptor

            ad = load_adaptor(adaptor)
            if ad.dim != dim:
                raise MRLError(f"the adaptor {adaptor} maps {ad.dim}-d vectors but {model} outputs {dim}-d; fit the adaptor on this model's embeddings (`mrl adapt`).")
        return cls(name=name or str(model), st=st, adaptor=ad, dim=dim, trained_dims=matryoshka_dimensions(path), path=path)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Full-width embeddings. Shape: ``N`` strings -> ``[N, D]`` float32 (adaptor applied)."""
        emb = self.st.encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=False, show_progress_bar=False, truncate_dim=None)
        emb = np.asarray(emb, dtype=np.float32)
        return self.adaptor.transform(emb) if self.adaptor is not None else emb

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens each text costs (after the model's truncation), for ``usage``."""
        tok = self.st.tokenizer(texts, add_special_tokens=True, truncation=True, max_length=self.st.max_seq_length)
        return [len(ids) for ids in tok["input_ids"]]

    def info(self) -> dict[str, Any]:
        return {"id": self.name, "dim": self.dim, "matryoshka_dimensions": list(self.trained_dims) if self.trained_dims else None,
                "is_matryoshka": self.trained_dims is not None, "adaptor": self.adaptor is not None, "nested": self.nested,
                "max_seq_length": int(self.st.max_seq_length or 0)}
