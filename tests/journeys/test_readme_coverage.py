"""Every command line and python block of README.md is run by some journey (issue 25 §1).

A README command is covered when a journey runs the same command (``mrl index build``, ``make demo``,
``python benchmarks/x.py``) with at least all of its options (journeys may add small-scale ones such
as ``--set epochs=1``). A new README command, or a new option on an existing one, with no journey
that runs it fails here, naming it. ``python tests/journeys/test_readme_coverage.py`` prints the map.
"""

from __future__ import annotations

import importlib
import shlex
import sys
from pathlib import Path
from types import ModuleType

from conftest import readme_blocks, readme_command_lines

HERE = Path(__file__).parent
GROUPS = ("index", "cascade")  # `mrl index build`, `mrl cascade fit`: two-word commands


def signature(line: str) -> tuple[tuple[str, ...], frozenset[str]]:
    """``(command path, options)`` of a shell line: ``mrl index build idx/ --k 10`` -> ``(("mrl", "index", "build"), {"--k"})``."""
    tokens = shlex.split(line, comments=True)
    if not tokens:
        return (), frozenset()
    if tokens[0] == "mrl":
        path = tuple(tokens[:3]) if len(tokens) > 2 and tokens[1] in GROUPS else tuple(tokens[:2])
    elif tokens[0] == "curl":  # an HTTP request: its endpoint and the body's fields
        import json
        from urllib.parse import urlparse

        url = next((t for t in tokens if t.startswith("http")), "")
        body = tokens[tokens.index("-d") + 1] if "-d" in tokens[:-1] else "{}"
        return ("curl", urlparse(url).path), frozenset(f"-d:{k}" for k in json.loads(body))
    elif tokens[0] in ("make", "python", "python3"):
        path = ("python" if tokens[0].startswith("python") else "make", *tokens[1:2])
    else:
        path = tuple(tokens[:1])
    options = {t.split("=", 1)[0] for t in tokens[len(path):] if t.startswith("-")}
    # the recipe decides what `mrl train` does (image, text, two towers): a journey must run the README's own
    options |= {f"--config={v}" for k, v in zip(tokens, tokens[1:]) if k == "--config"}
    options |= {f"--set:{v.split('=', 1)[0]}" for k, v in zip(tokens, tokens[1:]) if k == "--set"}  # which recipe keys
    return path, frozenset(options)


def journey_modules() -> list[ModuleType]:
    sys.path.insert(0, str(HERE))
    return [importlib.import_module(p.stem) for p in sorted(HERE.glob("test_journey_*.py"))]


def journey_commands(modules: list[ModuleType]) -> list[tuple[str, str]]:
    """``(module::test, line)`` for every command line a journey declares it runs."""
    return [(f"{m.__name__}::{test}", part) for m in modules for test, lines in m.README_COMMANDS.items() for line in lines for part in line.split("&&")]


def coverage(readme: str | None = None, modules: list[ModuleType] | None = None) -> tuple[dict[str, list[str]], list[str]]:
    """README command -> the journeys that run it, and the README commands that none runs."""
    modules = journey_modules() if modules is None else modules
    runs = [(test, signature(line)) for test, line in journey_commands(modules)]
    found, missing = {}, []
    for line in readme_command_lines(readme):
        path, options = signature(line)
        tests = sorted({test for test, (p, o) in runs if p == path and options <= o})
        if tests:
            found[line] = tests
        else:
            missing.append(line)
    return found, missing


def block_coverage(readme: str | None = None, modules: list[ModuleType] | None = None) -> tuple[dict[str, list[str]], list[str]]:
    modules = journey_modules() if modules is None else modules
    claims = [(f"{m.__name__}::{test}", first) for m in modules for test, firsts in m.README_BLOCKS.items() for first in firsts]
    found, missing = {}, []
    for lang, body in readme_blocks(readme):
        if lang != "python":
            continue
        first = body.strip().splitlines()[0]
        tests = sorted({t for t, f in claims if body.lstrip().startswith(f)})
        (found.__setitem__(first, tests) if tests else missing.append(first))
    return found, missing


def test_every_readme_command_is_run_by_a_journey():
    found, missing = coverage()
    assert len(found) >= 40, f"only {len(found)} README commands found: is the README parsed?"
    assert not missing, "README commands that no journey in tests/journeys runs (add them to a journey's README_COMMANDS and run them):\n" + "\n".join(missing)


def test_every_readme_python_block_is_run_by_a_journey():
    found, missing = block_coverage()
    assert len(found) >= 3
    assert not missing, f"README python blocks no journey runs: {missing}"


def test_journey_maps_name_real_tests():
    for m in journey_modules():
        for test in (*m.README_COMMANDS, *m.README_BLOCKS):
            assert callable(getattr(m, test, None)), f"{m.__name__}.README_COMMANDS names {test}, which is not a test in that module"


def test_checker_flags_a_new_command_or_option():
    modules = journey_modules()
    readme = "```bash\nmrl index build idx/ --vectors db.npy --recall-target 0.99 --queries val.npy\nmrl frobnicate x --y 1\nmrl index build idx/ --vectors db.npy --brand-new-flag\n```\n"
    found, missing = coverage(readme, modules)
    assert missing == ["mrl frobnicate x --y 1", "mrl index build idx/ --vectors db.npy --brand-new-flag"]
    assert list(found) == ["mrl index build idx/ --vectors db.npy --recall-target 0.99 --queries val.npy"]
    assert signature("mrl train --nproc=2 --out x") == (("mrl", "train"), frozenset({"--nproc", "--out"}))
    assert signature("mrl train --config a.yaml --out x") != signature("mrl train --config b.yaml --out x")
    assert signature("mrl train --set mode=ff --out x")[1] == {"--set", "--set:mode", "--out"}
    found, missing = block_coverage("```python\nprint('new block')\n```\n", modules)
    assert missing == ["print('new block')"]


if __name__ == "__main__":  # the map for a closing note: README command -> journeys
    commands, missed = coverage()
    blocks, missed_blocks = block_coverage()
    for line, tests in [*commands.items(), *blocks.items()]:
        print(f"{line}\n    -> {', '.join(tests)}")
    for line in [*missed, *missed_blocks]:
        print(f"{line}\n    -> NOT RUN")
