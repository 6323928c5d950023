"""Icons from freedesktop icon themes, captioned with their file names.

Icon names describe the picture (``network-wireless-signal-good``, ``media-playback-start``), and
themes alias one picture under several names with symbolic links; every name becomes a caption of
that picture. For each icon name the file drawn for the size nearest above the render size is used
(the largest one when none is that big). PNG files load with Pillow; SVG files are rasterised with
``rsvg-convert`` (Debian ``librsvg2-bin``), a few processes at a time.

Themes are folders under ``/usr/share/icons`` (e.g. ``Papirus`` from ``papirus-icon-theme``,
``Adwaita`` from ``adwaita-icon-theme``), laid out ``<size>/<category>/<name>.svg`` or
``<category>/<size>/<name>.png``; ``@2x`` folders are skipped (the same pictures at double density).
Brand logos (``apps``) and tray icons (``panel``) are left out by default: their names are product
names, not descriptions.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from mrl.corpora.captions import icon_captions, icon_concept
from mrl.corpora.sources import debian_package, install_hint, package_version
from mrl.data.image_items import RawItem, Skipped, SourceResult, load_raster
from mrl.errors import DataError

ICON_ROOTS = (Path("/usr/share/icons"), Path("~/.local/share/icons").expanduser(), Path("~/.icons").expanduser())
CATEGORIES = ("actions", "categories", "devices", "emblems", "emotes", "mimetypes", "places", "status", "legacy", "ui")
VECTOR_SIZE = 10_000  # the nominal size of scalable/symbolic folders (drawn at any size)
_SIZE_DIR = re.compile(r"^(\d+)(?:x(\d+))?$")


@dataclass(frozen=True)
class IconFile:
    """One icon file: its name (file stem), category, nominal size in pixels and path."""

    name: str
    category: str
    size: int
    path: Path


def find_theme(name: str, roots: Sequence[str | os.PathLike[str]] | None = None) -> Path:
    """The folder of icon theme ``name`` (a path, or a theme name under the icon roots).

    Raises:
        DataError: the theme is not installed (names the Debian package that ships it).
    """
    if os.sep in name:
        path = Path(name)
        if path.is_dir():
            return path
        raise DataError(f"icon theme folder {path} does not exist; check the path.")
    searched = [Path(r) for r in (roots if roots is not None else ICON_ROOTS)]
    for root in searched:
        if (root / name).is_dir():
            return root / name
    raise DataError(f"icon theme {name!r} not found in {', '.join(map(str, searched))}; {install_hint(name)}.")


def _size_of(part: str) -> int | None:
    if part in ("scalable", "symbolic") or part.startswith("scalable-"):
        return VECTOR_SIZE
    m = _SIZE_DIR.match(part)
    return int(m.group(1)) if m else None


def scan_theme(theme: Path, categories: Sequence[str] = CATEGORIES) -> list[IconFile]:
    """Every ``.png``/``.svg`` of the wanted categories in a theme folder (symbolic links included).

    Shape-free; the order is sorted by path so that scanning is deterministic.
    """
    wanted = set(categories)
    found: list[IconFile] = []
    for dirpath, _dirs, files in os.walk(theme, followlinks=False):
        parts = Path(dirpath).relative_to(theme).parts
        if any("@" in p for p in parts):
            continue
        sizes = [s for s in map(_size_of, parts) if s is not None]
        cats = [p for p in parts if p in wanted]
        if not sizes or not cats:
            continue
        for f in files:
            stem, ext = os.path.splitext(f)
            if ext.lower() in (".png", ".svg"):
                found.append(IconFile(stem, cats[0], sizes[0], Path(dirpath) / f))
    return sorted(found, key=lambda i: str(i.path))


def pick_files(files: Sequence[IconFile], render_size: int) -> dict[str, IconFile]:
    """For each icon name, the file drawn for the smallest size >= ``render_size`` (else the largest).

    At equal sizes an SVG is preferred to a PNG.
    """
    by_name: dict[str, list[IconFile]] = defaultdict(list)
    for f in files:
        by_name[f.name].append(f)

    def rank(f: IconFile) -> tuple[int, int, int]:
        big = f.size >= render_size
        return (0 if big else 1, f.size if big else -f.size, 0 if f.path.suffix == ".svg" else 1)

    return {name: min(group, key=rank) for name, group in by_name.items()}


def rasterise_svg(path: Path, size: int) -> Image.Image:
    """Rasterise an SVG to a ``size`` x ``size`` RGBA picture with ``rsvg-convert``.

    Raises:
        DataError: ``rsvg-convert`` is missing (names its Debian package) or fails on the file.
    """
    exe = shutil.which("rsvg-convert")
    if exe is None:
        raise DataError(f"SVG icons need rsvg-convert; {install_hint('rsvg-convert')}.")
    try:
        out = subprocess.run([exe, "-w", str(size), "-h", str(size), "--keep-aspect-ratio", str(path)], capture_output=True, timeout=60, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DataError(f"rsvg-convert took over 60 s on {path}; the SVG is broken or huge.") from exc
    if out.returncode != 0:
        raise DataError(f"rsvg-convert cannot read {path}: {out.stderr.decode(errors='replace').strip().splitlines()[-1:] or 'no message'}")
    return load_raster(io.BytesIO(out.stdout), str(path))


def load_icon(path: Path, size: int) -> Image.Image:
    """An icon file as RGBA: SVGs rasterised at ``size``, PNGs as they are (the builder resizes)."""
    if path.suffix.lower() == ".svg":
        return rasterise_svg(path, size)
    return load_raster(path)


def icon_items(theme: str, *, categories: Sequence[str] = CATEGORIES, render_size: int = 64, workers: int = 2, roots: Sequence[str | os.PathLike[str]] | None = None, limit: int | None = None) -> SourceResult:
    """The pictures of an icon theme with their name captions.

    Names whose chosen files are one file (symbolic links) become one item whose captions are all
    those names, the real file's name first. Broken links and unreadable files are skipped and
    reported. ``concept`` is :func:`mrl.corpora.captions.icon_concept` of the real file's name.

    Args:
        theme: a theme name under ``/usr/share/icons`` (or a folder).
        categories: the theme's sub-folders to use.
        render_size: the size SVGs are rasterised at, and the size the file choice aims for.
        workers: rasterising processes run at once.
        limit: stop after this many items (for tests).
    """
    root = find_theme(theme, roots)
    source = f"icons:{root.name}"
    chosen = pick_files(scan_theme(root, categories), render_size)
    if not chosen:
        raise DataError(f"icon theme {root} has no .png/.svg icons in the categories {list(categories)}; check the theme or the categories.")
    skipped: list[Skipped] = []
    by_file: dict[Path, list[IconFile]] = defaultdict(list)
    for name in sorted(chosen):
        f = chosen[name]
        real = f.path.resolve()
        if not real.is_file():
            skipped.append(Skipped(source, str(f.path), "broken symbolic link"))
            continue
        by_file[real].append(f)
    jobs = sorted(by_file.items(), key=lambda kv: str(kv[0]))
    if limit is not None:
        jobs = jobs[:limit]
    if any(real.suffix.lower() == ".svg" for real, _ in jobs) and shutil.which("rsvg-convert") is None:
        raise DataError(f"theme {root.name} has SVG icons, which need rsvg-convert; {install_hint('rsvg-convert')}.")

    def load(job: tuple[Path, list[IconFile]]) -> RawItem | Skipped:
        real, names = job
        try:
            image = load_icon(real, render_size)
        except DataError as exc:
            return Skipped(source, str(real), str(exc))
        # the real file's own name first (when it is one of the chosen names), then aliases shortest first
        ordered = sorted(names, key=lambda f: (f.name != real.stem, len(f.name), f.name))
        captions = icon_captions(f.name for f in ordered)
        if not captions:
            return Skipped(source, str(real), "no caption left after cleaning")
        return RawItem(image, captions, icon_concept(ordered[0].name), source, ordered[0].name, {"file": str(real.relative_to(root)) if real.is_relative_to(root) else str(real), "category": ordered[0].category}, variant=True)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(load, jobs))
    items = [r for r in results if isinstance(r, RawItem)]
    skipped += [r for r in results if isinstance(r, Skipped)]
    package = debian_package(root.name)
    info = {"kind": "icons", "theme": root.name, "path": str(root), "package": package, "package_version": package_version(package) if package and root.parent == ICON_ROOTS[0] else None, "categories": list(categories)}
    return SourceResult(items, skipped, info)
