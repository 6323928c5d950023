"""mrl deletes only what it can prove it wrote: listed folders record their files at finish, and only
files that still match their size and SHA-256 are removed on --overwrite; a listed file the user
changed stops the overwrite before anything is deleted (or, staged, goes to the unlisted sibling)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mm_fixtures import mm_cache, mm_config, mm_data  # noqa: F401

from mrl.errors import ForeignFileError
from mrl.io import check_output, file_entry, listed_files, open_files, open_output, read_manifest, verify_output, write_manifest


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative name -> bytes)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _made_dir(out, name: str) -> Path:
    """Claim the sub-folder ``name`` of output ``out`` and create it (as a trainer would)."""
    p = out.claim_dir(name)
    p.mkdir(parents=True, exist_ok=True)
    return p


def _finished_run(run: Path) -> None:
    """A finished ``mrl.run`` with two files and a ``checkpoints/`` folder claim holding two files."""
    with open_output(run, "mrl.run") as out:
        ckpt = out.claim_dir("checkpoints")
        (ckpt / "sub").mkdir(parents=True)
        (ckpt / "step-1.bin").write_bytes(b"weights-1")
        (ckpt / "sub" / "state.json").write_text("{}")
        for name in ("model.bin", "metrics.csv"):
            with out.file(name) as p:
                p.write_text(f"old {name}")


def test_finish_records_the_files_of_each_listed_folder(tmp_path):
    run = tmp_path / "run"
    _finished_run(run)
    man = read_manifest(run / "manifest.json")
    ckpt = run / "checkpoints"
    assert man["state"] == "complete"
    assert man["files"]["checkpoints/"] == {"files": {"step-1.bin": file_entry(ckpt / "step-1.bin"), "sub/state.json": file_entry(ckpt / "sub" / "state.json")}}
    assert listed_files(man) == {"checkpoints/", "model.bin", "metrics.csv"}  # older readers still see the folder and the files
    assert verify_output(run, ["model.bin", "metrics.csv"], kind="mrl.run")["state"] == "complete"


def test_a_users_file_in_a_finished_runs_listed_folder_survives_overwrite(tmp_path):
    run = tmp_path / "run"
    _finished_run(run)
    (run / "checkpoints" / "notes.txt").write_text("the user's notes")
    (run / "checkpoints" / "sub" / "mine.txt").write_text("mine")
    with open_output(run, "mrl.run", overwrite=True) as out:
        out.claim_dir("checkpoints")
        assert not (run / "checkpoints" / "step-1.bin").exists() and not (run / "model.bin").exists()  # the run's own files are gone
        (run / "checkpoints" / "step-2.bin").write_bytes(b"weights-2")
        with out.file("model.bin") as p:
            p.write_text("new model")
    assert (run / "checkpoints" / "notes.txt").read_text() == "the user's notes" and (run / "checkpoints" / "sub" / "mine.txt").read_text() == "mine"
    assert not (run / "checkpoints" / "sub" / "state.json").exists() and not (run / "metrics.csv").exists()
    man = read_manifest(run / "manifest.json")
    assert set(man["files"]["checkpoints/"]["files"]) == {"step-2.bin"}  # the user's files are never listed as mrl's
    assert verify_output(run, ["model.bin"])["state"] == "complete" and (run / "model.bin").read_text() == "new model"
    # and the next overwrite keeps them again, removing the folder's own files only
    with open_output(run, "mrl.run", overwrite=True) as out:
        with out.file("model.bin") as p:
            p.write_text("newest")
    assert sorted(_snapshot(run / "checkpoints")) == ["notes.txt", "sub/mine.txt"]


def test_a_listed_folder_file_the_user_changed_is_left_in_place_and_never_listed(tmp_path):
    run = tmp_path / "run"
    _finished_run(run)
    (run / "checkpoints" / "step-1.bin").write_bytes(b"weights-X")  # same size, other bytes
    with open_output(run, "mrl.run", overwrite=True) as out:
        out.claim_dir("checkpoints")
        (run / "checkpoints" / "step-2.bin").write_bytes(b"weights-2")
    assert (run / "checkpoints" / "step-1.bin").read_bytes() == b"weights-X" and not (run / "checkpoints" / "sub").exists()  # empty sub-folder removed
    assert set(read_manifest(run / "manifest.json")["files"]["checkpoints/"]["files"]) == {"step-2.bin"}


def test_a_listed_file_the_user_edited_stops_overwrite_before_anything_is_deleted(tmp_path):
    run = tmp_path / "run"
    _finished_run(run)
    (run / "metrics.csv").write_text("old metrics.cs!")  # same size: caught by the SHA-256
    before = _snapshot(run)
    for call in (lambda: check_output(run, "mrl.run", overwrite=True), lambda: open_output(run, "mrl.run", overwrite=True).__enter__()):
        with pytest.raises(ForeignFileError, match=r"metrics\.csv was changed since mrl wrote it.*move it away, then rerun; nothing was deleted"):
            call()
        assert _snapshot(run) == before  # every old file still there, byte for byte (the manifest too)
    (run / "metrics.csv").write_text("old metrics.csv plus a line the user added\n")  # another size: caught without hashing
    with pytest.raises(ForeignFileError, match="changed since mrl wrote it"):
        with open_output(run, "mrl.run", overwrite=True):
            pass
    assert (run / "model.bin").read_text() == "old model.bin" and (run / "checkpoints" / "step-1.bin").is_file()
    with open_output(run, "mrl.run", append=True) as out:  # resume: nothing is removed, so nothing to prove
        with out.file("extra.txt") as p:
            p.write_text("x")
    assert (run / "metrics.csv").read_text().endswith("added\n")


def test_a_file_claimed_by_a_process_that_died_is_ours_by_write_ahead(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with open_output(run, "mrl.run") as out:
            p = out.claim("model.bin")
            p.write_text("half written")
            raise RuntimeError("killed before the size and SHA-256 were recorded")
    assert read_manifest(run / "manifest.json")["files"] == {"model.bin": None}
    with open_output(run, "mrl.run", overwrite=True) as out:
        with out.file("metrics.csv") as p:
            assert not (run / "model.bin").exists()
            p.write_text("new")
    assert sorted(_snapshot(run)) == ["manifest.json", "metrics.csv"]


def test_a_recorded_file_killed_mid_rewrite_is_still_ours(tmp_path):
    """A checkpoint rewritten each epoch: killed after its new bytes landed but before they were
    recorded, the file no longer matches its entry, yet it is ours by write-ahead (``rewriting``)."""
    run = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with open_output(run, "mrl.run") as out:
            with out.file("checkpoint.bin") as p:
                p.write_text("epoch 1")
            assert "rewriting" not in read_manifest(run / "manifest.json")
            p = out.claim("checkpoint.bin")
            p.write_text("epoch 2, longer")
            raise RuntimeError("killed before the new size and SHA-256 were recorded")
    man = read_manifest(run / "manifest.json")
    assert man["rewriting"] == ["checkpoint.bin"] and man["files"]["checkpoint.bin"]["bytes"] == len("epoch 1")
    with open_output(run, "mrl.run", overwrite=True) as out:
        with out.file("model.bin") as p:
            assert not (run / "checkpoint.bin").exists()
            p.write_text("new")
    assert "rewriting" not in read_manifest(run / "manifest.json")


def test_a_foreign_file_in_the_way_of_a_claim_stops_before_the_old_output_is_removed(tmp_path):
    run = tmp_path / "run"
    _finished_run(run)
    (run / "extra.txt").write_text("the user's")
    before = _snapshot(run)
    with pytest.raises(ForeignFileError, match=r"extra\.txt exists and was not written by mrl"):
        with open_output(run, "mrl.run", overwrite=True) as out:
            out.claim("extra.txt")
    assert _snapshot(run) == before


def test_staged_overwrite_keeps_a_listed_file_edited_after_the_checks_in_the_unlisted_sibling(tmp_path):
    target = tmp_path / "adaptor"
    with open_output(target, "mrl.adaptor", staged=True) as out:
        (out.path / "weights.bin").write_text("v1 weights")
        (out.path / "config.json").write_text("{}")
    (target / "config.json").write_text('{"x": 1}')
    with pytest.raises(ForeignFileError, match=r"config\.json was changed since mrl wrote it"):  # edited before: refused up front
        with open_output(target, "mrl.adaptor", overwrite=True, staged=True):
            pass
    assert (target / "config.json").read_text() == '{"x": 1}' and (target / "weights.bin").read_text() == "v1 weights"
    (target / "config.json").write_text("{}")  # restored: the checks pass
    with open_output(target, "mrl.adaptor", overwrite=True, staged=True) as out:
        (target / "weights.bin").write_text("edited by the user")  # edited after the checks, before the swap
        (out.path / "weights.bin").write_text("v2 weights")
    assert (target / "weights.bin").read_text() == "v2 weights" and not (target / "config.json").exists()
    kept = tmp_path / "adaptor.unlisted-files"
    assert _snapshot(kept) == {"weights.bin": b"edited by the user"}  # not deleted; the untouched config.json was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adaptor", "adaptor.unlisted-files"]


def test_a_folder_listed_by_an_older_finished_output_keeps_files_newer_than_its_manifest(tmp_path):
    """No listing (an older mrl): only files not newer than the finished manifest are the output's."""
    run = tmp_path / "run"
    (run / "cache" / "deep").mkdir(parents=True)
    (run / "cache" / "a.npy").write_text("a")
    (run / "cache" / "deep" / "b.npy").write_text("b")
    write_manifest(run / "manifest.json", {"format": "mrl.run", "files": {"cache/": None}, "state": "complete"})
    (run / "cache" / "mine.txt").write_text("added after the run finished")
    t = (run / "manifest.json").stat().st_mtime
    for name, when in (("cache/a.npy", t - 10), ("cache/deep/b.npy", t - 10), ("cache/mine.txt", t + 10)):
        os.utime(run / name, (when, when))
    with open_output(run, "mrl.run", overwrite=True) as out:
        out.claim_dir("cache")
    assert _snapshot(run / "cache") == {"mine.txt": b"added after the run finished"}
    assert read_manifest(run / "manifest.json")["files"]["cache/"] == {"files": {}}


def test_an_unfinished_runs_folder_is_emptied_except_files_a_previous_write_kept(tmp_path):
    """A run killed before finish has no listing: the folder it created is cleared (its checkpoints
    must not leak into the next run), but files an earlier overwrite proved foreign stay protected."""
    run = tmp_path / "run"
    with open_output(run, "mrl.run") as out:
        (_made_dir(out, "cache") / "a.npy").write_text("a")
    (run / "cache" / "notes.txt").write_text("the user's notes")
    with pytest.raises(RuntimeError):
        with open_output(run, "mrl.run", overwrite=True) as out:
            (_made_dir(out, "cache") / "b.npy").write_text("b")
            raise RuntimeError("killed mid-run")
    man = read_manifest(run / "manifest.json")
    assert man["state"] == "writing" and man["files"]["cache/"] == {"kept": ["notes.txt"]}
    with open_output(run, "mrl.run", overwrite=True) as out:
        out.claim_dir("cache")
    assert _snapshot(run / "cache") == {"notes.txt": b"the user's notes"}
    # a crash with no kept file: everything in the folder the run created is its own
    with pytest.raises(RuntimeError):
        with open_output(tmp_path / "r2", "mrl.run") as out:
            (out.claim_dir("checkpoints") / "checkpoint-5").mkdir(parents=True)
            (tmp_path / "r2" / "checkpoints" / "checkpoint-5" / "w.bin").write_text("w")
            raise RuntimeError("killed")
    with open_output(tmp_path / "r2", "mrl.run", overwrite=True) as out:
        assert not (out.claim_dir("checkpoints")).exists()


def test_resuming_a_finished_folder_keeps_unlisted_files_protected_until_the_next_finish(tmp_path):
    run = tmp_path / "run"
    with open_output(run, "mrl.run") as out:
        (_made_dir(out, "cache") / "a.npy").write_text("a")
    (run / "cache" / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError):
        with open_output(run, "mrl.run", append=True) as out:
            with out.file("extra.txt") as p:
                p.write_text("x")
            assert read_manifest(run / "manifest.json")["files"]["cache/"] == {"kept": ["notes.txt"]}  # the listing is stale from now on
            (run / "cache" / "b.npy").write_text("b")
            raise RuntimeError("killed")
    with open_output(run, "mrl.run", overwrite=True) as out:
        out.claim_dir("cache")
    assert _snapshot(run / "cache") == {"notes.txt": b"mine"}


def test_remove_and_clear_folder_delete_only_provable_files(tmp_path):
    run = tmp_path / "run"
    _finished_run(run)
    (run / "checkpoints" / "notes.txt").write_text("mine")
    with open_output(run, "mrl.run", append=True) as out:
        out.remove("checkpoints")
        out.remove("metrics.csv")
    assert _snapshot(run / "checkpoints") == {"notes.txt": b"mine"} and not (run / "metrics.csv").exists()
    assert set(read_manifest(run / "manifest.json")["files"]) == {"model.bin"}
    model = tmp_path / "model"
    with open_output(model, "k") as out:
        pool = out.claim_dir("pool")
        pool.mkdir()
        (pool / "config.json").write_text("{}")
    with open_output(model, "k", overwrite=True) as out:
        out.clear_folder("pool")  # proven by the old folder's listing
        assert not (model / "pool").exists()
        (out.claim_dir("pool")).mkdir()
        (model / "pool" / "config.json").write_text("{}")
    (model / "pool" / "config.json").write_text('{"x"}')  # the user edited it: not provably ours
    with open_output(model, "k", append=True) as out, pytest.raises(ForeignFileError, match="changed since"):
        out.claim("other.txt")
        out.clear_folder("pool")
    assert (model / "pool" / "config.json").read_text() == '{"x"}'


def test_file_outputs_refuse_an_edited_sibling_but_replace_the_named_file(tmp_path):
    out = tmp_path / "e.npy"
    with open_files(out, "mrl.embeddings", ["e.labels.npy"]) as o:
        for name in ("e.npy", "e.labels.npy"):
            with o.file(name) as p:
                p.write_text(name)
    (tmp_path / "e.npy").write_text("edited primary")  # the user named it as the output: replaced
    with open_files(out, "mrl.embeddings", ["e.labels.npy"], overwrite=True) as o:
        with o.file("e.npy") as p:
            p.write_text("new")
    with open_files(out, "mrl.embeddings", ["e.labels.npy"], overwrite=True) as o:
        for name in ("e.npy", "e.labels.npy"):
            with o.file(name) as p:
                p.write_text(name)
    (tmp_path / "e.labels.npy").write_text("user labels!")
    before = _snapshot(tmp_path)
    with pytest.raises(ForeignFileError, match=r"e\.labels\.npy was changed since mrl wrote it.*nothing was deleted"):
        with open_files(out, "mrl.embeddings", ["e.labels.npy"], overwrite=True):
            pass
    assert _snapshot(tmp_path) == before


# ------------------------------------------------------------------ journey: `mrl train` (multimodal, its own cache/)
def test_mrl_train_overwrite_keeps_a_users_file_in_the_runs_cache_folder(mm_config, tmp_path):
    """`mrl train --overwrite` on a finished two-tower run whose feature cache is the run's own
    ``cache/`` folder (a folder claim): the user's file there survives, the run's cache files are
    replaced; an edited model file makes the command exit 2 with one line and leaves the run as it was."""
    from typer.testing import CliRunner

    from mrl.cli.app import app

    cfg = mm_config.replace(epochs=1, feature_cache=None)
    sets = [f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in cfg.to_dict().items() if v is not None and k != "weighting_kwargs"]
    args = ["train", "--out", str(tmp_path / "run"), *[a for s in sets for a in ("--set", s)]]
    runner, run = CliRunner(), tmp_path / "run"
    assert runner.invoke(app, args).exit_code == 0
    cached = sorted(read_manifest(run / "manifest.json")["files"]["cache/"]["files"])
    assert cached and all(n.startswith("text-features-") for n in cached)
    (run / "cache" / "notes.txt").write_text("the user's notes")
    res = runner.invoke(app, [*args, "--overwrite"])
    assert res.exit_code == 0, res.output
    assert (run / "cache" / "notes.txt").read_text() == "the user's notes"
    assert sorted(read_manifest(run / "manifest.json")["files"]["cache/"]["files"]) == cached  # recomputed, listed again; notes.txt never
    with open(run / "metrics.csv", "a") as fh:
        fh.write("a row the user added\n")
    before = _snapshot(run)
    res = runner.invoke(app, [*args, "--overwrite"])
    assert res.exit_code == 2 and "metrics.csv was changed since mrl wrote it" in res.output and "nothing was deleted" in res.output, res.output
    assert _snapshot(run) == before
