"""Build the paired image-text data set (colour emoji + icon themes) used by the multimodal benchmark.

Needs the Debian packages of `make bench-data` (fonts-noto-color-emoji, papirus-icon-theme,
adwaita-icon-theme, librsvg2-bin). The library does the work (set ``image-text`` of mrl.corpora.registry: mrl.corpora.emoji,
mrl.corpora.icons, mrl.data.image_pairs, mrl.corpora.image_text); this script only parses arguments.

    python benchmarks/build_image_text.py --out data/emoji-icons
    python benchmarks/build_image_text.py --out data/mine --no-emoji --themes "" --pairs my_pairs.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from mrl.corpora.icons import CATEGORIES
from mrl.errors import MRLError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="Data set folder to write.")
    p.add_argument("--size", type=int, default=32, help="Side of the stored pictures in pixels.")
    p.add_argument("--seed", type=int, default=0, help="Seed of the split by concept group.")
    p.add_argument("--no-emoji", action="store_true", help="Leave the colour emoji out.")
    p.add_argument("--emoji-font", default=None, help="Colour emoji font (default: Debian's Noto Color Emoji).")
    p.add_argument("--themes", default="Papirus,Adwaita", help="Comma list of icon themes under /usr/share/icons ('' for none).")
    p.add_argument("--categories", default=",".join(CATEGORIES), help="Icon categories (theme sub-folders) to use.")
    p.add_argument("--pairs", action="append", default=[], help="A user pair file (JSONL/CSV/TSV with image, caption); repeatable.")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--test-fraction", type=float, default=0.15)
    p.add_argument("--workers", type=int, default=2, help="SVG rasterising processes at once.")
    p.add_argument("--overwrite", action="store_true", help="Rebuild a data set already in --out.")
    args = p.parse_args(argv)

    from mrl.corpora.registry import build_set

    t0 = time.perf_counter()
    try:
        manifest = build_set(
            "image-text", args.out, log=lambda m: print(m, file=sys.stderr),
            emoji=not args.no_emoji, emoji_font=args.emoji_font, themes=[t.strip() for t in args.themes.split(",") if t.strip()],
            categories=[c.strip() for c in args.categories.split(",") if c.strip()], pairs=args.pairs, workers=args.workers,
            size=args.size, seed=args.seed, val_fraction=args.val_fraction, test_fraction=args.test_fraction, overwrite=args.overwrite,
        )
    except MRLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({s: manifest["splits"][s]["pictures"] for s in manifest["splits"]}), f"pictures in {time.perf_counter() - t0:.0f}s -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
