import os

import numpy as np
import pytest

from mrl.errors import DataError, OutputExistsError
from mrl.io import atomic_open, guard_output, load_npy, read_json, save_npy, write_json


def test_failed_write_keeps_previous_file(tmp_path):
    p = tmp_path / "f.json"
    write_json(p, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(p) as fh:
            fh.write(b"half")
            raise RuntimeError("crash mid-save")
    assert read_json(p) == {"a": 1}
    assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")] == []


def test_npy_roundtrip_and_corruption(tmp_path):
    p = tmp_path / "x.npy"
    save_npy(p, np.arange(6, dtype=np.float32).reshape(2, 3))
    assert load_npy(p, mmap=True).shape == (2, 3)
    p.write_bytes(p.read_bytes()[:20])
    with pytest.raises(DataError, match="truncated"):
        load_npy(p)
    with pytest.raises(DataError, match="does not exist"):
        load_npy(tmp_path / "none.npy")


def test_guard_output(tmp_path):
    guard_output(tmp_path / "new", overwrite=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("1")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        guard_output(tmp_path / "full", overwrite=False)
    guard_output(tmp_path / "full", overwrite=True)


def test_atomic_folder_swaps_whole_folders_and_keeps_the_old_on_failure(tmp_path):
    from mrl.io import atomic_folder

    target = tmp_path / "model"
    with atomic_folder(target) as tmp:
        (tmp / "a.txt").write_text("v1")
    assert (target / "a.txt").read_text() == "v1"
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("crash mid-save")
    assert (target / "a.txt").read_text() == "v1"
    with atomic_folder(target) as tmp:
        (tmp / "b.txt").write_text("v2")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary or old folders left


def test_write_csv_unions_columns(tmp_path):
    from mrl.io import write_csv

    write_csv(tmp_path / "m.csv", [{"epoch": 1, "a": 0.5}, {"epoch": 2, "a": 0.4, "b": 1}])
    assert (tmp_path / "m.csv").read_text().splitlines() == ["epoch,a,b", "1,0.5,", "2,0.4,1"]
