"""Captions for image-text pairs: cleaning, icon-name captions and concept keys.

A caption is lower-case words separated by single spaces. :func:`clean_caption` turns a raw name
(``"network-wireless-signal-good"``, ``":red_heart:"``, ``"GRINNING FACE"``) into one, or into ``""``
when nothing readable is left. A *concept key* groups images that show the same thing (the same icon
in several sizes, themes or colours; an emoji and its skin-tone variants) so that a split never puts
one of them in training and another in test.

Example:
    >>> clean_caption("network-wireless-signal-good")
    'network wireless signal good'
    >>> icon_concept("folder-blue-music-symbolic")
    'folder music'
"""

from __future__ import annotations

from collections.abc import Iterable

from mrl.data.image_items import clean_caption

# Words that name a colour/style variant of an icon rather than what it shows (Papirus folder
# colours, the symbolic/rtl/ltr variants); dropped from concept keys, kept in captions.
VARIANT_WORDS = frozenset(
    ["symbolic", "rtl", "ltr", "custom", "adwaita", "black", "blue", "bluegrey", "breeze", "brown", "carmine", "cyan", "darkcyan", "deeporange", "green", "grey", "indigo", "magenta", "nordic", "orange", "palebrown", "paleorange", "pink", "red", "teal", "violet", "white", "yaru", "yellow"]
)
# Caption words that only say how the file is drawn, not what it shows.
STYLE_WORDS = frozenset({"symbolic", "rtl", "ltr", "x"})  # "x": the MIME "x-" prefix

def unique_captions(raw: Iterable[str], *, drop_words: frozenset[str] = frozenset()) -> list[str]:
    """Clean every caption, drop ``drop_words`` and empty results, keep first-seen order without repeats."""
    seen: dict[str, None] = {}
    for text in raw:
        words = [w for w in clean_caption(text).split() if w not in drop_words]
        if words:
            seen.setdefault(" ".join(words))
    return list(seen)


def icon_captions(names: Iterable[str]) -> list[str]:
    """Captions of an icon from its file name and alias names (without the style words).

    ``["battery-good-symbolic", "battery-060"]`` -> ``["battery good", "battery 060"]``.
    """
    return unique_captions(names, drop_words=STYLE_WORDS)


def icon_concept(name: str) -> str:
    """The concept key of an icon name: its words without colour/style variant words, sorted.

    Sorting makes ``folder-music-blue`` and ``folder-blue-music`` one concept.
    """
    words = [w for w in clean_caption(name).split() if w not in VARIANT_WORDS]
    return " ".join(sorted(words)) or clean_caption(name)
