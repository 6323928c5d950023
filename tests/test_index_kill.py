"""Kill tests: SIGKILL a real `mrl index add|delete|compact` process at several points of its save.

Points: inside the first data file's atomic write (before its rename), just before the manifest
swap (every new data file written), and just after the swap (before old files are cleaned up).
After each kill the folder must load (checksums verified) as exactly the old or the new state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from test_funnel import matryoshka_like

from mrl.index import MatryoshkaIndex

# Runs the CLI in a child that SIGKILLs itself at the chosen point of the save.
CHILD = r"""
import os, signal, sys
mode = os.environ["KILL_AT"]
real_replace, real_unlink = os.replace, os.unlink
state = {"swapped": False}
def replace(src, dst):
    if mode == "first-file" or (mode == "before-manifest" and str(dst).endswith("manifest.json")):
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)
    state["swapped"] = state["swapped"] or str(dst).endswith("manifest.json")
def unlink(path, *a, **kw):
    if mode == "after-manifest" and state["swapped"]:
        os.kill(os.getpid(), signal.SIGKILL)
    real_unlink(path, *a, **kw)
os.replace, os.unlink = replace, unlink
from mrl.cli.app import app
sys.argv = ["mrl", *sys.argv[1:]]
app()
"""
POINTS = ("first-file", "before-manifest", "after-manifest")


def state(folder) -> tuple:
    idx = MatryoshkaIndex.load(folder, verify=True)
    q = matryoshka_like(8, 16, 5)
    return idx.count, idx.rows, tuple(sorted(idx.ids[~idx.catalog.deleted].tolist())), idx.search(q, 5, funnel="4:100 -> 16:5", filter="lang == 'a'")[1].tolist()


@pytest.fixture
def base(tmp_path):
    x = matryoshka_like(600, 16, 1)
    np.save(tmp_path / "x.npy", x[:500])
    np.save(tmp_path / "more.npy", x[500:])
    np.save(tmp_path / "more_ids.npy", np.arange(500, 600))
    (tmp_path / "m.jsonl").write_text("".join(json.dumps({"lang": "ab"[i % 2]}) + "\n" for i in range(500)))
    (tmp_path / "m2.jsonl").write_text("".join(json.dumps({"lang": "ab"[i % 2]}) + "\n" for i in range(100)))
    folder = tmp_path / "idx"
    from typer.testing import CliRunner

    from mrl.cli.app import app

    res = CliRunner().invoke(app, ["index", "build", str(folder), "--vectors", str(tmp_path / "x.npy"), "--meta", str(tmp_path / "m.jsonl"), "--first-stage", "4"])
    assert res.exit_code == 0, res.output
    # Some tombstones so that compact has work to do.
    res = CliRunner().invoke(app, ["index", "delete", str(folder), "--ids", ",".join(str(i) for i in range(0, 500, 7))])
    assert res.exit_code == 0, res.output
    return tmp_path, folder


def run(args: list[str], kill_at: str | None) -> int:
    """Exit code of the command: in a child killed at ``kill_at``, or in-process (faster) when not killed."""
    if kill_at is None:
        from typer.testing import CliRunner

        from mrl.cli.app import app

        return CliRunner().invoke(app, args).exit_code
    env = {**os.environ, "KILL_AT": kill_at}
    return subprocess.run([sys.executable, "-c", CHILD, *args], env=env, capture_output=True, text=True, timeout=120).returncode


@pytest.mark.parametrize("command", ["add", "delete", "compact"])
def test_kill_leaves_old_or_new_state(base, command) -> None:
    tmp_path, folder = base
    args = {"add": ["index", "add", str(folder), "--vectors", str(tmp_path / "more.npy"), "--ids", str(tmp_path / "more_ids.npy"), "--meta", str(tmp_path / "m2.jsonl")],
            "delete": ["index", "delete", str(folder), "--ids", "1,2,3,4,5,6,8,9,10,11,12,13"],
            "compact": ["index", "compact", str(folder)]}[command]
    old = state(folder)
    import shutil

    pristine = tmp_path / "pristine"
    shutil.copytree(folder, pristine)
    assert run(args, None) == 0
    new = state(folder)
    assert new != old or command == "compact"
    for point in POINTS:
        shutil.rmtree(folder)
        shutil.copytree(pristine, folder)
        assert run(args, point) == -9, point  # really killed
        got = state(folder)  # loads, checksums verified
        assert got == (new if point == "after-manifest" else old), point
        # The next write finishes the job and cleans up the killed run's leftovers.
        if point != "after-manifest":
            assert run(args, None) == 0
            assert state(folder) == new
        else:
            assert run(["index", "compact", str(folder)], None) == 0
        assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")], point
