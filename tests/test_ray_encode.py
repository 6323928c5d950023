"""Ray Data encoding: the same shards as the single-process encoder, resume of the other's folder,
feeding `index build`. One local Ray session for the whole test run (Ray start-up is slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from text_fixtures import minilm_path  # noqa: F401
from typer.testing import CliRunner

pytest.importorskip("ray")


@pytest.fixture(scope="session")
def ray_session():
    from mrl.encode.ray_text import start_ray
    from mrl.errors import MRLError

    try:
        ray = start_ray("local", num_cpus=2)
    except MRLError as exc:
        pytest.skip(f"Ray cannot start on this machine: {exc}")
    yield ray
    ray.shutdown()


def write_texts(path: Path, n: int) -> list[str]:
    rng = np.random.default_rng(1)
    words = ["prefix", "shortlist", "rerank", "funnel", "graph", "cosine", "passage", "corpus", "shard", "actor", "cluster", "query"]
    texts = [" ".join(rng.choice(words, size=int(rng.integers(2, 20)))) for _ in range(n)]
    path.write_text("\n".join(texts) + "\n")
    return texts


def test_ray_shards_equal_single_process_and_resume(tmp_path, minilm_path, ray_session) -> None:
    from mrl.cli.app import app
    from mrl.encode import open_shards
    from mrl.encode.text import encode_corpus

    write_texts(tmp_path / "t.txt", 90)
    ref = encode_corpus(minilm_path, [tmp_path / "t.txt"], tmp_path / "ref", rows_per_shard=30, progress=False)
    # Start single-process, stop after one shard (as a killed job leaves it), finish on Ray: only the missing shards run there.
    part = tmp_path / "enc"
    encode_corpus(minilm_path, [tmp_path / "t.txt"], part, rows_per_shard=30, limit=None, progress=False)
    man = json.loads((part / "manifest.json").read_text())
    man["shards"], man["complete"] = man["shards"][:1], False
    (part / "manifest.json").write_text(json.dumps(man))
    (part / "shard-00002.npy").unlink()
    res = CliRunner().invoke(app, ["embed-text", minilm_path, "-i", str(tmp_path / "t.txt"), "--out", str(part), "--ray", "--rows-per-shard", "30", "--actors", "1"])
    assert res.exit_code == 0, res.output
    assert "2 to encode on Ray (30 rows already done)" in res.output
    got = open_shards(part, verify=True)
    executors = [e.get("executor", "local") for e in got.manifest["shards"]]
    assert executors == ["local", "ray", "ray"] and got.manifest["complete"]
    np.testing.assert_allclose(got.array(), ref.array(), atol=1e-5)
    # The shard folder feeds `index build` directly.
    res = CliRunner().invoke(app, ["index", "build", str(tmp_path / "idx"), "--vectors", str(part)])
    assert res.exit_code == 0 and "90 x 384" in res.output, res.output
    res = CliRunner().invoke(app, ["embed-text", minilm_path, "-i", str(tmp_path / "t.txt"), "--out", str(tmp_path / "x.npy"), "--ray"])
    assert res.exit_code == 2 and "shard folder" in res.output


def test_ray_image_split_equals_mrl_embed(tmp_path, tiny_config, fmnist_dir, ray_session) -> None:
    from dataclasses import replace

    from mrl.cli.app import app
    from mrl.encode import open_shards
    from mrl.train import train

    run = tmp_path / "run"
    train(replace(tiny_config, epochs=1), run)
    r = CliRunner()
    res = r.invoke(app, ["embed", str(run), "--split", "test", "--out", str(tmp_path / "test.npy"), "--data-root", str(fmnist_dir)])
    assert res.exit_code == 0, res.output
    res = r.invoke(app, ["embed", str(run), "--split", "test", "--out", str(tmp_path / "enc"), "--data-root", str(fmnist_dir), "--ray", "--actors", "1", "--rows-per-shard", "128"])
    assert res.exit_code == 0 and "3 to encode on Ray" in res.output, res.output
    got = open_shards(tmp_path / "enc", verify=True)
    assert len(got.arrays) == 3 and all(e["executor"] == "ray" for e in got.manifest["shards"])
    np.testing.assert_allclose(got.array(), np.load(tmp_path / "test.npy"), atol=1e-5)
    res = r.invoke(app, ["embed", str(run), "--split", "test", "--out", str(tmp_path / "enc"), "--data-root", str(fmnist_dir), "--ray", "--actors", "1", "--rows-per-shard", "128"])
    assert res.exit_code == 0 and "0 to encode" in res.output  # finished: nothing re-encoded


def test_ray_spreads_a_small_input_over_every_actor_without_warnings_or_locks_in_the_folder(tmp_path, minilm_path, ray_session, monkeypatch) -> None:
    """Before: 16,384 rows per shard, so an input below that was one shard on one actor; Ray logged
    "``concurrency`` is deprecated in Ray 2.51"; and `.manifest.lock` appeared in the output folder."""
    import ray.data._internal.util as ray_util

    from mrl.encode import open_shards
    from mrl.encode.ray_text import auto_rows_per_shard, encode_corpus_ray
    from mrl.io.lock import lock_dir

    assert auto_rows_per_shard(10_000, 2) == 1250 and auto_rows_per_shard(100, 2) == 50 and auto_rows_per_shard(5_000_000, 4) == 16384 and auto_rows_per_shard(3, 8) == 1
    warned: list[str] = []
    monkeypatch.setattr(ray_util.logger, "warning", lambda msg, *a, **k: warned.append(str(msg)))
    write_texts(tmp_path / "t.txt", 120)
    reader = encode_corpus_ray(minilm_path, [tmp_path / "t.txt"], tmp_path / "enc", actors=2, progress=False)
    man = reader.manifest
    assert man["rows_per_shard"] == 60 and len(man["shards"]) == 2 and man["complete"] and {e["executor"] for e in man["shards"]} == {"ray"}
    assert not [w for w in warned if "deprecated" in w], warned
    assert not [p.name for p in (tmp_path / "enc").iterdir() if p.name.endswith(".lock")] and lock_dir().is_dir()
    assert auto_rows_per_shard(120, 4, folder=tmp_path / "enc") == 60  # a resumed folder keeps its shard size
    np.testing.assert_equal(open_shards(tmp_path / "enc", verify=True).array().shape, (120, 384))
