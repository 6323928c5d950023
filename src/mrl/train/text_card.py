"""The model card of a trained text model: the Matryoshka section mrl writes above the
sentence-transformers card, and the fixes that card needs for a model saved on disk.

* the usage snippet loads the saved folder (sentence-transformers would write the model's display
  name, which no one can load);
* the base model is named (the packaged all-MiniLM-L6-v2 by its Hub id, else as the user gave it);
* the MRL paper is cited (Kusupati et al., 2022, arXiv:2205.13147);
* encoder hyper-parameters are listed only when encoder steps ran; a projection-only run says what
  the projection fit did instead.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mrl.models.text import MODEL_ALIASES
from mrl.train.text_config import TextTrainConfig

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

HUB_IDS = dict.fromkeys(MODEL_ALIASES, "sentence-transformers/all-MiniLM-L6-v2")  # the packaged model's Hub id
MRL_BIBTEX = """@inproceedings{kusupati2022matryoshka,
  title = {Matryoshka Representation Learning},
  author = {Kusupati, Aditya and Bhatt, Gantavya and Rege, Aniket and Wallingford, Matthew and Sinha, Aditya and Ramanujan, Vivek and Howard-Snyder, William and Chen, Kaifeng and Kakade, Sham and Jain, Prateek and Farhadi, Ali},
  booktitle = {Advances in Neural Information Processing Systems},
  year = {2022},
  eprint = {2205.13147},
  archivePrefix = {arXiv}
}"""


def base_model_id(model: str) -> str | None:
    """The Hub id of the base model when known (the packaged model; a folder whose own card names
    its ``base_model``), else None."""
    if str(model) in HUB_IDS:
        return HUB_IDS[str(model)]
    readme = Path(str(model)) / "README.md"
    if readme.is_file():
        head = readme.read_text(encoding="utf-8", errors="replace")[:4000]
        if head.startswith("---"):
            found = re.search(r"^base_model:\s*([\w.-]+/[\w.-]+)\s*$", head.split("\n---", 1)[0], re.MULTILINE)
            if found:
                return found.group(1)
    return None


def prepare_card_data(model: SentenceTransformer, cfg: TextTrainConfig, out: Path) -> None:
    """Before ``model.save``: the usage snippet's id is the final folder (absolute path, loadable with
    plain sentence-transformers), and the base model's Hub id when known."""
    model.model_card_data.add_tags(["matryoshka", "mrl"])
    model.model_card_data.model_id = str(out.resolve())
    hub = base_model_id(str(cfg.model))
    if hub:
        model.model_card_data.base_model = hub


def model_card_section(cfg: TextTrainConfig, dims: tuple[int, ...], info: dict[str, Any], out: Path | None = None) -> str:
    """The Matryoshka part of the model card (written above the sentence-transformers card)."""
    data = f"`{cfg.dataset}`" + (f" mixed with `{cfg.general_text}` ({100 * cfg.general_fraction:.0f}% of batch anchors)" if cfg.general_text else "")
    start = {
        "rotation": f"an orthogonal linear layer (no bias, so every full-width cosine is the encoder's), fitted for {cfg.init_steps} steps on the teacher's cached vectors of the texts and kept orthogonal",
        "adaptor": f"a linear layer initialised from an unsupervised adaptor fitted for {cfg.init_steps} steps",
        "pca": "a linear layer initialised from PCA of the texts",
        "none": "no linear layer",
    }[cfg.projection]
    steps = int(info.get("steps") or 0)
    layers = "all encoder layers" if cfg.train_layers is None else ("no encoder layer (the encoder is frozen)" if cfg.train_layers == 0 or cfg.max_steps == 0 else f"the top {cfg.train_layers} encoder layers")
    what = {
        "distill": f"label-free prefix distillation from the frozen teacher `{info.get('teacher', cfg.model)}`: every prefix reproduces the teacher's full-width similarity structure (similarity matching + listwise ranking KL) on neighbour-structured batches; {start}; {layers} trained{' (pseudo-queries: each text' + chr(39) + 's first sentence joins the pool)' if cfg.pseudo_queries else ''}",
        "classify": f"Matryoshka cross-entropy of one linear class head per prefix over {info.get('classes', '?')} classes (label smoothing {cfg.label_smoothing}{f', self-distillation {cfg.self_distill}: each smaller head also matches the full head' if cfg.self_distill else ''}, heads at lr {cfg.head_lr} on the unit-norm embedding x {cfg.head_scale}); the heads are in `matryoshka_heads.safetensors` (`mrl cascade fit` reads them); {layers} trained",
    }.get(cfg.loss, f"sentence-transformers MatryoshkaLoss around `{cfg.loss}`")
    hub = base_model_id(str(cfg.model))
    base = f"`{cfg.model}`" + (f" ([{hub}](https://huggingface.co/{hub}))" if hub and hub != str(cfg.model) else "")
    wall = info.get("wall_seconds", info.get("seconds", 0))
    lines = [
        f"# Matryoshka embeddings: {Path(str(cfg.model)).name}",
        "",
        f"- **Base model:** {base}.",
        f"- **Matryoshka dimensions:** {', '.join(str(d) for d in dims)} (`is_matryoshka: true`, `matryoshka_dimensions` in `config.json` and `config_sentence_transformers.json`).",
        f"- **Training data:** {data}; {info.get('train_texts', info.get('train_pairs', '?'))} training rows.",
        f"- **Objective:** {what}; weighting `{cfg.weighting}`.",
    ]
    if info.get("fit_steps"):
        lines.append(f"- **Projection fit:** {info['fit_steps']} steps x batch {info.get('fit_batch_size', '?')} of the teacher's cached vectors, lr {info.get('fit_lr', '?')}, seed {cfg.seed}, {info.get('fit_seconds', 0):.0f} s.")
    if steps:
        lines.append(f"- **Encoder training:** {steps} steps x batch {cfg.batch_size}, lr {cfg.lr}, max_seq_length {cfg.max_seq_length}, seed {cfg.seed}, on {info.get('device')} (bf16: {info.get('bf16')}).")
    else:
        lines.append(f"- **Encoder training:** none (no encoder step ran: the encoder is the base model's, unchanged); seed {cfg.seed}.")
    lines.append(f"- **Wall-clock:** {wall:.0f} s in all, on {info.get('device')}.")
    where = str(out.resolve()) if out is not None else "path/to/this/folder"
    lines += [
        "",
        "Use a prefix: truncate, then L2-normalise (the prefix of a unit vector is not a unit vector):",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        f'model = SentenceTransformer("{where}", truncate_dim={dims[len(dims) // 2]})',
        'emb = model.encode(["a text"], normalize_embeddings=True)',
        "```",
        "",
        "Cite Matryoshka Representation Learning (Kusupati et al., NeurIPS 2022, [arXiv:2205.13147](https://arxiv.org/abs/2205.13147)):",
        "",
        "```bibtex",
        MRL_BIBTEX,
        "```",
        "",
    ]
    return "\n".join(lines)
