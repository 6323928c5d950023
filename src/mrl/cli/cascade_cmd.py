"""``mrl cascade fit|eval|refit-heads``: adaptive classification that stops at the smallest confident prefix."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer

from mrl.cli.console import console, flag, friendly
from mrl.errors import MRLError

app = typer.Typer(no_args_is_help=True, help="Adaptive classification: stop at the smallest confident prefix.")


def _is_adaptor(model: Path) -> bool:
    from mrl.models.adaptor import WEIGHTS_FILE

    return model.name == WEIGHTS_FILE or (model.is_dir() and (model / WEIGHTS_FILE).is_file())


def _adaptor_logits(model: Path, features: Optional[Path], labels: Optional[Path]) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Logits ``[G, N, C]`` of an adaptor's class heads on frozen embeddings ``features`` [N, D]."""
    from mrl.checks import check_labels
    from mrl.io import load_npy
    from mrl.models.adaptor import load_adaptor

    if features is None or labels is None:
        raise MRLError("an adaptor's cascade reads frozen embeddings and their class ids: pass --features X.npy [N, D] and --labels Y.npy [N] (rows the adaptor was not fitted on).")
    adaptor = load_adaptor(_model_dir(model))
    if adaptor.heads is None or adaptor.head_dims is None:
        raise MRLError(f"the adaptor in {_model_dir(model)} has no class heads; refit it with `mrl adapt ... --labels Y.npy`.")
    x, y = load_npy(features), load_npy(labels)
    if x.ndim != 2:
        raise MRLError(f"{features} has shape {x.shape}; pass embeddings [N, D].")
    check_labels(y, x.shape[0], f"{labels}")
    return adaptor.logits(x), y, adaptor.head_dims


def _is_text_model(model: Path) -> bool:
    from mrl.models.text_heads import HEADS_FILE

    return model.is_dir() and (model / HEADS_FILE).is_file()


def _text_logits(model: Path, texts: Optional[str], data_root: Optional[Path]) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Logits ``[G, N, C]`` of a text model's class heads (``loss: classify``) on labelled texts."""
    from mrl.data.labelled_texts import load_labelled_texts
    from mrl.models.text import load_sentence_transformer
    from mrl.models.text_encode import encode_texts
    from mrl.models.text_heads import load_text_heads

    if texts is None:
        raise MRLError("a text model's cascade reads labelled texts: pass --texts FILE.jsonl ({\"text\": ..., \"label\": ...} lines the model was not trained on) or --texts wordnet-classes:calibration.")
    heads = load_text_heads(model)
    data = load_labelled_texts(texts, class_names=heads.class_names, data_root=data_root)
    emb = encode_texts(load_sentence_transformer(model), data.texts, progress=False)
    return heads.logits(emb), data.labels, heads.dims


def _split_logits(model: Path, split: str, data_root: Optional[Path], features: Optional[Path] = None, labels: Optional[Path] = None, texts: Optional[str] = None) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    from mrl.data.registry import load_image_data
    from mrl.evaluate.perdim import encode_split
    from mrl.train.checkpoint import load_model

    if _is_text_model(model):
        if features is not None or labels is not None:
            raise MRLError("a text model's cascade encodes labelled texts itself; pass --texts instead of --features/--labels.")
        return _text_logits(model, texts, data_root)
    if texts is not None:
        raise MRLError(f"--texts is for a text model trained with `loss: classify` (a folder with class heads); {model} is not one.")
    if _is_adaptor(model):
        return _adaptor_logits(model, features, labels)
    if features is not None or labels is not None:
        raise MRLError("--features/--labels are for an adaptor folder with class heads; a classifier run folder reads its own data split (--split).")
    if split not in ("train", "val", "test"):
        raise MRLError(f"split must be train, val or test, got {split!r}.")
    net, cfg = load_model(model)
    data = load_image_data(cfg, data_root=str(data_root) if data_root is not None else None, log=console.print).split(split)
    if len(data) == 0:
        raise MRLError(f"the {split} split is empty (see val_size / val_fraction in the model's config); calibrate on a non-empty split.")
    enc = encode_split(net, data)
    return enc.logits, enc.labels, tuple(net.matryoshka_dims)


def _model_dir(model: Path) -> Path:
    return model if model.is_dir() else model.parent


def _cascade_writer(model: Path, out: Optional[Path], overwrite: bool):
    """Where `cascade fit` writes: by default cascade.json inside the run folder, listed in the
    run's manifest (so retraining with --overwrite removes the stale cascade); else a file."""
    from mrl.adaptive.cascade import CASCADE_NAME
    from mrl.io import open_files, open_output, read_manifest
    from mrl.models.adaptor import ADAPTOR_KIND
    from mrl.models.text import TEXT_MODEL_KIND
    from mrl.train.loop import RUN_KIND

    run = _model_dir(model)
    if out is None or out.resolve() == (run / CASCADE_NAME).resolve():
        man = read_manifest(run / "manifest.json") if (run / "manifest.json").is_file() else None
        if man is not None and man.get("format") in (RUN_KIND, ADAPTOR_KIND, TEXT_MODEL_KIND):
            if (run / CASCADE_NAME).exists() and not overwrite:
                raise MRLError(f"{run / CASCADE_NAME} already exists; pass --overwrite to replace it, or choose another --out.")
            return open_output(run, man["format"], append=True), run / CASCADE_NAME, True
        out = run / CASCADE_NAME
    return open_files(out, "mrl.cascade", overwrite=overwrite, inputs=[model, run / "model.safetensors"], sidecar=False), out, False


@app.command("fit")
@friendly
def cascade_fit(
    model: Path = typer.Argument(..., help="Run folder (or model.safetensors) of a Matryoshka classifier, an adaptor folder with class heads (`mrl adapt --labels`), or a text model trained with `loss: classify`."),
    max_drop: float = typer.Option(0.1, "--max-drop", help="Allowed accuracy loss vs the full-D head, in percentage points."),
    score: str = typer.Option("best", help="Confidence: maxprob, margin, or best (fit both, keep the cheaper)."),
    objective: str = typer.Option("cumulative", help="Minimise 'cumulative' cost (dims of every head evaluated) or the 'final' exit dim."),
    confidence: Optional[float] = typer.Option(None, "--confidence", help="Hold the loss bound at this one-sided confidence (e.g. 0.95) instead of on the calibration split only."),
    holdout: Optional[float] = typer.Option(None, help="With --confidence: search thresholds on the other rows and confirm them on this fraction (e.g. 0.5), so the threshold search cannot bias the bound; stricter, and usually more dims. With --score best the cheaper of two confirmed cascades is kept (up to twice the error rate); pass one --score for the strict level."),
    split: str = typer.Option("val", help="Calibration split (a run folder), or the name recorded for --features (an adaptor)."),
    features: Optional[Path] = typer.Option(None, help="Adaptor only: calibration embeddings .npy [N, D] (rows the adaptor was not fitted on)."),
    labels: Optional[Path] = typer.Option(None, help="Adaptor only: their class ids .npy [N]."),
    texts: Optional[str] = typer.Option(None, help="Text model with class heads only: calibration texts, a .jsonl of {\"text\", \"label\"} lines (not the training rows) or wordnet-classes:calibration."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Thresholds JSON (default: cascade.json next to the model)."),
    data_root: Optional[Path] = typer.Option(None),
    overwrite: bool = flag(False, "--overwrite"),
) -> None:
    """Learn per-stage confidence thresholds on the calibration split and save them as JSON."""
    from mrl.adaptive.cascade import fit_cascade

    if not 0 <= max_drop < 100:
        raise MRLError(f"--max-drop is in percentage points, in [0, 100); got {max_drop}.")
    if score not in ("best", "maxprob", "margin"):
        raise MRLError(f"--score must be best, maxprob or margin, got {score!r}.")
    if holdout is not None and confidence is None:
        raise MRLError("--holdout confirms a confidence bound; pass --confidence too (e.g. --confidence 0.95).")
    guard, target, listed = _cascade_writer(model, out, overwrite)
    with guard as writer:
        logits, y, dims = _split_logits(model, split, data_root, features, labels, texts)
        scores = ("maxprob", "margin") if score == "best" else (score,)
        if holdout is None:
            fits = [fit_cascade(logits, y, dims, max_drop=max_drop / 100.0, score=s, objective=objective, confidence_level=confidence) for s in scores]
        else:
            from mrl.adaptive.holdout import fit_cascade_holdout

            fits = [fit_cascade_holdout(logits, y, dims, max_drop=max_drop / 100.0, confidence_level=confidence, holdout=holdout, score=s, objective=objective) for s in scores]
        best = min(fits, key=lambda c: c.calibration["expected_cost"])
        for c in fits:
            console.print(f"{c.score:8s}: calibration accuracy {100 * c.calibration['accuracy']:.2f} (full {100 * c.calibration['full_accuracy']:.2f}), expected {objective} cost {c.calibration['expected_cost']:.1f}")
        best.calibration["split"] = split if texts is None else texts
        if features is not None:
            from mrl.io import sha256_file

            best.calibration["features_sha256"] = sha256_file(features)  # `cascade eval` refuses the same rows
        if texts is not None:
            from mrl.io import sha256_file
            from mrl.models.text_heads import HEADS_FILE

            best.calibration["texts"] = texts
            best.calibration["heads_sha256"] = sha256_file(_model_dir(model) / HEADS_FILE)  # `cascade eval` refuses other heads
            if Path(texts).is_file():
                best.calibration["texts_sha256"] = sha256_file(Path(texts))
        if listed:  # listed in the run folder's manifest
            with writer.file(target.name) as path:
                best.save(path)
        else:
            best.save(target)
    console.print(f"wrote {target} (score={best.score})")


@app.command("eval")
@friendly
def cascade_eval(
    model: Path = typer.Argument(..., help="Run folder (or model.safetensors), an adaptor folder with class heads, or a text model trained with `loss: classify`."),
    cascade: Optional[Path] = typer.Option(None, help="Thresholds JSON (default: cascade.json next to the model)."),
    split: str = typer.Option("test", help="Report split (disjoint from the calibration split), or the name recorded for --features (an adaptor)."),
    features: Optional[Path] = typer.Option(None, help="Adaptor only: report embeddings .npy [N, D], disjoint from the calibration rows."),
    labels: Optional[Path] = typer.Option(None, help="Adaptor only: their class ids .npy [N]."),
    texts: Optional[str] = typer.Option(None, help="Text model with class heads only: report texts (.jsonl of {\"text\", \"label\"} lines or wordnet-classes:test), disjoint from the calibration texts."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the report as JSON."),
    data_root: Optional[Path] = typer.Option(None),
    overwrite: bool = flag(False, "--overwrite"),
) -> None:
    """Accuracy, expected dims, cumulative cost, oracle bound and best fixed prefix on a split."""
    import contextlib

    from mrl.adaptive.cascade import CASCADE_NAME, Cascade, evaluate_cascade
    from mrl.io import open_files, write_json

    casc_path = cascade or _model_dir(model) / CASCADE_NAME
    guard = open_files(out, "mrl.cascade-report", overwrite=overwrite, inputs=[model, casc_path, _model_dir(model) / "model.safetensors", features, labels, Path(texts) if texts else None], sidecar=False) if out is not None else contextlib.nullcontext()
    with guard:
        casc = Cascade.load(casc_path)
        if features is not None and "features_sha256" in casc.calibration:
            from mrl.io import sha256_file

            if casc.calibration["features_sha256"] == sha256_file(features):
                raise MRLError(f"the cascade was calibrated on {features} itself; report on disjoint rows (another --features file).")
        elif texts is not None and "texts" in casc.calibration:
            from mrl.io import sha256_file
            from mrl.models.text_heads import HEADS_FILE

            if casc.calibration["texts"] == texts or (Path(texts).is_file() and casc.calibration.get("texts_sha256") == sha256_file(Path(texts))):
                raise MRLError(f"the cascade was calibrated on {texts} itself; report on disjoint texts (e.g. --texts wordnet-classes:test or another file).")
            if casc.calibration.get("heads_sha256") not in (None, sha256_file(_model_dir(model) / HEADS_FILE)):
                raise MRLError(f"the cascade {casc_path} was fitted on other class heads than {model}'s (refit-heads since?); refit it with `mrl cascade fit {model} --texts ...`.")
        elif casc.calibration.get("split") == split:
            raise MRLError(f"the cascade was calibrated on the {split} split; report on a disjoint split (e.g. --split test).")
        logits, y, dims = _split_logits(model, split, data_root, features, labels, texts)
        if tuple(casc.dims) != tuple(dims):
            raise MRLError(f"the cascade {casc_path} was fit for dims {list(casc.dims)} but the model has heads at {list(dims)}; refit it with `mrl cascade fit` on this model.")
        rep = evaluate_cascade(casc, logits, y)
        if out is not None:
            write_json(out, rep)
    console.print(
        f"{split}: accuracy {100 * rep['accuracy']:.2f} vs full-D {100 * rep['full_accuracy']:.2f} (drop {rep['drop_points']:.2f} points); "
        f"expected dim {rep['expected_dim']:.1f} (D/{rep['ratio_to_full']:.1f}), cumulative cost {rep['expected_cost']:.1f}; "
        f"smallest fixed prefix as accurate: {rep['fixed_dim']} ({rep['ratio_final'] or float('nan'):.2f}x the expected dim); "
        f"oracle: {100 * rep['oracle']['accuracy']:.2f}% at {rep['oracle']['expected_dim_when_right']:.1f} dims"
    )
    if out is not None:
        console.print(f"wrote {out}")


JOINT_HEADS_FILE = "matryoshka_heads_joint.safetensors"  # the heads trained with the encoder, kept by refit-heads


@app.command("refit-heads")
@friendly
def cascade_refit_heads(
    model: Path = typer.Argument(..., help="A text model trained with `loss: classify` (a folder with class heads)."),
    texts: str = typer.Option(..., "--texts", help="Labelled texts to fit the heads on: the training texts (.jsonl of {\"text\", \"label\"} lines, or wordnet-classes:train)."),
    val: str = typer.Option(..., "--val", help="Labelled texts that choose each prefix's weight decay: not trained on and not the cascade's calibration or report texts (e.g. wordnet-classes:val)."),
    weight_decay: Optional[list[float]] = typer.Option(None, "--weight-decay", help="Candidate weight decays, repeatable (default 1e-5 3e-5 1e-4 3e-4 1e-3)."),
    data_root: Optional[Path] = typer.Option(None),
    overwrite: bool = flag(False, "--overwrite", help="Also remove the model's cascade.json (it was fitted on the old heads)."),
) -> None:
    """Refit a text model's class heads on its frozen embeddings (weight decay per prefix by validation log-loss).

    The heads trained with the encoder are kept as matryoshka_heads_joint.safetensors."""
    from mrl.adaptive.cascade import CASCADE_NAME
    from mrl.io import open_output, read_manifest
    from mrl.models.text import TEXT_MODEL_KIND
    from mrl.models.text_heads import HEADS_FILE, load_text_heads, refit_text_heads, save_text_heads

    if not _is_text_model(model):
        raise MRLError(f"{model} is not a text model with class heads ({HEADS_FILE}); train one with `loss: classify`.")
    manifest = read_manifest(model / "manifest.json") if (model / "manifest.json").is_file() else {}
    if manifest.get("format") != TEXT_MODEL_KIND:
        raise MRLError(f"{model} has no mrl text-model manifest, so mrl cannot prove it wrote the heads it would replace; retrain it with `mrl train`.")
    if (model / CASCADE_NAME).exists() and not overwrite:
        raise MRLError(f"{model / CASCADE_NAME} was fitted on the current heads; pass --overwrite to remove it with the old heads (then refit it with `mrl cascade fit`).")
    listed = manifest.get("files", {})
    for name in (JOINT_HEADS_FILE, CASCADE_NAME):
        if (model / name).exists() and name not in listed:
            raise MRLError(f"{model / name} exists but mrl did not write it; move it away (it is never replaced or deleted), then rerun.")
    with open_output(model, TEXT_MODEL_KIND, append=True, inputs=[Path(texts) if Path(texts).is_file() else None, Path(val) if Path(val).is_file() else None]) as writer:
        heads = refit_text_heads(model, texts, val, data_root=data_root, weight_decays=weight_decay, progress=True)
        for r in heads.refit:
            console.print(f"{r['dim']:5d} dims: weight decay {r['weight_decay']:g}, validation accuracy {100 * r['val_accuracy']:.2f}, log-loss {r['val_log_loss']:.3f}")
        current = load_text_heads(model)
        if current.refit is None and not (model / JOINT_HEADS_FILE).exists():  # keep the heads trained with the encoder, once
            with writer.file(JOINT_HEADS_FILE) as path:
                save_text_heads(path, current.heads, current.class_names, current.scale)
        with writer.file(HEADS_FILE) as path:
            save_text_heads(path, heads.heads, heads.class_names, heads.scale, refit=heads.refit)
        if (model / CASCADE_NAME).exists():  # fitted on the old heads (listed in the manifest: ours)
            writer.remove(CASCADE_NAME)
    console.print(f"wrote {model / HEADS_FILE} (the heads trained with the encoder: {model / JOINT_HEADS_FILE}); refit the cascade with `mrl cascade fit {model} --texts ...`")
