"""A user's own image-caption pairs as a source for :func:`mrl.corpora.image_text.build_image_text`.

The pair file is JSON Lines (``{"image": "cats/1.png", "caption": "a grey cat"}``; ``captions`` may
be a list) or CSV/TSV with a header naming ``image`` and ``caption``. Several rows may name the same
image (one caption each). An optional ``concept`` column groups pictures that must share a split
(default: the picture's first caption). Relative image paths are read from the pair file's folder.

Every input is checked: an unreadable picture or a caption with nothing left after cleaning is an
error naming the line, never a silently smaller data set.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from mrl.data.image_items import RawItem, SourceResult, clean_caption, load_raster
from mrl.data.jsonl import json_object_lines
from mrl.errors import DataError

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".tab": "tsv"}


def _rows(path: Path) -> list[tuple[int, dict]]:
    if not path.is_file():
        raise DataError(f"pair file {path} does not exist; check the path.")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"pair file {path} must end in {sorted(FORMATS)} (JSON Lines, CSV or TSV).")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"pair file {path} is not UTF-8; re-save it as UTF-8.") from exc
    if fmt == "jsonl":
        return json_object_lines(text, str(path), 'each line must be one object like {"image": ..., "caption": ...}')
    reader = csv.DictReader(io.StringIO(text), delimiter="," if fmt == "csv" else "\t")
    if reader.fieldnames is None or len(set(reader.fieldnames)) != len(reader.fieldnames):
        raise DataError(f"{path} needs a header row with distinct column names (image, caption).")
    return [(n + 2, row) for n, row in enumerate(reader)]


def pair_items(path: str | os.PathLike[str]) -> SourceResult:
    """Read a pair file into one :class:`RawItem` per distinct image.

    Raises:
        DataError: a missing column, an unreadable image or a caption empty after cleaning (the
            message names the file and line), or a file with no rows.
    """
    pair_file = Path(path)
    base = pair_file.parent
    by_image: dict[Path, RawItem] = {}
    for line, row in _rows(pair_file):
        image = row.get("image")
        raw = row.get("captions", row.get("caption"))
        if not image or raw is None:
            raise DataError(f"{pair_file} line {line} needs 'image' and 'caption' fields; add them.")
        raw_list = raw if isinstance(raw, list) else [raw]
        captions = [clean_caption(str(c)) for c in raw_list]
        if not all(captions):
            bad = raw_list[captions.index("")]
            raise DataError(f"{pair_file} line {line}: caption {bad!r} is empty after cleaning (no letters or digits); write a caption or remove the line.")
        img_path = (base / str(image)).resolve() if not Path(str(image)).is_absolute() else Path(str(image))
        item = by_image.get(img_path)
        if item is None:
            try:
                picture = load_raster(img_path)
            except DataError as exc:
                raise DataError(f"{pair_file} line {line}: {exc}") from exc
            concept = clean_caption(str(row.get("concept") or "")) or captions[0]
            item = RawItem(picture, [], concept, f"pairs:{pair_file.name}", str(image), {"file": str(image)})
            by_image[img_path] = item
        item.captions += [c for c in captions if c not in item.captions]
    if not by_image:
        raise DataError(f"pair file {pair_file} has no rows; add lines with an image and a caption.")
    return SourceResult(list(by_image.values()), [], {"kind": "pairs", "file": str(pair_file), "rows_images": len(by_image)})
