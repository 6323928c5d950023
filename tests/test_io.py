import os

import numpy as np
import pytest

from mrl.errors import DataError, OutputExistsError
from mrl.io import atomic_open, load_npy, read_json, save_npy, write_json


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


def test_single_file_output_replaces_only_its_own_kind_and_never_an_input(tmp_path):
    from mrl.errors import ForeignFileError
    from mrl.io import input_files, open_files

    def own(p):
        return p.read_text().startswith("result")

    out = tmp_path / "r.txt"
    with open_files(out, "k", sidecar=False, owned=own):
        out.write_text("result 1")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        with open_files(out, "k", sidecar=False, owned=own):
            pass
    with open_files(out, "k", overwrite=True, sidecar=False, owned=own):
        out.write_text("result 2")
    mine = tmp_path / "notes.txt"
    mine.write_text("the user's notes")
    with pytest.raises(ForeignFileError, match="not an mrl 'k' output"):
        with open_files(mine, "k", overwrite=True, sidecar=False, owned=own):
            pass
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "sub" / "result.txt").write_text("result looks like ours but is an input")
    assert set(input_files(model, None)) == {model, model / "sub" / "result.txt"}
    with pytest.raises(OutputExistsError, match="input"):
        with open_files(model / "sub" / "result.txt", "k", overwrite=True, sidecar=False, owned=own, inputs=input_files(model)):
            pass
    assert mine.read_text() == "the user's notes" and out.read_text() == "result 2"


def test_atomic_folder_swaps_whole_folders_and_keeps_the_old_on_failure(tmp_path):
    from mrl.io import atomic_folder

    target = tmp_path / "model"
    ours = {"a.txt", "b.txt"}.__contains__
    with atomic_folder(target, owned=ours) as tmp:
        (tmp / "a.txt").write_text("v1")
    assert (target / "a.txt").read_text() == "v1"
    with pytest.raises(RuntimeError):
        with atomic_folder(target, owned=ours) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("crash mid-save")
    assert (target / "a.txt").read_text() == "v1"
    with atomic_folder(target, owned=ours) as tmp:
        (tmp / "b.txt").write_text("v2")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary or old folders left


def test_atomic_folder_never_deletes_a_file_the_caller_does_not_own(tmp_path):
    """A file that is not the caller's (say, one a user dropped in after the caller's checks) survives
    the swap, in a sibling folder; the caller's own files of the old folder are deleted."""
    from mrl.io import atomic_folder

    target = tmp_path / "set"
    ours = {"data.txt", "manifest.json"}.__contains__
    with atomic_folder(target, owned=ours) as tmp:
        (tmp / "data.txt").write_text("v1")
    with atomic_folder(target, owned=ours) as tmp:
        (target / "notes.md").write_text("mine")  # appears while the new folder is being written
        (target / "sub").mkdir()
        (target / "sub" / "deep.txt").write_text("mine too")
        (tmp / "data.txt").write_text("v2")
    assert (target / "data.txt").read_text() == "v2" and sorted(p.name for p in target.iterdir()) == ["data.txt"]
    kept = tmp_path / "set.unlisted-files"
    assert (kept / "notes.md").read_text() == "mine" and (kept / "sub" / "deep.txt").read_text() == "mine too"
    assert not (kept / "data.txt").exists()  # the caller's old file is gone
    with atomic_folder(target, owned=ours) as tmp:  # a second leftover does not overwrite the first
        (target / "notes.md").write_text("again")
    assert (tmp_path / "set.unlisted-files-1" / "notes.md").read_text() == "again"
    assert (kept / "notes.md").read_text() == "mine"


def test_write_csv_unions_columns(tmp_path):
    from mrl.io import write_csv

    write_csv(tmp_path / "m.csv", [{"epoch": 1, "a": 0.5}, {"epoch": 2, "a": 0.4, "b": 1}])
    assert (tmp_path / "m.csv").read_text().splitlines() == ["epoch,a,b", "1,0.5,", "2,0.4,1"]


# ---------------------------------------------------------------- umask, locks, ownership, checksums
def test_files_and_folders_honour_the_umask(tmp_path):
    from mrl.io import atomic_folder, write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        with atomic_folder(tmp_path / "d", owned={"f"}.__contains__) as tmp:
            (tmp / "f").write_text("1")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def test_second_writer_gets_a_clear_error(tmp_path):
    import subprocess
    import sys

    from mrl.errors import OutputLockedError
    from mrl.io import writer_lock

    code = "import sys\nfrom mrl.io import writer_lock\nfrom mrl.errors import OutputLockedError\ntry:\n    with writer_lock(sys.argv[1]): print('got')\nexcept OutputLockedError as e: print('locked:', e)"
    with writer_lock(tmp_path / "out"):
        with writer_lock(tmp_path / "out"):  # re-entrant in one process
            pass
        r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")], capture_output=True, text=True, check=True)
    assert r.stdout.startswith("locked:") and "another mrl process" in r.stdout
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "got"
    assert OutputLockedError


def test_manifest_seal_detects_a_one_character_edit(tmp_path):
    from mrl.io import read_manifest, write_manifest

    write_manifest(tmp_path / "m.json", {"format": "mrl.x", "metric": "cosine", "files": {}})
    assert read_manifest(tmp_path / "m.json")["metric"] == "cosine"
    text = (tmp_path / "m.json").read_text().replace("cosine", "cosinf")
    (tmp_path / "m.json").write_text(text)
    with pytest.raises(DataError, match="fails its checksum"):
        read_manifest(tmp_path / "m.json")


def test_safetensors_content_hash_catches_a_flipped_exponent_bit(tmp_path):
    import torch

    from mrl.errors import CheckpointError
    from mrl.io import load_safetensors, save_safetensors

    p = tmp_path / "w.safetensors"
    save_safetensors(p, {"w": torch.full((4, 4), 0.1)}, metadata={"k": "v"})
    tensors, meta = load_safetensors(p)
    assert meta == {"k": "v"} and torch.equal(tensors["w"], torch.full((4, 4), 0.1))
    raw = bytearray(p.read_bytes())
    raw[-1] ^= 0x40  # the exponent's high bit of the last float32 (little endian)
    p.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="checksum"):
        load_safetensors(p)


def test_open_output_refuses_foreign_folders_even_with_overwrite(tmp_path):
    from mrl.errors import ForeignFileError
    from mrl.io import open_output

    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("precious")
    with pytest.raises(ForeignFileError, match="did not write"):
        with open_output(user, "mrl.run", overwrite=True):
            pass
    assert (user / "notes.txt").read_text() == "precious"
    with pytest.raises(OutputExistsError, match="is a file"):
        with open_output(user / "notes.txt", "mrl.run", overwrite=True):
            pass


def test_open_output_overwrite_replaces_only_listed_files_and_invalidates_first(tmp_path):
    from mrl.errors import ForeignFileError
    from mrl.io import open_output, read_manifest

    run = tmp_path / "run"
    with open_output(run, "mrl.run") as out:
        for name in ("model.bin", "metrics.csv"):
            with out.file(name) as p:
                p.write_text("old")
    man = read_manifest(run / "manifest.json")
    assert man["state"] == "complete" and set(man["files"]) == {"model.bin", "metrics.csv"} and man["files"]["model.bin"]["bytes"] == 3
    with pytest.raises(OutputExistsError, match="--overwrite"):
        with open_output(run, "mrl.run"):
            pass
    with pytest.raises(ForeignFileError, match=r"'mrl\.run' output, not 'mrl\.report'"):
        with open_output(run, "mrl.report", overwrite=True):
            pass
    with pytest.raises(RuntimeError):
        with open_output(run, "mrl.run", overwrite=True) as out:
            with out.file("metrics.csv") as p:
                assert not (run / "model.bin").exists()  # the old model is gone before anything new exists
                p.write_text("new")
            raise RuntimeError("killed mid-run")
    assert sorted(f.name for f in run.iterdir()) == ["manifest.json", "metrics.csv"]
    assert read_manifest(run / "manifest.json")["state"] == "writing"
    (run / "mine.txt").write_text("user")
    with pytest.raises(ForeignFileError, match=r"mine\.txt"):  # replaced as a whole: must hold only listed files
        with open_output(run, "mrl.run", overwrite=True, staged=True):
            pass
    with open_output(run, "mrl.run", overwrite=True) as out:  # in place: listed files go, the user's stays
        with out.file("metrics.csv") as p:
            p.write_text("newer")
    with pytest.raises(OutputExistsError, match="input"):
        with open_output(run, "mrl.run", overwrite=True, inputs=[run / "metrics.csv"]):
            pass
    with open_output(run, "mrl.run", append=True) as out:  # resume: keeps everything, user file untouched
        with pytest.raises(ForeignFileError):
            out.claim("mine.txt")
    assert (run / "mine.txt").read_text() == "user" and (run / "metrics.csv").read_text() == "newer"


def test_open_output_never_deletes_an_input(tmp_path):
    from mrl.io import open_output

    out_dir = tmp_path / "rep"
    with open_output(out_dir, "mrl.report", staged=True) as out:
        (out.path / "results.json").write_text("{}")
    assert (out_dir / "results.json").exists()
    with pytest.raises(OutputExistsError, match="input"):
        with open_output(out_dir, "mrl.report", overwrite=True, staged=True, inputs=[out_dir / "results.json"]):
            pass
    assert (out_dir / "results.json").read_text() == "{}"


def test_staged_output_swaps_the_whole_folder(tmp_path):
    from mrl.io import open_output, read_manifest

    target = tmp_path / "adaptor"
    with open_output(target, "mrl.adaptor", staged=True) as out:
        (out.path / "a.txt").write_text("v1")
        (out.path / "sub").mkdir()
        (out.path / "sub" / "b.txt").write_text("v1")
    assert set(read_manifest(target / "manifest.json")["files"]) == {"a.txt", "sub/b.txt"}
    with pytest.raises(RuntimeError):
        with open_output(target, "mrl.adaptor", overwrite=True, staged=True) as out:
            (out.path / "a.txt").write_text("half")
            raise RuntimeError("crash")
    assert (target / "a.txt").read_text() == "v1"
    with open_output(target, "mrl.adaptor", overwrite=True, staged=True) as out:
        (out.path / "c.txt").write_text("v2")
    assert sorted(p.name for p in target.iterdir()) == ["c.txt", "manifest.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adaptor"]  # no temporary, old or lock files left


def test_open_files_guards_siblings_and_inputs(tmp_path):
    from mrl.errors import ForeignFileError
    from mrl.io import open_files, read_manifest

    out = tmp_path / "e.npy"
    with open_files(out, "mrl.embeddings", ["e.labels.npy"]) as o:
        with o.file("e.npy") as p:
            save_npy(p, np.zeros((2, 3), np.float32))
        with o.file("e.labels.npy") as p:
            save_npy(p, np.zeros(2, np.int64))
        o.meta["dim"] = 3
    side = read_manifest(tmp_path / "e.json")
    assert side["dim"] == 3 and set(side["files"]) == {"e.npy", "e.labels.npy"}
    with pytest.raises(OutputExistsError, match="--overwrite"):
        with open_files(out, "mrl.embeddings", ["e.labels.npy"]):
            pass
    with open_files(out, "mrl.embeddings", ["e.labels.npy"], overwrite=True) as o:
        with o.file("e.npy") as p:
            save_npy(p, np.ones((2, 3), np.float32))
    assert not (tmp_path / "e.labels.npy").exists()  # stale sibling of the old output removed
    # a user's own file next to the output is never replaced
    (tmp_path / "f.scores.npy").write_text("mine")
    with pytest.raises(ForeignFileError):
        with open_files(tmp_path / "f.npy", "mrl.search", ["f.scores.npy"], overwrite=True):
            pass
    (tmp_path / "g.json").write_text('{"mine": 1}')
    with pytest.raises(ForeignFileError, match="sidecar"):
        with open_files(tmp_path / "g.npy", "mrl.search", overwrite=True):
            pass
    with pytest.raises(OutputExistsError, match="input"):
        with open_files(out, "mrl.embeddings", overwrite=True, inputs=[out]):
            pass
    assert (tmp_path / "f.scores.npy").read_text() == "mine" and (tmp_path / "g.json").read_text() == '{"mine": 1}'
    with pytest.raises(RuntimeError):
        with open_files(tmp_path / "h.npy", "mrl.embeddings"):
            raise RuntimeError("failed before writing")
    assert not (tmp_path / "h.json").exists()  # a command that wrote nothing leaves nothing behind


def test_clear_folder_removes_only_listed_files_and_refuses_a_foreign_one(tmp_path):
    from mrl.errors import ForeignFileError
    from mrl.io import open_output

    out = tmp_path / "model"
    with open_output(out, "k") as w:
        with w.file("pool/config.json") as p:
            p.parent.mkdir(exist_ok=True)
            p.write_text("{}")
    with open_output(out, "k", overwrite=True) as w:
        w.clear_folder("pool")  # every file listed by the previous output
        assert not (out / "pool").exists()
        with w.file("pool/config.json") as p:
            p.parent.mkdir(exist_ok=True)
            p.write_text("{}")
    (out / "pool" / "mine.txt").write_text("the user's file")
    with pytest.raises(ForeignFileError, match="never deleted"):
        with open_output(out, "k", overwrite=True) as w:
            w.clear_folder("pool")
    assert (out / "pool" / "mine.txt").read_text() == "the user's file" and (out / "pool" / "config.json").is_file()


def test_a_symlink_to_a_folder_is_a_foreign_file_never_removed(tmp_path):
    from mrl.errors import ForeignFileError
    from mrl.io import open_output

    target, data = tmp_path / "adaptor", tmp_path / "user-data"
    data.mkdir()
    (data / "keep.txt").write_text("mine")
    with open_output(target, "mrl.adaptor", staged=True) as out:
        (out.path / "a.txt").write_text("v1")
    (target / "link").symlink_to(data, target_is_directory=True)  # a user's link put in the output since
    with pytest.raises(ForeignFileError), open_output(target, "mrl.adaptor", overwrite=True, staged=True) as out:
        (out.path / "a.txt").write_text("v2")
    assert (target / "link").is_symlink() and (data / "keep.txt").read_text() == "mine"


def test_staged_output_keeps_late_files_beside_earlier_ones(tmp_path):
    """A file that appears in a staged output's folder after its checks is kept in a sibling; when an
    earlier such sibling exists, a numbered one is used instead of failing after the swap."""
    from mrl.io import open_output

    target = tmp_path / "adaptor"
    with open_output(target, "mrl.adaptor", staged=True) as out:
        (out.path / "a.txt").write_text("v1")
    earlier = tmp_path / "adaptor.unlisted-files"
    earlier.mkdir()
    (earlier / "old-notes.md").write_text("earlier")
    with open_output(target, "mrl.adaptor", overwrite=True, staged=True) as out:
        (target / "notes.md").write_text("late")  # dropped in after the checks
        (out.path / "a.txt").write_text("v2")
    assert (target / "a.txt").read_text() == "v2" and not (target / "notes.md").exists()
    assert (earlier / "old-notes.md").read_text() == "earlier"
    kept = tmp_path / "adaptor.unlisted-files-1"
    assert (kept / "notes.md").read_text() == "late" and not (kept / "a.txt").exists()


# --------------------------------------------------------------------------- the lock folder (issue 25 §3.4)
def _squat(folder, *, mode=0o700, owner=None):
    """Create ``folder`` as another user would: another owner (needs root) and/or an open mode."""
    folder.mkdir(parents=True)
    os.chmod(folder, mode)
    if owner is not None:
        try:
            os.chown(folder, owner, -1)
        except PermissionError:
            pytest.skip("changing a folder's owner needs root")


@pytest.fixture
def lock_env(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.delenv("MRL_LOCK_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "tmp").mkdir()
    return tmp_path / "tmp" / f"mrl-locks-{os.getuid()}", tmp_path / "home" / ".cache" / "mrl" / "locks"


@pytest.mark.parametrize(("mode", "owner"), [(0o700, 65534), (0o777, None), (0o770, None)], ids=["other-owner", "mode-0777", "group-writable"])
def test_a_squatted_lock_folder_falls_back_to_a_private_one(lock_env, tmp_path, mode, owner):
    from mrl.io import writer_lock
    from mrl.io.lock import lock_dir

    default, fallback = lock_env
    _squat(default, mode=mode, owner=owner)
    assert lock_dir() == fallback and oct(fallback.stat().st_mode & 0o777) == "0o700"
    with writer_lock(tmp_path / "out") as lp:  # a write works, its lock lives in the private folder
        assert lp.parent == fallback
    assert not list(default.iterdir())


def test_an_unusable_lock_folder_is_refused_with_one_line(lock_env, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mrl.cli import app
    from mrl.errors import MRLError
    from mrl.io import writer_lock

    default, fallback = lock_env
    _squat(default, mode=0o777)
    _squat(fallback, mode=0o777)
    with pytest.raises(MRLError, match=f"lock folder {default} can be written by other users .* set MRL_LOCK_DIR"):
        with writer_lock(tmp_path / "out"):
            pass
    save_npy(tmp_path / "x.npy", np.ones((8, 4), np.float32))
    r = CliRunner().invoke(app, ["index", "build", str(tmp_path / "idx"), "--vectors", str(tmp_path / "x.npy")])
    assert r.exit_code == 2 and "MRL_LOCK_DIR" in r.output and "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "idx").exists()
    monkeypatch.setenv("MRL_LOCK_DIR", str(fallback))  # a configured folder is checked too, never replaced by another
    with pytest.raises(MRLError, match=r"\(MRL_LOCK_DIR\) can be written by other users"):
        with writer_lock(tmp_path / "out"):
            pass
