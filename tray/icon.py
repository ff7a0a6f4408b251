"""The tray icon, drawn with Pillow: one coloured disc and white glyph per status, a badge.

Each size is drawn on its own, four times larger, then reduced: lines stay crisp from 16
to 64 pixels instead of being a blurred copy of one big picture. The disc is a saturated
mid-tone with a darker rim and a white glyph, readable on light and dark panels alike.
"""

from __future__ import annotations

import functools
import math

from PIL import Image, ImageDraw, ImageFont

from tray.state import Status

SUPERSAMPLE = 4
SIZES = (16, 22, 24, 32, 48, 64)

# One colour per status (sRGB); the tests read them back from screenshots.
COLOURS: dict[Status, tuple[int, int, int]] = {
    Status.UP_TO_DATE: (46, 139, 87),
    Status.RECEIVING: (30, 111, 217),
    Status.SENDING: (30, 111, 217),
    Status.WAITING: (224, 138, 0),
    Status.RESTART_REQUIRED: (217, 72, 15),
    Status.ERROR: (220, 53, 53),
    Status.OFFLINE: (122, 122, 122),
    Status.PAUSED: (104, 120, 136),
    Status.TO_CONFIGURE: (108, 117, 125),
}
BADGE_COLOUR = (176, 0, 32)
BADGED_DISC = 0.8  # the disc's share of the icon's side when a badge is drawn
WHITE = (255, 255, 255, 255)
Point = tuple[float, float]


def badge_text(count: int) -> str:
    """Return what the badge says ("" for none, "99+" past 99)."""
    if count <= 0:
        return ""
    return str(count) if count <= 99 else "99+"


@functools.lru_cache(maxsize=64)
def draw_icon(status: Status, badge: int = 0, size: int = 32) -> Image.Image:
    """Return the RGBA icon for a status, with the count of waiting updates as a badge."""
    big = size * SUPERSAMPLE
    text = badge_text(badge)
    if not text:
        return _disc(status, big).resize((size, size), Image.Resampling.LANCZOS)
    # With a badge the disc shrinks towards the upper left corner, so that the badge in
    # the lower right covers only its rim, never the glyph (it matters most at 22-24 px).
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    disc = round(big * BADGED_DISC)
    image.alpha_composite(_disc(status, big).resize((disc, disc), Image.Resampling.LANCZOS))
    _draw_badge(image, text, big)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def _disc(status: Status, big: int) -> Image.Image:
    """Return the coloured disc with its white glyph, filling a `big` square."""
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    pen = ImageDraw.Draw(image)
    colour = COLOURS[status]
    unit = big / 16.0  # one pixel of a 16-px icon: the thinnest line that stays visible
    margin = unit * 0.5
    rim = (*(int(c * 0.6) for c in colour), 255)
    pen.ellipse((margin, margin, big - margin, big - margin), fill=rim)
    pen.ellipse((margin + unit, margin + unit, big - margin - unit, big - margin - unit),
                fill=(*colour, 255))
    _GLYPHS[status](pen, big, colour)
    return image


def _xy(big: int, *points: Point) -> list[tuple[float, float]]:
    return [(x * big, y * big) for x, y in points]


def _stroke(big: int) -> int:
    return max(2, round(big * 0.11))


def _check(pen: ImageDraw.ImageDraw, big: int, colour: tuple[int, int, int]) -> None:
    pen.line(_xy(big, (0.27, 0.52), (0.44, 0.69), (0.74, 0.35)), fill=WHITE,
             width=_stroke(big), joint="curve")


def _arrow(pen: ImageDraw.ImageDraw, big: int, down: bool, top: float = 0.22,
           bottom: float = 0.78) -> None:
    tip, tail = (bottom, top) if down else (top, bottom)
    head = 0.2 if down else -0.2
    pen.line(_xy(big, (0.5, tail), (0.5, tip - head * 0.6)), fill=WHITE, width=_stroke(big))
    pen.polygon(_xy(big, (0.27, tip - head), (0.73, tip - head), (0.5, tip)), fill=WHITE)


def _receiving(pen: ImageDraw.ImageDraw, big: int, colour: tuple[int, int, int]) -> None:
    _arrow(pen, big, down=True)


def _sending(pen: ImageDraw.ImageDraw, big: int, colour: tuple[int, int, int]) -> None:
    _arrow(pen, big, down=False)


def _waiting(pen: ImageDraw.ImageDraw, big: int, colour: tuple[int, int, int]) -> None:
    # An arrow into a tray: something arrived and waits to be taken in.
    _arrow(pen, big, down=True, top=0.2, bottom=0.6)
    pen.line(_xy(big, (0.26, 0.58), (0.26, 0.74), (0.74, 0.74), (0.74, 0.58)), fill=WHITE,
             width=max(2, round(big * 0.08)), joint="curve")


def _restart(pen: ImageDraw.ImageDraw, big: int, colour: tuple[int, int, int]) -> None:
    # A circular arrow turning clockwise, its head at the top.
    radius, start, end = 0.24, -20.0, 245.0
    box = _xy(big, (0.5 - radius, 0.5 - radius), (0.5 + radius, 0.5 + radius))
    pen.arc((box[0], box[1]), start=start, end=end, fill=WHITE, width=_stroke(big))
    theta = math.radians(end)
    centre_line = radius - 0.055  # the middle of the stroke
    x, y = 0.5 + centre_line * math.cos(theta), 0.5 + centre_line * math.sin(theta)
    tangent = (-math.sin(theta), math.cos(theta))
    normal = (math.cos(theta), math.sin(theta))
    length, half = 0.2, 0.15
    pen.polygon(_xy(big, (x + tangent[0] * length, y + tangent[1] * length),
                    (x + normal[0] * half, y + normal[1] * half),
                    (x - normal[0] * half, y - normal[1] * half)), fill=WHITE)


def _error(pen: ImageDraw.ImageDraw, big: int, colour: tuple[int, int, int]) -> None:
    pen.line(_xy(big, (0.5, 0.22), (0.5, 0.58)), fill=WHITE, width=round(big * 0.13))
    pen.ellipse(_xy(big, (0.43, 0.66), (0.57, 0.8)), fill=WHITE)


def _offline(pen: ImageDraw.ImageDraw, big: int, colour: tuple[int, int, int]) -> None:
    # A ring crossed out: no connection.
    pen.ellipse(_xy(big, (0.27, 0.27), (0.73, 0.73)), outline=WHITE,
                width=max(2, round(big * 0.08)))
    pen.line(_xy(big, (0.25, 0.75), (0.75, 0.25)), fill=WHITE, width=_stroke(big))


def _paused(pen: ImageDraw.ImageDraw, big: int, colour: tuple[int, int, int]) -> None:
    for x in (0.38, 0.62):
        pen.line(_xy(big, (x, 0.27), (x, 0.73)), fill=WHITE, width=round(big * 0.12))


def _to_configure(pen: ImageDraw.ImageDraw, big: int, colour: tuple[int, int, int]) -> None:
    # A gear: eight teeth around a hole.
    points = []
    teeth = 8
    for index in range(teeth * 4):
        angle = 2 * math.pi * index / (teeth * 4)
        radius = 0.31 if index % 4 in (0, 1) else 0.22
        points.append((0.5 + radius * math.cos(angle), 0.5 + radius * math.sin(angle)))
    pen.polygon(_xy(big, *points), fill=WHITE)
    pen.ellipse(_xy(big, (0.41, 0.41), (0.59, 0.59)), fill=(*colour, 255))


_GLYPHS = {
    Status.UP_TO_DATE: _check,
    Status.RECEIVING: _receiving,
    Status.SENDING: _sending,
    Status.WAITING: _waiting,
    Status.RESTART_REQUIRED: _restart,
    Status.ERROR: _error,
    Status.OFFLINE: _offline,
    Status.PAUSED: _paused,
    Status.TO_CONFIGURE: _to_configure,
}


@functools.lru_cache(maxsize=8)
def _font(pixels: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for name in ("DejaVuSans-Bold.ttf", "arialbd.ttf", "Arial Bold.ttf"):
        try:
            return ImageFont.truetype(name, pixels)
        except OSError:
            continue
    return ImageFont.load_default(pixels)


def _draw_badge(image: Image.Image, text: str, big: int) -> None:
    """A white-rimmed dark red pill in the lower right corner, holding the count."""
    pen = ImageDraw.Draw(image)
    height = big * 0.5
    font = _font(round(height * 0.82))
    left, top, right, bottom = pen.textbbox((0, 0), text, font=font)
    width = max(height, (right - left) + height * 0.45)
    x1, y1 = big, big
    x0, y0 = x1 - width, y1 - height
    pen.rounded_rectangle((x0, y0, x1, y1), radius=height / 2, fill=WHITE)
    ring = big / 16.0
    pen.rounded_rectangle((x0 + ring, y0 + ring, x1 - ring, y1 - ring),
                          radius=height / 2 - ring, fill=(*BADGE_COLOUR, 255))
    centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
    pen.text((centre_x - (left + right) / 2, centre_y - (top + bottom) / 2), text,
             font=font, fill=WHITE)


def on_background(image: Image.Image, colour: tuple[int, int, int]) -> Image.Image:
    """Return the icon flattened on a colour, for backends that drop transparency (X11)."""
    flat = Image.new("RGBA", image.size, (*colour, 255))
    flat.alpha_composite(image)
    return flat.convert("RGB")
