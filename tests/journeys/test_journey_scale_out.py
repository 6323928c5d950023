"""README "Scale out": the index CRUD commands on a local folder, the push to Milvus Lite, the python block."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import python_process, readme_python_block, run_commands

LOCAL = [
    "mrl index build idx/ --vectors db.npy --meta meta.jsonl --recall-target 0.99",
    "mrl index add idx/ --vectors new.npy --ids new_ids.npy --meta new.jsonl",
    "mrl index delete idx/ --ids 17,42",
    "mrl index search idx/ --queries q.npy --filter 'lang == \"en\" and year in [2023, 2024]' --recall-target 0.99 --out hits.npy",
    "mrl index compact idx/",
]
MILVUS = [
    "mrl index push idx/ --milvus mrl.db --collection docs",
    "mrl index search --milvus mrl.db --collection docs --queries q.npy --filter 'lang == \"en\"'",
]
README_COMMANDS = {"test_scale_out_local_index": LOCAL, "test_scale_out_milvus_lite": MILVUS}
README_BLOCKS = {"test_scale_out_python_block": ["from mrl.index.backend import open_index"]}

N, D = 600, 64


def nested_vectors(n: int, seed: int) -> np.ndarray:
    """Vectors whose leading coordinates carry most of the variance (as a Matryoshka model's do)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, D)).astype(np.float32) * np.geomspace(3, 0.3, D).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def write_meta(path: Path, n: int, start: int = 0) -> None:
    path.write_text("".join(json.dumps({"lang": ("en", "de", "fr")[i % 3], "year": 2021 + i % 4}) + "\n" for i in range(start, start + n)))


@pytest.fixture(scope="module")
def crud_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("scale-out")
    np.save(cwd / "db.npy", nested_vectors(N, 0))
    write_meta(cwd / "meta.jsonl", N)
    np.save(cwd / "new.npy", nested_vectors(20, 1))
    np.save(cwd / "new_ids.npy", np.arange(N, N + 20, dtype=np.int64))
    write_meta(cwd / "new.jsonl", 20, N)
    np.save(cwd / "q.npy", nested_vectors(30, 2))
    return cwd


def test_scale_out_local_index(crud_dir: Path):
    results = run_commands(LOCAL, crud_dir)
    hits = np.load(crud_dir / "hits.npy") if (crud_dir / "hits.npy").exists() else None
    assert hits is not None and hits.shape[0] == 30
    ids = hits if hits.dtype.kind in "iu" else None
    if ids is not None:
        meta = [json.loads(line) for line in (crud_dir / "meta.jsonl").read_text().splitlines()] + [json.loads(line) for line in (crud_dir / "new.jsonl").read_text().splitlines()]
        found = ids[ids >= 0]
        assert not set(found.tolist()) & {17, 42}, "deleted ids are skipped at once"
        assert all(meta[i]["lang"] == "en" and meta[i]["year"] in (2023, 2024) for i in found.tolist()), "the filter holds"
    again = run_commands(["mrl index add idx/ --vectors new.npy --ids new_ids.npy --meta new.jsonl"], crud_dir, check=False)[0]
    assert again.rc == 2 and len(again.stderr.strip().splitlines()) == 1 and "--upsert" in again.stderr, again.stderr
    assert results[-1].rc == 0


def test_scale_out_milvus_lite(crud_dir: Path):
    pytest.importorskip("pymilvus")
    pytest.importorskip("milvus_lite")
    if not (crud_dir / "idx" / "manifest.json").exists():
        run_commands(LOCAL, crud_dir)
    results = run_commands(MILVUS, crud_dir)
    assert (crud_dir / "mrl.db").exists()
    assert "30" in results[-1].stdout + results[-1].stderr or results[-1].stdout, "the search reports its queries"


def test_scale_out_python_block(tmp_path: Path):
    """The block runs on an index built like the CLI block's (metadata ``lang`` and ``year``); its ``add`` carries
    every field the index holds (an index refuses vectors missing one)."""
    np.save(tmp_path / "db.npy", nested_vectors(N, 0))
    (tmp_path / "meta.jsonl").write_text("".join(json.dumps({"lang": ("en", "de", "fr")[i % 3], "year": 2020 + i % 5}) + "\n" for i in range(N)))
    run_commands([LOCAL[0]], tmp_path)
    crud_dir = tmp_path
    block = readme_python_block("from mrl.index.backend import open_index")
    prelude = f"import numpy as np\nrng = np.random.default_rng(3)\nvectors = rng.standard_normal((2, {D})).astype('float32')\nids = np.array([900001, 900002])\nqueries = rng.standard_normal((4, {D})).astype('float32')\n"
    check = "\nassert ids.shape == (4, 10) and 17 not in ids and scores.shape == (4, 10)\nprint('python block ok')\n"
    proc = python_process(prelude + block + check, crud_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "python block ok" in proc.stdout
