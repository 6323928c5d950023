"""README "Reliability": each claim checked quickly through the CLI, as a user would meet it.

Nothing of yours is deleted (--overwrite keeps a file mrl did not write; a foreign folder is
refused), one writer at a time, corruption is caught on load, one clear line
(exit 2) on bad input with the disk unchanged. The thorough versions live in tests/test_bad_inputs.py,
tests/test_data_loss.py and tests/test_index_kill.py (divergence: the trainers' tests); these run the
user's path end to end.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from conftest import mrl_process, run_commands

README_COMMANDS: dict[str, list[str]] = {}
README_BLOCKS: dict[str, list[str]] = {}

BAD = [
    "mrl index build idx/ --vectors db.npy",  # an existing output, no --overwrite
    "mrl index build theirs/ --vectors db.npy --overwrite",  # a folder mrl did not write
    "mrl index build idx2/ --vectors missing.npy",  # a missing input
    "mrl index build idx3/ --vectors db.npy --recall-target 2",  # an option out of range
    "mrl index build idx3/ --vectors db.npy --k abc",  # not a number
    "mrl index build",  # a missing argument
    "mrl index search idx/ --queries q.npy --k 0",
    "mrl index search idx/ --queries q.npy --funnel '32:0 -> 16:10'",
]


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".journey")}


def test_reliability_claims(tmp_path: Path):
    cwd = tmp_path
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 32)).astype(np.float32)
    np.save(cwd / "db.npy", x / np.linalg.norm(x, axis=1, keepdims=True))
    np.save(cwd / "q.npy", x[:5])
    run_commands(["mrl index build idx/ --vectors db.npy"], cwd)
    (cwd / "idx" / "my-notes.txt").write_text("mine")
    (cwd / "theirs").mkdir()
    (cwd / "theirs" / "keep.txt").write_text("not mrl's")
    before = snapshot(cwd)

    # one clear line, exit 2, nothing on disk changed (no new folder, no replaced output)
    for r in run_commands(BAD, cwd, check=False, stop=False):
        lines = r.stderr.strip().splitlines()
        assert r.rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), (r.command, r.rc, r.stderr[-2000:])
    assert snapshot(cwd) == before

    # --overwrite replaces only what mrl wrote: the user's file in the folder survives
    run_commands(["mrl index build idx/ --vectors db.npy --overwrite"], cwd)
    assert (cwd / "idx" / "my-notes.txt").read_text() == "mine"

    # one writer at a time: while another process holds the output, a second writer stops with one line
    from mrl.io.lock import writer_lock

    with writer_lock(cwd / "idx"):
        proc = mrl_process(["index", "build", "idx/", "--vectors", "db.npy", "--overwrite"], cwd)
    assert proc.returncode == 2 and "another mrl process" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr

    # corruption is caught on load: one flipped byte in a stored vector file
    vec = sorted((cwd / "idx").glob("vectors*.npy"))[0]
    raw = bytearray(vec.read_bytes())
    raw[-5] ^= 0xFF
    vec.write_bytes(bytes(raw))
    r = run_commands(["mrl index search idx/ --queries q.npy --k 5"], cwd, check=False)[0]
    assert r.rc == 2 and len(r.stderr.strip().splitlines()) == 1 and ("checksum" in r.stderr or "sha" in r.stderr.lower() or "corrupt" in r.stderr), r.stderr
