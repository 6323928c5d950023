"""README "Image-text (two towers)": build a data set from your own pairs, train both towers (MRL and
FF), evaluate, embed each tower, index the pictures, export the text tower and serve it.

Small scale: 72 generated shape pictures at 16 px captioned by colour and shape (the README's
"Your own pairs" route: `--pairs ... --no-emoji --themes ''`), 1 epoch of a width-4 image tower.
The emoji/icon route needs `make bench-data` (Debian fonts and icon themes); it runs where those are installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from conftest import REPO, ServerProcess, run_commands

SMALL = "--set width=4 --set image_features=16 --set text_hidden=0 --set epochs=1 --set batch_size=16 --set warmup_steps=2 --set feature_cache=cache --set threads=2"
BUILD = "python benchmarks/build_image_text.py --out data/emoji-icons --pairs pictures/pairs.jsonl --no-emoji --themes '' --size 16 --val-fraction 0.2 --test-fraction 0.35"  # >= 50 test pictures for the 32:50 funnel
IMAGE_TEXT = [
    BUILD,
    "mrl train --config configs/emoji_icons_multimodal.yaml --out runs/mm " + SMALL,
    "mrl train --config configs/emoji_icons_multimodal.yaml --out runs/mm-ff --set mode=ff " + SMALL,
    "mrl eval-multimodal runs/mm runs/mm-ff --data data/emoji-icons --out mm.json",
    "mrl embed runs/mm --tower image --data data/emoji-icons --split test --out pics.npy",
    "mrl embed runs/mm --tower text --input queries.txt --out q.npy",
    "mrl index build pic-idx/ --vectors pics.npy && mrl index search pic-idx/ --queries q.npy --funnel '32:50 -> 256:10'",
    "mrl export-text-tower runs/mm --out runs/mm-text",
]
README_COMMANDS = {
    "test_image_text_two_towers": [*IMAGE_TEXT, "mrl serve --model runs/mm-text --index pic-idx/ --port PORT"],
    "test_bench_data_target_lists_the_image_text_sources": ["make bench-data"],
}
README_BLOCKS: dict[str, list[str]] = {}


def test_bench_data_target_lists_the_image_text_sources():
    """`make bench-data` installs Debian packages (root) or prints the apt line: checked as a dry run."""
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    proc = subprocess.run(["make", "-n", "bench-data"], cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    for pkg in ("fonts-noto-color-emoji", "papirus-icon-theme", "librsvg2-bin"):
        assert pkg in proc.stdout, pkg


def write_pairs(folder: Path, colours: dict, shapes: tuple, draw) -> None:
    """180 pictures (6 colours x 6 shapes x 5 sizes) and their pair file, as a user's own pairs."""
    import json

    folder.mkdir(parents=True)
    rows = []
    for colour, rgb in colours.items():
        for shape in shapes:
            for inset in (3, 6, 9, 12, 15):
                name = f"{colour}-{shape}-{inset}.png"
                draw(shape, rgb, inset=inset).save(folder / name)
                rows.append({"image": name, "caption": f"a {shape} in {colour}"})
    (folder / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_image_text_two_towers(tmp_path: Path, minilm_path: str):
    from mm_fixtures import COLOURS, SHAPES, draw_shape

    (tmp_path / "configs").symlink_to(REPO / "configs")
    (tmp_path / "benchmarks").symlink_to(REPO / "benchmarks")
    write_pairs(tmp_path / "pictures", COLOURS, SHAPES, draw_shape)
    (tmp_path / "queries.txt").write_text("red circle\na square in blue\ngreen cross\n")
    run_commands(IMAGE_TEXT, tmp_path)
    assert re.search(r'"recall@10"|recall', (tmp_path / "mm.json").read_text())
    assert (tmp_path / "runs" / "mm-text" / "modules.json").is_file()
    with ServerProcess(["--model", "runs/mm-text", "--index", "pic-idx/"], tmp_path, start_timeout=180) as srv:
        r = httpx.post(srv.url + "/v1/search", json={"input": "a red heart"}, timeout=60)
        assert r.status_code == 200, r.text
        assert len(r.json()["data"][0]["ids"]) == 10
