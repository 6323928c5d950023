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


def _adaptor_dims(folder: Path) -> tuple[int, ...] | None:
    """The ``matryoshka_dims`` an adaptor folder was fit for (``None`` if it records none)."""
    from mrl.models.adaptor import CONFIG_FILE

    p = Path(folder) / CONFIG_FILE
    cfg = read_json(p) if p.is_file() else None
    raw = ((cfg or {}).get("config") or {}).get("matryoshka_dims") if isinstance(cfg, dict) else None
    if isinstance(raw, list) and raw and all(isinstance(d, int) and not isinstance(d, bool) for d in raw):
        return tuple(raw)
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
    adaptor_dims: tuple[int, ...] | None = None

    @property
    def nested(self) -> bool:
        return self.trained_dims is not None or self.adaptor is not None

    @property
    def allowed_dims(self) -> tuple[int, ...] | None:
        """The ``dimensions`` a request may ask for: the prefixes the served vectors were trained on
        (the adaptor's when there is one, else the model's ``matryoshka_dimensions``) plus ``D``, sorted;
        ``None`` when the model is nested but records no list (any ``1..D``, as vLLM does)."""
        dims = self.adaptor_dims if self.adaptor is not None else self.trained_dims
        if not dims:
            return None
        return tuple(sorted({int(d) for d in dims if 1 <= int(d) <= self.dim} | {self.dim}))

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
        return cls(name=name or str(model), st=st, adaptor=ad, dim=dim, trained_dims=matryoshka_dimensions(path), path=path,
                   adaptor_dims=_adaptor_dims(adaptor) if adaptor is not None else None)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Full-width embeddings. Shape: ``N`` strings -> ``[N, D]`` float32 (adaptor applied)."""
        emb = self.st.encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=False, show_progress_bar=False, truncate_dim=None)
        emb = np.asarray(emb, dtype=np.float32)
        return self.adaptor.transform(emb) if self.adaptor is not None else emb

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens each text costs (after the model's truncation), for ``usage``."""
        tok = self.st.tokenizer(texts, add_special_tokens=True, truncation=True, max_length=self.st.max_seq_length)
        return [len(ids) for ids in tok["input_ids"]]

    @property
    def vocab_size(self) -> int:
        """Token ids ``0..vocab_size-1`` are valid inputs of :meth:`decode` (added tokens included)."""
        return len(self.st.tokenizer)

    def decode(self, token_ids: list[list[int]]) -> list[str]:
        """Texts of token-id arrays (special tokens dropped), re-encoded by :meth:`encode` as any text."""
        return [self.st.tokenizer.decode(ids, skip_special_tokens=True) for ids in token_ids]

    def info(self) -> dict[str, Any]:
        return {"id": self.name, "dim": self.dim, "matryoshka_dimensions": list(self.trained_dims) if self.trained_dims else None,
                "dimensions": list(self.allowed_dims) if self.allowed_dims else None,
                "is_matryoshka": self.trained_dims is not None, "adaptor": self.adaptor is not None, "nested": self.nested,
                "max_seq_length": int(self.st.max_seq_length or 0)}
