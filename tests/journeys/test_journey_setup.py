"""Journeys of the README's first block: `make demo` and the environment `make setup` builds."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import REPO, mrl_process, python_process, run_commands

README_COMMANDS = {
    # `make demo` runs `mrl demo --out demo-output --overwrite` after set-up (checked against the Makefile below).
    "test_make_demo_runs_mrl_demo_and_writes_a_per_dim_report": ["make demo", "mrl demo --out demo-output --overwrite"],
    # `make test` runs ruff and pytest over tests/, journeys included (checked below).
    "test_make_test_runs_the_journeys": ["make test"],
}
README_BLOCKS: dict[str, list[str]] = {}

# small scale: 1 epoch on 256 images, a narrow D = 32 model (the README's is 512), 200 validation images
QUICK = ["--epochs", "1", "--train-subset", "256", "--set", "val_size=200", "--set", "width=8", "--set", "embed_dim=32", "--set", "matryoshka_dims=2,4,...,32"]


def test_plain_interpreter_imports_sentence_transformers_and_torchvision_and_encodes(tmp_path: Path, minilm_path: str):
    """Issue 25 §2.2: no `import mrl` first, no workaround: the venv's torch/torchvision pair loads its ops."""
    code = f"""
from sentence_transformers import SentenceTransformer
import torchvision, torch
assert torchvision.extension._has_ops(), "torchvision's compiled ops do not load"
torchvision.ops.nms(torch.tensor([[0., 0., 1., 1.]]), torch.tensor([1.]), 0.5)
import sys
assert "mrl" not in sys.modules
model = SentenceTransformer({minilm_path!r}, device="cpu")
emb = model.encode(["a red boat near the sea"], normalize_embeddings=True)
print(emb.shape)
"""
    proc = python_process(code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("(1, 384)")


def test_torchvision_first_then_sentence_transformers(tmp_path: Path):
    proc = python_process("import torchvision\nfrom sentence_transformers import SentenceTransformer\nimport mrl\nprint('ok')", tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_make_demo_runs_mrl_demo_and_writes_a_per_dim_report(tmp_path: Path, fmnist_small: Path):
    """Issue 25 §2.0: `make demo` is `mrl demo --out demo-output --overwrite`; run it at small scale."""
    recipe = re.search(r"^demo:.*\n\t(.+)$", (REPO / "Makefile").read_text(), re.M)
    assert recipe and recipe.group(1).split() == ["$(VENV)/bin/mrl", "demo", "--out", "demo-output", "--overwrite"]
    args = ["demo", "--out", "demo-output", "--overwrite", "--data-root", str(fmnist_small), *QUICK]
    proc = mrl_process(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = tmp_path / "demo-output" / "report"
    for name in ("report.md", "report.html", "per_dim.png"):
        assert (report / name).stat().st_size > 0, name
    md = (report / "report.md").read_text()
    # one row per method and prefix: MRL and FF-512 and both baselines, d = 2 ... 512
    assert "| method | d=2 | d=4 | d=8 | d=16 | d=32 |" in md, md[:2000]
    for method in ("MRL", "FF", "PCA", "Random"):  # one row per method in each per-dim table
        rows = [line for line in md.splitlines() if line.startswith(f"| {method} |")]
        assert len(rows) >= 3 and all(len(r.split("|")) == 8 for r in rows), (method, md[:3000])
    assert "first 256 training images" in md
    assert (tmp_path / "demo-output" / "runs" / "ff-32").is_dir()

    # a second demo into the same folder refuses with one line and changes nothing
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "demo-output").rglob("*")}
    again = mrl_process(["demo", "--out", "demo-output", "--data-root", str(fmnist_small), *QUICK], tmp_path)
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1 and "--overwrite" in again.stderr, again.stderr
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "demo-output").rglob("*")} == before


def test_demo_validates_its_options_before_writing(tmp_path: Path, fmnist_small: Path):
    bad = [
        f"mrl demo --out d --data-root {fmnist_small} --train-subset 0",
        f"mrl demo --out d --data-root {fmnist_small} --epochs 0",
        f"mrl demo --out d --data-root {fmnist_small} --set dataset=imagefolder",
        f"mrl demo --out d --data-root {fmnist_small} --set no_such_key=1",
        "mrl demo --out d --data-root missing-folder",
    ]
    for r in run_commands(bad, tmp_path, check=False, stop=False):
        assert r.rc == 2 and len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: "), (r.command, r.stderr)
    assert not (tmp_path / "d").exists()


def test_make_test_runs_the_journeys():
    make = (REPO / "Makefile").read_text()
    recipe = re.search(r"^test:.*\n((?:\t.+\n)+)", make, re.M)
    assert recipe and "pytest" in recipe.group(1)
    import tomllib

    assert tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]  # tests/journeys included
