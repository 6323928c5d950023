"""Run README command lines one after another in ONE fresh interpreter, as a shell script would.

``python tests/journeys/driver.py SCRIPT.json RESULT.json``: SCRIPT holds ``{"lines": [...], "stop": true}``.
Each ``mrl ...`` line runs the real command line (``mrl.cli.app``, the code behind ``.venv/bin/mrl``)
with its own stdout/stderr captured and its exit code recorded; ``python ...`` lines run as child
processes of this interpreter. Sharing one interpreter across a journey's commands pays torch's
import once per journey instead of once per command (the whole set must fit the suite's budget); set
``MRL_JOURNEY_SUBPROCESS=1`` to run every command as its own process instead (slower, same checks).
"""

from __future__ import annotations

import contextlib
import io
import json
import shlex
import subprocess
import sys
import time


def run_mrl(args: list[str]) -> tuple[int, str, str]:
    from mrl.cli.app import app

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            app(args=args, prog_name="mrl", standalone_mode=True)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException as exc:
            import traceback

            err.write(traceback.format_exc())
            code = 1
            del exc
    return code, out.getvalue(), err.getvalue()


def run_line(line: str) -> list[dict]:
    """One shell line: ``a && b`` runs b only when a succeeds. Returns one record per command run."""
    records = []
    for part in line.split("&&"):
        tokens = shlex.split(part, comments=True)
        if not tokens:
            continue
        t0 = time.perf_counter()
        if tokens[0] == "mrl":
            code, out, err = run_mrl(tokens[1:])
        else:
            if tokens[0] == "python":
                tokens[0] = sys.executable
            proc = subprocess.run(tokens, capture_output=True, text=True, check=False)
            code, out, err = proc.returncode, proc.stdout, proc.stderr
        records.append({"command": part.strip(), "rc": code, "stdout": out, "stderr": err, "seconds": round(time.perf_counter() - t0, 2)})
        if code != 0:
            break
    return records


def main() -> None:
    script = json.loads(open(sys.argv[1]).read())
    results = []
    for line in script["lines"]:
        recs = run_line(line)
        results.extend(recs)
        if script.get("stop", True) and recs and recs[-1]["rc"] != 0:
            break
    with open(sys.argv[2], "w") as fh:
        json.dump(results, fh)


if __name__ == "__main__":
    main()
