"""The Debian packages behind the image-text sources (emoji font, icon themes, rasteriser), named in
every "missing input" error, and their installed versions for the manifest.

The item format every source yields (:class:`mrl.data.image_items.RawItem`) lives in
:mod:`mrl.data.image_items`, because a user's pair file (:mod:`mrl.data.image_pairs`) yields it too.
"""

from __future__ import annotations

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
