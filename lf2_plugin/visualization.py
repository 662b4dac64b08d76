"""Pictures of re-ID results: rows of person crops with coloured borders and captions (rank lists, clusters).

fast-reid's ``Visualizer`` draws rank lists of an evaluated query/gallery split (it needs per-query AP and drops
same-identity same-camera gallery images, the evaluation protocol); these helpers draw any rows of files, for
searches over unlabelled folders and for pseudo-label clusters.
"""

import colorsys
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

__all__ = ["Tile", "draw_rows", "identity_colour", "MATCH", "MISMATCH", "UNKNOWN", "QUERY"]

MATCH = (40, 170, 60)
MISMATCH = (220, 40, 40)
UNKNOWN = (160, 160, 160)
QUERY = (30, 90, 220)
_BACKGROUND = (255, 255, 255)
_TEXT = (0, 0, 0)


@dataclass
class Tile:
    """One image of a row: its file, border colour and a short caption under it."""

    path: str
    colour: tuple = UNKNOWN
    caption: str = ""


def identity_colour(identity):
    """A stable colour per identity number, grey for unknown (< 0): hues spaced by the golden ratio, so that
    neighbouring numbers (group-mates, often numbered in a row) get clearly different colours."""
    if identity is None or identity < 0:
        return UNKNOWN
    red, green, blue = colorsys.hsv_to_rgb((int(identity) * 0.6180339887) % 1.0, 0.85, 0.9)
    return int(red * 255), int(green * 255), int(blue * 255)


def _cell(tile, size, border):
    height, width = size
    with Image.open(tile.path) as image:
        image = image.convert("RGB").resize((width, height), Image.BICUBIC)
    framed = Image.new("RGB", (width + 2 * border, height + 2 * border), tile.colour)
    framed.paste(image, (border, border))
    return framed


def draw_rows(rows, path, *, titles=None, cell_size=(128, 64), border=4, gap=6):
    """Save a picture of ``rows`` (lists of :class:`Tile`) to ``path``, one row of cells per list, a title above
    each row (``titles``) and each tile's caption under it. Rows may differ in length."""
    font = ImageFont.load_default()
    line = 12  # height of one line of the default font, with spacing
    cell_h, cell_w = cell_size[0] + 2 * border, cell_size[1] + 2 * border
    longest = max((len(row) for row in rows), default=1)
    title_h = line if titles else 0
    caption_h = line if any(t.caption for row in rows for t in row) else 0
    row_h = title_h + cell_h + caption_h + gap
    canvas = Image.new("RGB", (gap + longest * (cell_w + gap), gap + len(rows) * row_h), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        top = gap + r * row_h
        if titles:
            draw.text((gap, top), titles[r], fill=_TEXT, font=font)
        for c, tile in enumerate(row):
            left = gap + c * (cell_w + gap)
            canvas.paste(_cell(tile, cell_size, border), (left, top + title_h))
            if tile.caption:
                draw.text((left, top + title_h + cell_h), tile.caption[: max(4, cell_w // 6)], fill=_TEXT, font=font)
    canvas.save(path)
    return path
