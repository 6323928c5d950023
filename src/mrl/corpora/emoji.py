"""Colour emoji rendered from a font, captioned with their Unicode names and aliases.

The pictures come from Debian's ``fonts-noto-color-emoji`` (a CBDT bitmap font: Pillow renders it
only at its native pixel size, 109, with ``embedded_color=True``); the captions from the PyPI
package ``emoji`` (CLDR short names such as ``red heart`` and GitHub/Slack aliases such as
``heart``) and Python's :mod:`unicodedata` (``HEAVY BLACK HEART``).

Only fully-qualified emoji are used; skin-tone variants are left out (they are the same picture in
another colour, and would otherwise leak between splits), and so is any sequence the font does not
draw as one glyph.

Example:
    >>> result = emoji_items()               # needs fonts-noto-color-emoji
    >>> result.items[0].captions
    ['grinning face', 'grinning']
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from mrl.corpora.captions import unique_captions
from mrl.corpora.sources import debian_package, install_hint, package_version
from mrl.data.image_items import RawItem, Skipped, SourceResult
from mrl.errors import DataError

EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
NATIVE_SIZE = 109  # the only pixel size of Noto Color Emoji's bitmaps
SKIN_TONES = frozenset(chr(c) for c in range(0x1F3FB, 0x1F400))
JOINERS = frozenset({"\u200d", "\ufe0f", "\ufe0e"})
FULLY_QUALIFIED = 2  # emoji.STATUS["fully_qualified"]


def find_emoji_font(path: str | os.PathLike[str] | None = None) -> Path:
    """The emoji font to render with: ``path``, ``$MRL_EMOJI_FONT`` or Debian's Noto Color Emoji.

    Raises:
        DataError: the font file does not exist (names the Debian package to install).
    """
    font = Path(path or os.environ.get("MRL_EMOJI_FONT") or EMOJI_FONT)
    if not font.is_file():
        raise DataError(f"emoji font {font} not found; {install_hint('emoji_font')} or pass the path of a colour emoji font.")
    return font


def emoji_captions(char: str, data: dict) -> list[str]:
    """Captions of one emoji: its CLDR name, its aliases, then the Unicode name of each code point.

    ``data`` is the emoji's entry in ``emoji.EMOJI_DATA``. Joiners and variation selectors have no
    caption of their own.
    """
    raw = [data.get("en", ""), *data.get("alias", [])]
    points = [c for c in char if c not in JOINERS]
    if len(points) == 1:
        raw.append(unicodedata.name(points[0], ""))
    return unique_captions(raw)


def font_codepoints(path: Path) -> frozenset[int]:
    """The code points a font maps to glyphs (its best cmap, read with fontTools)."""
    from fontTools.ttLib import TTFont, TTLibError

    try:
        with TTFont(str(path), fontNumber=0, lazy=True) as tt:
            return frozenset(tt.getBestCmap() or {})
    except (TTLibError, OSError) as exc:
        raise DataError(f"cannot read the character map of {path} ({exc}); pass a TrueType/OpenType colour emoji font.") from exc


def render_glyph(font: ImageFont.FreeTypeFont, text: str) -> Image.Image | None:
    """Draw ``text`` in colour on a transparent canvas and crop it to a square around the ink.

    Returns None when nothing is drawn (the font has no glyph) or when the text advances further
    than its first code point alone (the font drew a sequence as several glyphs side by side).
    """
    points = [c for c in text if c not in JOINERS]
    if not points or font.getlength(text) > 1.05 * max(font.getlength(points[0]), 1.0):
        return None
    size = int(font.size)
    canvas = Image.new("RGBA", (3 * size, 2 * size), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((size // 2, size // 2), text, font=font, embedded_color=True)
    box = canvas.getbbox()
    if box is None:
        return None
    w, h = box[2] - box[0], box[3] - box[1]
    side = max(w, h)
    square = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    square.paste(canvas.crop(box), ((side - w) // 2, (side - h) // 2))
    return square


def emoji_items(font_path: str | os.PathLike[str] | None = None, *, font_size: int = NATIVE_SIZE, limit: int | None = None) -> SourceResult:
    """Render every fully-qualified emoji without a skin tone, with its captions.

    Args:
        font_path: the colour emoji font (default: :func:`find_emoji_font`).
        font_size: pixel size to load the font at (a CBDT font accepts only its native size).
        limit: stop after this many items (for tests).

    Returns:
        :class:`SourceResult` with one :class:`RawItem` per emoji (``concept`` = the emoji without
        variation selectors) and the emoji the font could not draw.
    """
    import emoji

    font_file = find_emoji_font(font_path)
    try:
        font = ImageFont.truetype(str(font_file), font_size)
    except OSError as exc:
        raise DataError(f"cannot load {font_file} at size {font_size} ({exc}); a colour bitmap font such as Noto Color Emoji loads only at its native size {NATIVE_SIZE}.") from exc
    cmap = font_codepoints(font_file)
    items: list[RawItem] = []
    skipped: list[Skipped] = []
    for char, data in emoji.EMOJI_DATA.items():
        if data.get("status") != FULLY_QUALIFIED or SKIN_TONES.intersection(char):
            continue
        captions = emoji_captions(char, data)
        if not captions:
            skipped.append(Skipped("emoji", char, "no caption left after cleaning"))
            continue
        missing = [c for c in char if c not in JOINERS and ord(c) not in cmap]
        if missing:  # without this check a font would draw its "missing glyph" box
            skipped.append(Skipped("emoji", char, "the font has no glyph for it"))
            continue
        image = render_glyph(font, char)
        if image is None:
            skipped.append(Skipped("emoji", char, "the font does not draw it as one glyph"))
            continue
        concept = "".join(c for c in char if c not in JOINERS)
        items.append(RawItem(image, captions, concept, "emoji", char, {"codepoints": " ".join(f"U+{ord(c):04X}" for c in char)}))
        if limit is not None and len(items) >= limit:
            break
    info = {
        "kind": "emoji", "font": str(font_file), "font_package": debian_package("emoji_font"),
        "font_package_version": package_version("fonts-noto-color-emoji") if font_file == EMOJI_FONT else None,
        "captions_from": f"PyPI emoji {getattr(emoji, '__version__', '?')} (CLDR names, aliases) and unicodedata (Unicode {unicodedata.unidata_version})",
    }
    return SourceResult(items, skipped, info)
