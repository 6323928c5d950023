"""`mrl index ...` as a user runs it: a rejected build changes nothing on disk, search and info print
what a person needs, and the option objects are the one place where options are checked."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mrl.cli import app
from mrl.io import save_npy
from tests.test_bad_inputs import tree_digest
from tests.test_funnel import matryoshka_like

runner = CliRunner()
DIM = 16


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """Vectors, queries, metadata (5 rows 'en') and an index built by the CLI with a default funnel."""
    w = tmp_path_factory.mktemp("idxcli")
    x = matryoshka_like(300, DIM, 3)
    save_npy(w / "x.npy", x)
    save_npy(w / "q.npy", x[:12].copy())
    save_npy(w / "x8.npy", np.zeros((3, 8), np.float32))
    (w / "meta.jsonl").write_text("".join(json.dumps({"lang": "en" if i < 5 else "de"}) + "\n" for i in range(300)))
    r = runner.invoke(app, ["index", "build", str(w / "idx"), "--vectors", str(w / "x.npy"), "--meta", str(w / "meta.jsonl"), "--funnel", "8:50 -> 16:10"])
    assert r.exit_code == 0, r.output
    return w


BAD_BUILD_OPTIONS = [
    ("first-stage-garbage", ["--first-stage", "abc"], "cannot parse funnel stage"),
    ("first-stage-too-wide", ["--first-stage", "64"], "exceeds the 16-dim"),
    ("confidence-2", ["--recall-target", "0.9", "--confidence", "2"], "--confidence"),
    ("k-0", ["--recall-target", "0.9", "--k", "0"], "--k"),
    ("k-above-count", ["--recall-target", "0.9", "--k", "301"], "exceeds the 300"),
    ("sample-0", ["--recall-target", "0.9", "--sample", "0"], "--sample"),
    ("sample-0-old-name", ["--target-recall", "0.9", "--sample", "0"], "--sample"),
    ("threads-0", ["--threads", "0"], "--threads"),
    ("threads-negative", ["--threads", "-4"], "--threads"),
    ("queries-wrong-width", ["--recall-target", "0.9", "--queries", "{ws}/x8.npy"], "dim 8"),
    ("funnel-too-wide", ["--funnel", "8:50 -> 64:10"], "reaches dim 64"),
    ("both-names-differ", ["--recall-target", "0.9", "--target-recall", "0.8"], "--recall-target once"),
    # fails only after the build (no first stage fits the budget): the staging folder is discarded
    ("tuning-fails-after-build", ["--recall-target", "0.9", "--max-ram-per-vector", "1", "--sample", "50"], "--max-ram-per-vector"),
]


@pytest.mark.parametrize("overwrite", [True, False], ids=["over-old-index", "new-folder"])
@pytest.mark.parametrize(("extra", "hint"), [c[1:] for c in BAD_BUILD_OPTIONS], ids=[c[0] for c in BAD_BUILD_OPTIONS])
def test_rejected_build_leaves_the_disk_exactly_as_it_was(ws, extra, hint, overwrite):
    target = ws / ("idx" if overwrite else "new_idx")
    before = tree_digest(ws)
    args = ["index", "build", str(target), "--vectors", str(ws / "x.npy"), *[a.format(ws=ws) for a in extra], *(["--overwrite"] if overwrite else [])]
    r = runner.invoke(app, args)
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.exit_code == 2 and len(lines) == 1 and hint in lines[0], r.output
    assert tree_digest(ws) == before, "a rejected build changed files on disk"


def test_user_tuning_md_refused_before_anything_is_written(ws):
    (ws / "idx" / "tuning.md").write_text("my notes")
    try:
        before = tree_digest(ws)
        r = runner.invoke(app, ["index", "build", str(ws / "idx"), "--vectors", str(ws / "x.npy"), "--recall-target", "0.9", "--overwrite"])
        assert r.exit_code == 2 and "was not written by an index" in r.stderr, r.output
        assert tree_digest(ws) == before
        r = runner.invoke(app, ["tune", str(ws / "idx"), "--recall-target", "0.9"])
        assert r.exit_code == 2 and "tuning.md" in r.stderr and tree_digest(ws) == before, r.output
    finally:
        (ws / "idx" / "tuning.md").unlink()


def test_overwrite_build_replaces_the_index_keeps_user_files_and_leaves_no_staging(tmp_path):
    x = matryoshka_like(200, DIM, 4)
    save_npy(tmp_path / "x.npy", x)
    idx = tmp_path / "idx"
    assert runner.invoke(app, ["index", "build", str(idx), "--vectors", str(tmp_path / "x.npy")]).exit_code == 0
    (idx / "notes.txt").write_text("mine")
    r = runner.invoke(app, ["index", "build", str(idx), "--vectors", str(tmp_path / "x.npy"), "--recall-target", "0.9", "--sample", "50", "--overwrite"])
    assert r.exit_code == 0, r.output
    assert (idx / "notes.txt").read_text() == "mine" and (idx / "tuning.md").is_file()
    assert json.loads((idx / "manifest.json").read_text())["tuning"]["target_recall"] == 0.9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx", "x.npy"]  # no hidden staging folder left


def test_search_prints_hits_and_the_funnel_it_ran(ws):
    r = runner.invoke(app, ["index", "search", str(ws / "idx"), "--queries", str(ws / "q.npy"), "--k", "5"])
    assert r.exit_code == 0, r.output
    hits = [ln for ln in r.stdout.splitlines() if ln.startswith("query ")]
    assert len(hits) == 3 and hits[0].startswith("query 0: 0 (1.0000)")  # each stored vector finds itself first
    assert "with funnel 8:50 -> 16:5:" in r.stderr, r.stderr  # k=5 was run, not the stored 16:10
    r = runner.invoke(app, ["index", "search", str(ws / "idx"), "--queries", str(ws / "q.npy"), "--k", "3", "--show", "0"])
    assert r.exit_code == 0 and "query 0" not in r.stdout and "8:50 -> 16:3" in r.stderr


def test_search_with_a_selective_filter_counts_the_vectors_it_scored(ws):
    r = runner.invoke(app, ["index", "search", str(ws / "idx"), "--queries", str(ws / "q.npy"), "--k", "3", "--filter", 'lang == "en"'])
    assert r.exit_code == 0, r.output
    assert "  8:50: 5 vectors scored" in r.stderr and "  16:3: 5 vectors scored" in r.stderr, r.stderr  # was "0 vectors scored"


def test_info_prints_a_summary_and_json_on_request(ws):
    r = runner.invoke(app, ["index", "info", str(ws / "idx")])
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert len(lines) <= 8 and "300 live vectors x 16 dims" in lines[0] and "funnel: 8:50 -> 16:10" in r.stdout and "lang (str)" in r.stdout
    r = runner.invoke(app, ["index", "info", str(ws / "idx"), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["count"] == 300


def test_search_of_huge_vectors_prints_no_numpy_warnings(ws):
    save_npy(ws / "huge.npy", (matryoshka_like(12, DIM, 3) * 1e30).astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow warning now fails the command
        r = runner.invoke(app, ["index", "search", str(ws / "idx"), "--queries", str(ws / "huge.npy"), "--show", "1"])
    assert r.exit_code == 0, (r.output, r.exception)
    assert r.stdout.startswith("query 0: 0 (1.0000)") and "Warning" not in r.output


def test_attach_texts_ignores_deleted_ids(tmp_path):
    save_npy(tmp_path / "x.npy", matryoshka_like(50, DIM, 5))
    idx = tmp_path / "idx"
    assert runner.invoke(app, ["index", "build", str(idx), "--vectors", str(tmp_path / "x.npy")]).exit_code == 0
    assert runner.invoke(app, ["index", "delete", str(idx), "--ids", "0,1,2"]).exit_code == 0
    (tmp_path / "t.jsonl").write_text("".join(json.dumps({"id": i, "text": f"passage {i}"}) + "\n" for i in range(3, 50)))
    r = runner.invoke(app, ["index", "attach-texts", str(idx), "--texts", str(tmp_path / "t.jsonl")])
    assert r.exit_code == 0 and "47 live vectors" in r.stderr, r.output  # was refused: "3 of the index's 47 ids have no passage"


def test_options_are_one_object_per_command_and_checked_when_made():
    import inspect

    from mrl.cli import index_build, index_cmd, index_options, index_output
    from mrl.cli.index_options import BuildOptions, SearchOptions, TuneOptions
    from mrl.errors import MRLError

    helpers = 0
    for mod in (index_cmd, index_build, index_options, index_output):
        for name, fn in inspect.getmembers(mod, inspect.isfunction):
            if fn.__module__ == mod.__name__ and not name.startswith("index_") and name != "tune_cmd":  # Typer commands take their options by name
                params = [p for p in inspect.signature(fn).parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
                assert len(params) <= 6, (name, len(params))  # `_build` and `_tune_and_report` carried 18
                helpers += 1
    assert helpers >= 10
    with pytest.raises(MRLError, match="--confidence"):
        TuneOptions(0.9, confidence=2.0)
    with pytest.raises(MRLError, match="--threads"):
        BuildOptions(Path("i"), Path("x.npy"), threads=0)
    with pytest.raises(MRLError, match="not both"):
        SearchOptions(Path("i"), Path("q.npy"), funnel="8:10", recall_target=0.9)
    assert dataclasses.is_dataclass(BuildOptions) and BuildOptions(Path("i"), Path("x.npy"), first_stages=("8",)).stages[0].dim == 8


def test_the_milvus_backend_does_not_import_the_backend_module():
    """No import circle: index/backend.py -> backends/milvus.py only (choose_funnel lives in index/frontier.py)."""
    import ast

    import mrl.index.backends.milvus as milvus_mod
    import mrl.index.matryoshka_index as mi_mod

    for mod in (milvus_mod, mi_mod):
        tree = ast.parse(Path(mod.__file__).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert "mrl.index.backend" not in imported, mod.__name__
    from mrl.index.backend import choose_funnel
    from mrl.index.frontier import choose_funnel as down

    assert choose_funnel is down


def test_a_multi_line_library_error_is_printed_on_one_line(capsys):
    import torch

    from mrl.cli.console import friendly
    from mrl.errors import CheckpointError

    def load() -> None:
        try:
            torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.Linear(4, 2)).load_state_dict(torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.Linear(8, 2)).state_dict())
        except RuntimeError as exc:
            raise CheckpointError(f"run/model.safetensors weights do not match the architecture in its metadata ({exc}); retrain or check the path.") from exc

    import typer

    with pytest.raises(typer.Exit):
        friendly(load)()
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: run/model.safetensors") and "size mismatch" in err and "retrain" in err, err


def _as_unprivileged_user(args: list[str]) -> subprocess.CompletedProcess:
    """Run ``python -m mrl ARGS`` as a user without root's override of file permissions."""
    cmd = [sys.executable, "-m", "mrl", *args]
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot drop privileges to test permissions")
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd="/", env={**os.environ, "HOME": "/tmp"})


def test_permission_errors_are_one_line_not_a_traceback():
    root = Path(tempfile.mkdtemp(prefix="mrl-perm-", dir="/tmp"))
    try:
        save_npy(root / "x.npy", matryoshka_like(40, DIM, 6))
        assert runner.invoke(app, ["index", "build", str(root / "idx"), "--vectors", str(root / "x.npy")]).exit_code == 0
        for p in [root, *root.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        ids = next((root / "idx").glob("ids.*.npy"))
        ids.chmod(0)  # an unreadable index file
        r = _as_unprivileged_user(["index", "search", str(root / "idx"), "--queries", str(root / "x.npy")])
        assert r.returncode == 2 and r.stderr.startswith("error: permission denied") and str(ids) in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr[-600:]
        ids.chmod(0o644)
        (root / "idx").chmod(0o555)  # a read-only index folder
        before = tree_digest(root)
        r = _as_unprivileged_user(["index", "delete", str(root / "idx"), "--ids", "1,2"])
        assert r.returncode == 2 and f"cannot write in {root / 'idx'}" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr[-600:]
        root.chmod(0o555)  # an unwritable parent
        r = _as_unprivileged_user(["index", "build", str(root / "new"), "--vectors", str(root / "x.npy")])
        assert r.returncode == 2 and "permission denied" in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr[-600:]
        assert tree_digest(root) == before
    finally:
        for p in [root, *root.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        shutil.rmtree(root)


def test_meta_lines_that_are_not_json_objects_are_refused_with_their_line(tmp_path):
    """--meta is read by the project's one JSON Lines reader (mrl.data.jsonl): each bad line is named."""
    from mrl.cli.index_options import load_metadata
    from mrl.errors import MRLError

    meta = tmp_path / "m.jsonl"
    meta.write_text('{"lang": "en"}\n{"lang": \n')
    with pytest.raises(MRLError, match=r"--meta .*m\.jsonl line 2 is not valid JSON .*write one object like"):
        load_metadata(meta, 2)
    meta.write_text('{"lang": "en"}\n\n["en"]\n')
    with pytest.raises(MRLError, match=r"line 3 is a JSON list, not an object"):
        load_metadata(meta, 2)
    meta.write_text('{"lang": "en"}\n\n{"lang": "de"}\n')
    assert load_metadata(meta, 2) == [{"lang": "en"}, {"lang": "de"}]
