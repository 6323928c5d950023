"""Silent wrong results and usability items of the hardening issue, each as a test."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mrl.cli import app
from mrl.errors import MRLError
from mrl.io import save_npy
from tests.test_funnel import matryoshka_like

runner = CliRunner()


def test_diverged_image_run_stops_and_saves_nothing(tiny_config, tmp_path):
    from mrl.train import train
    from mrl.train.divergence import DivergedError

    with pytest.raises(DivergedError, match="lower lr"):
        train(tiny_config.replace(lr=1e12, warmup_steps=0), tmp_path / "run")
    assert not (tmp_path / "run" / "model.safetensors").exists() and not (tmp_path / "run" / "checkpoint.safetensors").exists()
    r = runner.invoke(app, ["train", "--out", str(tmp_path / "cli"), *[a for s in ["data_root=" + tiny_config.data_root, "val_size=200", "embed_dim=16", "width=4", "matryoshka_dims=[4,8,16]", "epochs=1", "batch_size=100", "lr=1.0e+12", "warmup_steps=0", "progress=false"] for a in ("--set", s)]])
    assert r.exit_code == 2 and "diverged" in r.stderr and "Traceback" not in r.output


def test_a_nan_loss_at_an_evaluated_prefix_is_never_dropped():
    from mrl.losses import MatryoshkaLossOutput
    from mrl.train.divergence import DivergedError, check_finite_loss

    ok = MatryoshkaLossOutput(total=torch.tensor(1.0), per_dim=torch.tensor([0.5, float("nan")]), active=torch.tensor([True, False]))
    check_finite_loss(ok, [4, 8], "step 1")  # NaN marks a prefix not sampled this step: fine
    bad = MatryoshkaLossOutput(total=torch.tensor(1.0), per_dim=torch.tensor([0.5, float("nan")]), active=torch.tensor([True, True]))
    with pytest.raises(DivergedError, match=r"dims \[8\]"):
        check_finite_loss(bad, [4, 8], "step 1")


def _rec(method, mode, seed, cfg, top1, dims=(4, 16)):
    from mrl.evaluate.records import config_key, model_config

    c = model_config(cfg)
    family = {"mrl": "MRL", "ff": "FF"}.get(mode, method)  # as mrl.evaluate.perdim keys a run: FF-4 and FF-16 are one family
    return {"method": method, "mode": mode, "seed": seed, "model": f"runs/{method}-{seed}-{cfg.get('epochs')}", "dims": [4, 16], "metric": "l2",
            "config": c, "config_key": config_key(family, c, "l2"), "per_dim": {str(d): {"top1": top1 + (0.1 if d == 16 else 0.0), "1nn": top1, "map@10": top1} for d in dims}}


def test_report_groups_by_configuration_and_shows_std_only_over_seeds(tmp_path):
    from mrl.report import aggregate, write_report

    base = {"mode": "mrl", "epochs": 3, "lr": 0.1, "seed": 0, "device": "cpu"}
    recs = [_rec("MRL", "mrl", s, {**base, "seed": s}, 0.5 + 0.01 * s) for s in (0, 1, 2)]
    recs.append(_rec("MRL", "mrl", 0, {**base, "epochs": 10}, 0.8))  # another model, not a fourth seed
    recs += [_rec("FF-4", "ff", 0, {"mode": "ff", "epochs": 3, "matryoshka_dims": [4]}, 0.4, dims=(4,)), _rec("FF-16", "ff", 0, {"mode": "ff", "epochs": 3, "matryoshka_dims": [16]}, 0.45, dims=(16,))]
    agg = aggregate(recs)
    assert set(agg) == {"MRL (epochs=3)", "MRL (epochs=10)", "FF"}
    assert agg["MRL (epochs=3)"][4]["top1"]["n"] == 3 and agg["MRL (epochs=10)"][4]["top1"] == {"mean": 0.8, "std": 0.0, "n": 1}
    assert agg["FF"][4]["top1"]["n"] == 1 and agg["FF"][16]["top1"]["n"] == 1  # FF-d: one model per d, one row
    paths = write_report(recs, tmp_path / "rep")
    md = paths["md"].read_text()
    assert "| MRL (epochs=3) | 51.0 ± 1.0 |" in md and "| MRL (epochs=10) | 80.0 |" in md
    assert "PCA" not in md.split("Runs per row")[0]
    with pytest.raises(MRLError, match="share seed"):
        aggregate([*recs, recs[0]])  # the same run passed twice is not a new seed


def test_report_html_keeps_every_markdown_line_and_fits_1400px(tmp_path):
    from PIL import Image

    from mrl.report import write_report

    cfg = {"mode": "mrl", "epochs": 3}
    recs = [_rec("MRL", "mrl", 0, cfg, 0.5), _rec("FF-16", "ff", 0, {"mode": "ff", "matryoshka_dims": [16]}, 0.6, dims=(16,))]
    recs.append({**_rec("PCA", "pca", 0, {}, 0.3), "config": {"width": 16}, "config_key": "p"})
    recs.append({**_rec("Random", "random", 0, {}, 0.2), "config": {"width": 16}, "config_key": "r"})
    paths = write_report(recs, tmp_path / "rep", notes="Fashion-MNIST <test> & notes")
    page = paths["html"].read_text()
    text = html.unescape(re.sub(r"<[^>]+>", "\n", page))
    for line in paths["md"].read_text().splitlines():
        line = line.strip()
        if not line or set(line) <= set("|-"):
            continue
        if line.startswith("!["):
            assert 'src="per_dim.png"' in page
            continue
        for part in (p.strip() for p in line.lstrip("#").split("|")):
            assert part in text, part
    assert "PCA: the FF-16 embeddings projected" in page and "Random: a random d-subset of the FF-16" in page
    assert "max-width:1340px" in page and "img{max-width:100%" in page
    width, _ = Image.open(paths["png"]).size
    assert width <= 1250


def test_embed_text_and_apply_adaptor_write_sidecars(tmp_path):
    from mrl.train.adaptor import AdaptorConfig, fit_adaptor

    x = matryoshka_like(80, 8, 0)
    save_npy(tmp_path / "x.npy", x)
    fit_adaptor(x, AdaptorConfig(matryoshka_dims=[4, 8], steps=2, batch_size=32, neighbours=2, progress=False), tmp_path / "ad")
    r = runner.invoke(app, ["apply-adaptor", str(tmp_path / "ad"), "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "y.npy")])
    assert r.exit_code == 0, r.output
    side = json.loads((tmp_path / "y.json").read_text())
    y = np.load(tmp_path / "y.npy")
    assert side["format"] == "mrl.embeddings" and side["dim"] == 8 and side["count"] == 80 and side["source"] == str(tmp_path / "x.npy") and side["normalized"] is False
    import hashlib

    assert side["sha256"] == hashlib.sha256(y.tobytes()).hexdigest() and side["checksum"].startswith("sha256:")
    (tmp_path / "t.txt").write_text("a cat\na dog sleeps\n")
    r = runner.invoke(app, ["embed-text", "all-MiniLM-L6-v2", "--input", str(tmp_path / "t.txt"), "--out", str(tmp_path / "t.npy"), "--truncate-dim", "64"])
    assert r.exit_code == 0, r.output
    side = json.loads((tmp_path / "t.json").read_text())
    assert side["model"] == "all-MiniLM-L6-v2" and side["dim"] == 64 and side["truncate_dim"] == 64 and side["normalized"] is True and side["count"] == 2
    r = runner.invoke(app, ["embed-text", "all-MiniLM-L6-v2", "--input", str(tmp_path / "t.txt"), "--out", str(tmp_path / "t.npy")])
    assert r.exit_code == 2 and "--overwrite" in r.stderr  # the sidecar-guarded output is not replaced silently


def test_search_reports_early_exit_only_when_on(tmp_path):
    save_npy(tmp_path / "x.npy", matryoshka_like(300, 16, 0))
    assert runner.invoke(app, ["index", "build", str(tmp_path / "idx"), "--vectors", str(tmp_path / "x.npy"), "--metric", "ip"]).exit_code == 0
    r = runner.invoke(app, ["index", "search", str(tmp_path / "idx"), "--queries", str(tmp_path / "x.npy"), "--funnel", "4:50 -> 16:10"])
    assert r.exit_code == 0 and "early exit" not in r.output, r.output
    r = runner.invoke(app, ["index", "search", str(tmp_path / "idx"), "--queries", str(tmp_path / "x.npy"), "--funnel", "4:50 -> 8:20 -> 16:10", "--early-exit"])
    assert r.exit_code == 0 and "early exit saved" in r.output, r.output


def test_progress_bars_print_whole_lines_when_stderr_is_not_a_terminal(capsys, monkeypatch):
    from mrl.progress import progress

    monkeypatch.setenv("MRL_PROGRESS_INTERVAL", "3600")
    for _ in progress(range(1000), desc="work"):
        pass
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b[" not in err
    assert 1 <= len(err.splitlines()) <= 3  # start and end only, not one line per step


def test_help_shows_no_bool_metavar_after_flags():
    r = runner.invoke(app, ["index", "build", "--help"], env={"COLUMNS": "200"})
    line = next(ln for ln in r.output.splitlines() if "--overwrite" in ln)
    assert "<bool>" not in line and "Replace a previous index" in line


# --------------------------------------------------------------------------- corruption caught on load (issue 25 §3.3)
def _run_folder(tmp_path, cfg):
    """A run folder as training writes it (manifest, model.safetensors, config.json), without training."""
    from mrl.io import open_output, write_json
    from mrl.models.classifier import build_classifier
    from mrl.train.checkpoint import save_model

    c = cfg.to_dict()
    net = build_classifier(backbone=c["backbone"], embed_dim=c["embed_dim"], num_classes=10, matryoshka_dims=c["matryoshka_dims"], mode=c["mode"], width=c["width"])
    run = tmp_path / "run"
    with open_output(run, "mrl.run") as out:
        with out.file("model.safetensors") as p:
            save_model(p, net, c, 10)
        with out.file("config.json") as p:
            write_json(p, c)
    return run


def _edit_header(path, edit):
    """Rewrite a safetensors file's JSON header through ``edit(metadata)``, keeping the tensors."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    edit(header["__metadata__"])
    new = json.dumps(header).encode()
    new += b" " * (-len(new) % 8)
    path.write_bytes(len(new).to_bytes(8, "little") + new + raw[8 + n :])


def _set_config(meta, **changes):
    meta["config"] = json.dumps({**json.loads(meta["config"]), **changes})


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda run: (run / "manifest.json").write_text((run / "manifest.json").read_text().replace('"complete"', '"done"')), "manifest.json fails its checksum"),
        (lambda run: (run / "config.json").write_text((run / "config.json").read_text().replace('"seed": 0', '"seed": 7')), "config.json does not match its size or SHA-256 in .*manifest.json"),
        (lambda run: _edit_header(run / "model.safetensors", lambda m: _set_config(m, matryoshka_dims=[8, 32])), "model.safetensors does not match its size or SHA-256"),
        (lambda run: ((run / "manifest.json").unlink(), _edit_header(run / "model.safetensors", lambda m: _set_config(m, seed=5))), "fails its metadata checksum: its header"),
        (lambda run: ((run / "manifest.json").unlink(), _edit_header(run / "model.safetensors", lambda m: _set_config(m, matryoshka_dims=[8, 32]))), "fails its metadata checksum"),
        (lambda run: (run / "config.json").unlink(), "config.json is missing although .*manifest.json lists it"),
    ],
    ids=["manifest", "config-json", "header-with-manifest", "header-seed", "header-dims", "config-deleted"],
)
def test_tampered_run_folder_is_refused_on_load(tiny_config, tmp_path, tamper, message):
    from mrl.train.checkpoint import load_model

    run = _run_folder(tmp_path, tiny_config)
    load_model(run)  # the untouched folder loads
    tamper(run)
    with pytest.raises(MRLError, match=message):
        load_model(run)


def test_mrl_embed_exits_2_with_one_line_on_a_tampered_run(tiny_config, tmp_path):
    run = _run_folder(tmp_path, tiny_config)
    (run / "config.json").write_text((run / "config.json").read_text().replace('"seed": 0', '"seed": 7'))
    r = runner.invoke(app, ["embed", str(run), "--out", str(tmp_path / "e.npy")])
    assert r.exit_code == 2 and "config.json does not match its size or SHA-256" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "e.npy").exists()


def test_an_index_attached_build_json_is_verified_on_load(tmp_path):
    from mrl.index import MatryoshkaIndex

    x = np.random.default_rng(0).normal(size=(64, 16)).astype(np.float32)
    idx = MatryoshkaIndex(16)
    idx.add(x)
    idx.save(tmp_path / "idx", attach={"build.json": b'{"seconds": 1.0}\n'})
    MatryoshkaIndex.load(tmp_path / "idx")
    (tmp_path / "idx" / "build.json").write_text('{"seconds": 9.0}\n')
    with pytest.raises(MRLError, match="build.json fails its SHA-256 checksum"):
        MatryoshkaIndex.load(tmp_path / "idx")
    r = runner.invoke(app, ["index", "info", str(tmp_path / "idx")])
    assert r.exit_code == 2 and "build.json" in r.output


def test_tampered_adaptor_folder_is_refused_on_load(tmp_path):
    from mrl.models.adaptor import MatryoshkaAdaptor, load_adaptor, save_adaptor

    save_adaptor(MatryoshkaAdaptor(8), {"matryoshka_dims": [4, 8]}, tmp_path / "ad")
    load_adaptor(tmp_path / "ad")
    cfg = tmp_path / "ad" / "adaptor.json"
    cfg.write_text(cfg.read_text().replace('"dim": 8', '"dim": 9'))
    with pytest.raises(MRLError, match="adaptor.json does not match its size or SHA-256"):
        load_adaptor(tmp_path / "ad")
