"""What every image-text source yields: pictures with captions, and the inputs it had to skip.

A source (colour emoji, an icon theme, a user's pair file) produces :class:`RawItem` objects, one per
distinct picture, and a list of :class:`Skipped` inputs with the reason. The builder in
:mod:`mrl.data.image_text` then deduplicates, groups, splits and writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image

# Debian packages that ship the system inputs; named in every "missing input" error.
DEBIAN_PACKAGES = {
    "emoji_font": "fonts-noto-color-emoji",
    "rsvg-convert": "librsvg2-bin",
    "papirus": "papirus-icon-theme",
    "papirus-dark": "papirus-icon-theme",
    "papirus-light": "papirus-icon-theme",
    "epapirus": "papirus-icon-theme",
    "adwaita": "adwaita-icon-theme",
    "hicolor": "hicolor-icon-theme",
    "breeze": "breeze-icon-theme",
    "breeze-dark": "breeze-icon-theme",
    "oxygen": "oxygen-icon-theme",
    "tango": "tango-icon-theme",
    "gnome": "gnome-icon-theme",
    "elementary": "elementary-icon-theme",
    "elementary-xfce": "elementary-xfce-icon-theme",
    "mate": "mate-icon-theme",
    "numix": "numix-icon-theme",
    "suru": "suru-icon-theme",
    "yaru": "yaru-theme-icon",
    "deepin": "dde-icon-theme",
}


@dataclass
class RawItem:
    """One picture with its captions.

    ``image``: RGBA picture at any size (the builder composites it on white and resizes it);
    ``captions``: cleaned captions, best first (at least one); ``concept``: the key that groups
    variants of the same thing; ``source``: e.g. ``emoji`` or ``icons:Papirus``; ``name``: a
    readable identifier (the emoji, the icon name, the image path); ``info``: extra fields kept in
    the item record (e.g. the file the picture came from); ``variant``: True when other pictures of
    the same source, concept and style are colour variants of this one, of which the builder keeps
    one (icon themes); False keeps every picture (emoji, a user's pairs).
    """

    image: Image.Image
    captions: list[str]
    concept: str
    source: str
    name: str
    info: dict[str, Any] = field(default_factory=dict)
    variant: bool = False


@dataclass(frozen=True)
class Skipped:
    """An input a source could not use, and why (recorded in the data set's manifest)."""

    source: str
    name: str
    reason: str


@dataclass
class SourceResult:
    """What a source produced: items, skipped inputs and a description for the manifest."""

    items: list[RawItem]
    skipped: list[Skipped]
    info: dict[str, Any]


def debian_package(key: str) -> str | None:
    """The Debian package that provides ``key`` (an icon theme name, ``emoji_font``, ``rsvg-convert``), if known."""
    return DEBIAN_PACKAGES.get(key.lower())


def install_hint(key: str) -> str:
    """``install it with `apt-get install PACKAGE` `` for a known input, else a generic hint."""
    package = debian_package(key)
    return f"install it with `apt-get install {package}`" if package else f"install the Debian package that ships {key!r}"


def package_version(package: str) -> str | None:
    """The installed version of a Debian package (``dpkg-query``), or None when unknown."""
    import shutil
    import subprocess

    if shutil.which("dpkg-query") is None:
        return None
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None
