"""Every bad input a careless user can give the CLI ends in one clear line, exit code 2, and no change on disk.

Each case runs one command inside a workspace of prepared files (a trained run, an index, an
adaptor, broken files) and asserts: exit code 2, exactly one line on stderr naming the fix, no
traceback, and every file of the workspace byte-identical afterwards (hashes before and after).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mrl.cli import app
from mrl.io import save_npy, seal
from tests.test_funnel import matryoshka_like

runner = CliRunner()
DIM = 16


def tree_digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (hidden ones too), plus every folder, by relative path."""
    out = {}
    for dirpath, dirnames, files in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root) + "/"] = "dir"
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def ws(tmp_path_factory, fmnist_dir) -> Path:
    """The workspace: inputs, outputs of earlier commands, and broken files."""
    from mrl.index import MatryoshkaIndex
    from mrl.train import TrainConfig, train
    from mrl.train.adaptor import AdaptorConfig, fit_adaptor

    w = tmp_path_factory.mktemp("ws")
    x = matryoshka_like(200, DIM, 0)
    save_npy(w / "x.npy", x)
    save_npy(w / "x8.npy", x[:, :8].copy())
    save_npy(w / "one_col.npy", x[:, :1].copy())
    save_npy(w / "empty.npy", np.zeros((0, DIM), np.float32))
    save_npy(w / "ints.npy", np.arange(20, dtype=np.int64).reshape(4, 5))
    save_npy(w / "dup_ids.npy", np.array([1] * 200, dtype=np.int64))
    np.savez(w / "q.npz", q=x[:5])
    (w / "bad.npy").write_bytes((w / "x.npy").read_bytes()[:100])
    (w / "texts.txt").write_text("a cat\na dog\n")
    (w / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (w / "pairs_dup.tsv").write_text("anchor\tpositive\tanchor\ncar\tvehicle\tauto\n")
    (w / "afile").write_text("a file, not a folder")
    (w / "notes").mkdir()
    (w / "notes" / "mine.txt").write_text("the user's own notes")
    (w / "not_results.json").write_text(json.dumps({"hello": 1}))

    index = MatryoshkaIndex(DIM)
    index.add(x)
    index.build_first_stage("8:1")
    index.save(w / "idx")
    man = json.loads((w / "idx" / "manifest.json").read_text())
    shutil.copytree(w / "idx", w / "idx_edited")
    (w / "idx_edited" / "manifest.json").write_text(json.dumps({**man, "metric": "l2"}))
    shutil.copytree(w / "idx", w / "idx_types")
    (w / "idx_types" / "manifest.json").write_text(json.dumps(seal({**man, "count": "200"})))
    shutil.copytree(w / "idx", w / "idx_faiss")
    fs = w / "idx_faiss" / man["first_stages"][0]["file"]
    raw = bytearray(fs.read_bytes())
    raw[:4] = b"XXXX"  # FAISS cannot recognise the index type (same size, so only a checksum or FAISS notices)
    fs.write_bytes(bytes(raw))

    run = w / "run"
    train(TrainConfig(data_root=str(fmnist_dir), val_size=200, embed_dim=DIM, matryoshka_dims=[4, 8, 16], epochs=1, batch_size=100, warmup_steps=1, progress=False, width=4), run)
    from mrl.adaptive.cascade import Cascade

    Cascade(dims=(4, 16), thresholds=(0.9, -np.inf)).save(w / "cascade_other_dims.json")
    fit_adaptor(x, AdaptorConfig(matryoshka_dims=[4, 8, 16], steps=2, batch_size=32, neighbours=2, progress=False), w / "adaptor")
    (w / "pickled").mkdir()
    (w / "pickled" / "modules.json").write_text("[]")
    (w / "pickled" / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    (w / "bad.yaml").write_text("lr: [1, 2\n")
    return w


def T(name: str) -> str:  # placeholder for a workspace path in a case
    return "{ws}/" + name


TRAIN = ["train", "--out", T("new_run"), "--set", "data_root={fmnist}", "--set", "progress=false"]

# (case id, arguments, a fragment of the one-line message that names the fix)
CASES = [
    # funnel specs
    ("funnel-garbage", ["index", "search", T("idx"), "--queries", T("x.npy"), "--funnel", "abc"], "cannot parse funnel stage"),
    ("funnel-markup", ["index", "search", T("idx"), "--queries", T("x.npy"), "--funnel", "[bold]32:10[/]"], "[bold]32:10[/]"),
    ("funnel-dims-decrease", ["index", "search", T("idx"), "--queries", T("x.npy"), "--funnel", "16:50 -> 8:10"], "must increase"),
    ("funnel-k-grows", ["index", "search", T("idx"), "--queries", T("x.npy"), "--funnel", "8:10 -> 16:20"], "must not grow"),
    ("funnel-unknown-option", ["index", "search", T("idx"), "--queries", T("x.npy"), "--funnel", "8/fast:50 -> 16:10"], "unknown stage option"),
    ("funnel-binary-dim", ["index", "search", T("idx"), "--queries", T("x.npy"), "--funnel", "12/binary:50 -> 16:10"], "multiple of 8"),
    ("funnel-beyond-dim", ["index", "search", T("idx"), "--queries", T("x.npy"), "--funnel", "8:50 -> 999:10"], "reaches dim 999"),
    ("funnel-hnsw-binary", ["index", "build", T("new_idx"), "--vectors", T("x.npy"), "--funnel", "8/binary/hnsw:50 -> 16:10"], "scanned flat"),
    ("search-single-negative", ["index", "search", T("idx"), "--queries", T("x.npy"), "--single", "-3"], "--single must be 0"),
    ("funnel-k-above-count", ["index", "search", T("idx"), "--queries", T("x.npy"), "--k", "500"], "exceeds the 200 vectors"),
    # paths with brackets (rich markup) and config errors
    ("config-path-brackets", ["train", "--out", T("new_run"), "--config", T("[red]missing[/].yaml")], "[red]missing[/].yaml"),
    ("config-not-yaml", ["train", "--out", T("new_run"), "--config", T("bad.yaml")], "not valid YAML"),
    ("set-lr-not-a-number", [*TRAIN, "--set", "lr=fast"], "lr must be a number"),
    ("set-augment-maybe", [*TRAIN, "--set", "augment=maybe"], "augment must be true or false"),
    ("set-threads-negative", [*TRAIN, "--set", "threads=-1"], "threads must be a positive integer"),
    ("set-weight-decay-negative", [*TRAIN, "--set", "weight_decay=-1"], "weight_decay"),
    ("set-epochs-fraction", [*TRAIN, "--set", "epochs=1.5"], "epochs must be an integer"),
    ("set-dims-unsorted", [*TRAIN, "--set", "matryoshka_dims=[8,4,512]"], "strictly increasing"),
    ("set-dims-above-width", [*TRAIN, "--set", "embed_dim=16", "--set", "matryoshka_dims=[4,8,32]"], "16"),
    ("set-unknown-key", [*TRAIN, "--set", "learning_rate=0.1"], "unknown"),
    ("set-bad-mode", [*TRAIN, "--set", "mode=mrl-x"], "mode must be one of"),
    ("set-unknown-task", [*TRAIN, "--set", "task=audio"], "unknown task"),
    ("set-no-equals", [*TRAIN, "--set", "epochs"], "key=value"),
    ("train-out-is-a-file", ["train", "--out", T("afile"), "--set", "data_root={fmnist}"], "is a file"),
    ("train-out-holds-user-files", ["train", "--out", T("notes"), "--overwrite", "--set", "data_root={fmnist}"], "did not write"),
    ("train-nproc-zero", ["train", "--out", T("new_run"), "--nproc", "0"], "--nproc"),
    ("train-pairs-duplicate-header", ["train", "--out", T("new_text"), "--set", "task=text", "--set", "loss=mnrl", "--set", "dataset={ws}/pairs_dup.tsv", "--set", "progress=false"], "more than once"),
    # manifests and index files
    ("manifest-edited", ["index", "search", T("idx_edited"), "--queries", T("x.npy")], "fails its checksum"),
    ("manifest-wrong-type", ["index", "search", T("idx_types"), "--queries", T("x.npy")], "count"),
    ("faiss-corrupt-verified", ["index", "info", T("idx_faiss")], "checksum"),
    ("faiss-corrupt-unverified", ["index", "info", T("idx_faiss"), "--no-verify"], "FAISS first stage"),
    ("index-missing", ["index", "search", T("nope"), "--queries", T("x.npy")], "does not exist"),
    ("index-build-user-folder", ["index", "build", T("notes"), "--vectors", T("x.npy"), "--overwrite"], "did not write"),
    ("index-build-duplicate-ids", ["index", "build", T("new_idx"), "--vectors", T("x.npy"), "--ids", T("dup_ids.npy")], "distinct"),
    ("index-build-bad-metric", ["index", "build", T("new_idx"), "--vectors", T("x.npy"), "--metric", "hamming"], "metric must be one of"),
    ("index-build-bad-dtype", ["index", "build", T("new_idx"), "--vectors", T("x.npy"), "--dtype", "int8"], "dtype"),
    ("index-build-target-recall", ["index", "build", T("new_idx"), "--vectors", T("x.npy"), "--target-recall", "1.5"], "recall"),
    ("index-search-out-is-input", ["index", "search", T("idx"), "--queries", T("x.npy"), "--out", T("x.npy"), "--overwrite"], "input"),
    # tracebacks and wrong messages of issue 25 (3.7, 3.8)
    ("search-zero-queries", ["index", "search", T("idx"), "--queries", T("empty.npy")], "0 rows"),
    ("funnel-5000-digits", ["index", "search", T("idx"), "--queries", T("x.npy"), "--funnel", "8:" + "9" * 5000 + " -> 16:10"], "5000-digit"),
    ("add-id-beyond-int64", ["index", "add", T("idx"), "--vectors", T("x.npy"), "--ids", "99999999999999999999"], "64-bit"),
    ("build-sample-zero", ["index", "build", T("new_idx"), "--vectors", T("x.npy"), "--target-recall", "0.9", "--sample", "0"], "--sample"),
    ("tune-sample-zero", ["tune", T("idx"), "--recall-target", "0.9", "--sample", "0"], "--sample"),
    ("search-threads-zero", ["index", "search", T("idx"), "--queries", T("x.npy"), "--threads", "0"], "--threads"),
    ("build-threads-negative", ["index", "build", T("new_idx"), "--vectors", T("x.npy"), "--threads", "-4"], "--threads"),
    ("tune-threads-zero", ["tune", T("idx"), "--threads", "0"], "--threads"),
    ("build-vectors-is-a-folder", ["index", "build", T("new_idx"), "--vectors", T("notes")], "is a folder"),
    ("config-is-a-folder", ["train", "--out", T("new_run"), "--config", T("notes")], "is a folder"),
    ("info-of-a-file", ["index", "info", T("idx/manifest.json")], "is a file, not an index folder"),
    ("encode-threads-zero", ["encode", "all-MiniLM-L6-v2", T("texts.txt"), "--out", T("shards"), "--threads", "0"], "--threads"),
    ("push-prefix-dims-garbage", ["index", "push", T("idx"), "--milvus", T("m.db"), "--collection", "c", "--prefix-dims", "a,b"], "--prefix-dims"),
    # array inputs
    ("queries-npz", ["index", "search", T("idx"), "--queries", T("q.npz")], ".npz"),
    ("queries-ints", ["index", "search", T("idx"), "--queries", T("ints.npy")], "float"),
    ("queries-truncated", ["index", "search", T("idx"), "--queries", T("bad.npy")], "truncated"),
    ("queries-wrong-width", ["index", "search", T("idx"), "--queries", T("x8.npy")], "dim 8"),
    ("adapt-one-column", ["adapt", T("one_col.npy"), "--out", T("new_adaptor")], "at least 2"),
    ("adapt-unsorted-dims", ["adapt", T("x.npy"), "--out", T("new_adaptor"), "--dims", "8,4,16"], "strictly increasing"),
    ("adapt-threads-zero", ["adapt", T("x.npy"), "--out", T("new_adaptor"), "--threads", "0"], "--threads"),
    ("adapt-orthogonal-unknown", ["adapt", T("x.npy"), "--out", T("new_adaptor"), "--kind", "rotation", "--orthogonal", "qr"], "orthogonal must be one of"),
    ("adapt-into-its-input-folder", ["adapt", T("notes/../x.npy"), "--out", T("."), "--overwrite"], "did not write"),
    ("apply-adaptor-zero-rows", ["apply-adaptor", T("adaptor"), "--input", T("empty.npy"), "--out", T("y.npy")], "0 rows"),
    ("apply-adaptor-wrong-width", ["apply-adaptor", T("adaptor"), "--input", T("x8.npy"), "--out", T("y.npy")], "16-d"),
    ("apply-adaptor-not-an-adaptor", ["apply-adaptor", T("notes"), "--input", T("x.npy"), "--out", T("y.npy")], "not an adaptor folder"),
    ("embed-mixed-arguments", ["embed", "--adaptor", T("adaptor"), "--out", T("y.npy")], "use either"),
    ("embed-text-pickled-model", ["embed-text", T("pickled"), "--input", T("texts.txt"), "--out", T("t.npy")], "pickled"),
    ("embed-text-not-utf8", ["embed-text", "all-MiniLM-L6-v2", "--input", T("latin1.txt"), "--out", T("t.npy")], "UTF-8"),
    ("embed-bad-suffix", ["embed", T("run"), "--out", T("e.txt")], ".npy"),
    ("embed-bad-split", ["embed", T("run"), "--out", T("e.npy"), "--split", "dev"], "split"),
    # evaluation, cascades, reports
    ("eval-bad-metric", ["eval", T("run"), "--out", T("r.json"), "--metric", "hamming"], "metric must be one of"),
    ("cascade-eval-other-dims", ["cascade", "eval", T("run"), "--cascade", T("cascade_other_dims.json"), "--data-root", "{fmnist}"], "fit for dims"),
    ("cascade-fit-max-drop", ["cascade", "fit", T("run"), "--max-drop", "150"], "--max-drop"),
    ("cascade-fit-score", ["cascade", "fit", T("run"), "--score", "entropy"], "--score"),
    ("report-not-results", ["report", T("not_results.json"), "--out", T("new_report")], "not an `mrl eval` results file"),
    ("report-into-a-run", ["report", T("not_results.json"), "--out", T("run"), "--overwrite"], "not an `mrl eval` results file"),
]


@pytest.mark.parametrize(("args", "hint"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line_and_changes_nothing(ws, fmnist_dir, args, hint):
    argv = [a.format(ws=ws, fmnist=fmnist_dir) for a in args]
    before = tree_digest(ws)
    result = runner.invoke(app, argv)
    stderr = result.stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2, (argv, result.output, result.exception)
    assert "Traceback" not in result.output and "Traceback" not in stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert hint in lines[0], lines[0]
    assert tree_digest(ws) == before, "the command changed files on disk"


def test_the_table_covers_at_least_40_cases():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


def test_set_lr_in_scientific_notation_is_accepted():
    from mrl.train.recipe import load_recipe

    assert load_recipe(None, ["lr=1e-3"]).lr == pytest.approx(1e-3)
    assert load_recipe(None, ["task=text", "lr=2e-5"]).lr == pytest.approx(2e-5)


# Usage errors caught by the command-line parser itself (click): one line too, exit code 2.
USAGE_CASES = [
    ("missing-argument", ["eval", "--out", "r.json"], "Missing argument"),
    ("missing-option", ["eval", "run"], "Missing option '--out'"),
    ("bad-integer", ["index", "search", "idx", "--queries", "q.npy", "--k", "ten"], "'--k'"),
    ("bad-float", ["cascade", "fit", "run", "--max-drop", "much"], "'--max-drop'"),
    ("unknown-option", ["embed", "run", "--out", "e.npy", "--colour", "red"], "No such option: --colour"),
    ("unknown-command", ["evaluate"], "No such command 'evaluate'"),
    ("unknown-subcommand", ["index", "serch"], "No such command 'serch'"),
    ("option-without-value", ["train", "--out"], "'--out' requires an argument"),
]


@pytest.mark.parametrize(("args", "hint"), [c[1:] for c in USAGE_CASES], ids=[c[0] for c in USAGE_CASES])
def test_usage_error_is_one_line_naming_the_usage(args, hint):
    result = runner.invoke(app, args, prog_name="mrl")
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2, (args, result.output)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr  # click printed a usage line, a hint and a boxed message
    assert hint in lines[0] and "Usage: mrl " in lines[0] and " -h'" in lines[0], lines[0]
    assert not any(ch in result.output for ch in "╭│╰") and "Traceback" not in result.output


def _command_paths(group, prefix=()):
    import click

    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        yield (*prefix, name)
        if hasattr(cmd, "list_commands"):
            yield from _command_paths(cmd, (*prefix, name))


def test_help_of_every_command_shows_flags_without_a_value_placeholder():
    from typer.main import get_command

    paths = [(), *_command_paths(get_command(app))]
    assert len(paths) > 20
    for path in paths:
        for opt in ("-h", "--help"):
            result = runner.invoke(app, [*path, opt], prog_name="mrl")
            assert result.exit_code == 0 and "Usage: mrl" in result.output, (path, result.output)
            assert "<bool>" not in result.output, (path, opt, result.output)
    assert runner.invoke(app, []).exit_code == 2  # `mrl` alone still prints the help
