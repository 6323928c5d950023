import json

from typer.testing import CliRunner

from mrl.cli import app

runner = CliRunner()


def _train_args(fmnist_dir, out, *extra):
    sets = ["data_root=" + str(fmnist_dir), "val_size=200", "embed_dim=16", "width=4", "matryoshka_dims=[4,8,16]", "epochs=1", "batch_size=100", "warmup_steps=1", "progress=false"]
    return ["train", "--out", str(out), *[a for s in sets for a in ("--set", s)], *extra]


def test_train_eval_report_embed_end_to_end(fmnist_dir, tmp_path):
    r = runner.invoke(app, _train_args(fmnist_dir, tmp_path / "mrl"))
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, _train_args(fmnist_dir, tmp_path / "ff", "--set", "mode=ff", "--set", "matryoshka_dims=[16]"))
    assert r.exit_code == 0, r.output
    res = tmp_path / "res.json"
    r = runner.invoke(app, ["eval", str(tmp_path / "mrl"), str(tmp_path / "ff"), "--baselines", "pca,random", "--out", str(res), "--data-root", str(fmnist_dir)])
    assert r.exit_code == 0, r.output
    table = r.stdout.splitlines()  # the per-dim table (issue 25 2.11: `mrl eval` printed none)
    assert table[0].split() == ["method", "metric", "d=4", "d=8", "d=16"] and any(ln.startswith("MRL ") and " top1 " in ln for ln in table), r.stdout
    doc = json.loads(res.read_text())
    assert [x["method"] for x in doc["runs"]] == ["MRL", "FF-16", "PCA", "Random"]
    assert set(doc["runs"][0]["per_dim"]) == {"4", "8", "16"}
    assert {"top1", "1nn", "map@10", "recall@10"} <= set(doc["runs"][0]["per_dim"]["4"])
    r = runner.invoke(app, ["report", str(res), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| MRL |" in md and "| PCA |" in md and (tmp_path / "rep" / "per_dim.png").stat().st_size > 1000
    r = runner.invoke(app, ["report", str(res), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 2 and "--overwrite" in r.output
    r = runner.invoke(app, ["embed", str(tmp_path / "mrl"), "--out", str(tmp_path / "e.npy"), "--data-root", str(fmnist_dir)])
    assert r.exit_code == 0, r.output
    side = json.loads((tmp_path / "e.json").read_text())
    assert side["count"] == 300 and side["dim"] == 16 and side["matryoshka_dims"] == [4, 8, 16]


def test_errors_are_one_clear_line_and_exit_2(fmnist_dir, tmp_path):
    r = runner.invoke(app, _train_args(fmnist_dir, tmp_path / "x", "--set", "matryoshka_dims=[8,4,16]"))
    assert r.exit_code == 2 and "strictly increasing" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["train", "--out", str(tmp_path / "y"), "--set", "data_root=" + str(tmp_path / "none")])
    assert r.exit_code == 2 and "apt-get install dataset-fashion-mnist" in r.output
    r = runner.invoke(app, ["eval", str(tmp_path / "nope"), "--out", str(tmp_path / "r.json"), "--data-root", str(fmnist_dir)])
    assert r.exit_code == 2 and "does not exist" in r.output
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = runner.invoke(app, ["report", str(bad), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 2 and "not valid JSON" in r.output


def test_demo_refuses_a_folder_with_results(tmp_path):
    (tmp_path / "demo" / "report").mkdir(parents=True)
    (tmp_path / "demo" / "report" / "report.md").write_text("old")
    r = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo")])
    assert r.exit_code == 2 and "--overwrite" in r.output
    assert (tmp_path / "demo" / "report" / "report.md").read_text() == "old"


def test_version_and_short_help():
    import mrl

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"mrl {mrl.__version__}"
    r = runner.invoke(app, ["train", "-h"])
    assert r.exit_code == 0 and "--out" in r.output


def test_errors_with_brackets_are_printed_verbatim(tmp_path):
    # A path with [...] must not be parsed as rich markup (it used to raise MarkupError).
    bad = tmp_path / "[bold]x[/]" / "missing.yaml"
    r = runner.invoke(app, ["train", "--out", str(tmp_path / "o"), "--config", str(bad)])
    assert r.exit_code == 2 and "[bold]x[/]" in r.output and "Traceback" not in r.output


def test_public_api_lazy_exports():
    import mrl

    assert mrl.parse_dims("8,16,...,64") == (8, 16, 32, 64)
    assert set(mrl.__all__) >= {"MatryoshkaIndex", "TrainConfig", "fit_adaptor", "__version__"}
    for name in mrl.__all__[1:]:
        assert getattr(mrl, name) is not None


def test_one_encode_family_with_old_names_hidden_but_working(tmp_path):
    """Issue 25 2.10: `mrl encode` (texts; OUT.npy = one array, any other OUT = shards) and `mrl embed` (runs);
    `embed-text` and `--target-recall` stay as hidden aliases."""
    r = runner.invoke(app, ["--help"])
    import re

    assert r.exit_code == 0 and re.search(r"│ encode ", r.output) and re.search(r"│ embed ", r.output) and not re.search(r"│ embed-text ", r.output), r.output
    import click
    from typer.main import get_command

    root = get_command(app)
    for path in (["index", "build"], ["index", "push"], ["tune"], ["index", "search"]):
        cmd = root
        for name in path:
            cmd = cmd.get_command(click.Context(cmd), name)
        shown = {o for p in cmd.params if not getattr(p, "hidden", False) for o in p.opts}
        hidden = {o for p in cmd.params if getattr(p, "hidden", False) for o in p.opts}
        assert "--recall-target" in shown and "--target-recall" in hidden and "--target-recall" not in shown, path
    (tmp_path / "t.txt").write_text("a cat\na dog\n")
    r = runner.invoke(app, ["encode", "m", str(tmp_path / "t.txt"), "--out", str(tmp_path / "t.npy"), "--ray"])
    assert r.exit_code == 2 and "applies to a shard folder" in r.stderr, r.output
    r = runner.invoke(app, ["encode", "m", str(tmp_path / "t.txt"), "--out", str(tmp_path / "shards"), "--truncate-dim", "8"])
    assert r.exit_code == 2 and "full-width" in r.stderr, r.output
    r = runner.invoke(app, ["encode", "all-MiniLM-L6-v2", str(tmp_path / "t.txt"), "--out", str(tmp_path / "new.npy"), "--truncate-dim", "32"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["embed-text", "all-MiniLM-L6-v2", "--input", str(tmp_path / "t.txt"), "--out", str(tmp_path / "old.npy"), "--truncate-dim", "32"])
    assert r.exit_code == 0, r.output
    import numpy as np

    new, old = np.load(tmp_path / "new.npy"), np.load(tmp_path / "old.npy")
    assert new.shape == (2, 32) and np.allclose(new, old, atol=1e-6)
