"""The icon pictures: one colour per status, a badge, crisp sizes, light and dark panels."""

from __future__ import annotations

import itertools

import pytest
from PIL import Image

from tray.icon import BADGE_COLOUR, COLOURS, SIZES, badge_text, draw_icon, on_background
from tray.state import Status

LIGHT, DARK = (240, 240, 240), (32, 32, 32)


def pixel(image: Image.Image, x: int, y: int) -> tuple[int, ...]:
    value = image.getpixel((x, y))
    assert isinstance(value, tuple)
    return value


def pixels(image: Image.Image) -> list[tuple[int, ...]]:
    return [pixel(image, x, y) for y in range(image.height) for x in range(image.width)]


def luminance(rgb: tuple[int, ...]) -> float:
    def channel(c: int) -> float:
        c_ = c / 255
        return c_ / 12.92 if c_ <= 0.03928 else ((c_ + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def near(a: tuple[int, ...], b: tuple[int, ...], tolerance: int = 6) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a[:3], b[:3], strict=True))


@pytest.mark.parametrize(("status", "size"), list(itertools.product(Status, SIZES)))
def test_every_status_at_every_size(status: Status, size: int) -> None:
    image = draw_icon(status, 0, size)
    assert (image.mode, image.size) == ("RGBA", (size, size))
    assert pixel(image, 0, 0)[3] == 0, "corners are transparent"
    top = pixel(image, size // 2, round(size * 0.14))
    # Lanczos rings a little next to the rim at 16 px.
    assert near(top, COLOURS[status], 24), (top, COLOURS[status])
    # The white glyph is there: some nearly white, opaque pixels in the middle.
    middle = image.crop((size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    whites = sum(1 for p in pixels(middle) if p[3] > 200 and min(p[:3]) > 200)
    assert whites >= max(2, size * size // 60)


def test_statuses_are_told_apart_by_colour_or_glyph() -> None:
    pictures = {status: draw_icon(status, 0, 32).tobytes() for status in Status}
    assert len(set(pictures.values())) == len(Status)


@pytest.mark.parametrize("status", list(Status))
def test_readable_on_light_and_dark_panels(status: Status) -> None:
    image = draw_icon(status, 0, 32)
    rim = pixel(image, 16, 1)
    disc = COLOURS[status]
    # The darker rim separates the disc from a light panel; the disc from a dark one.
    assert max(contrast(rim, LIGHT), contrast(disc, LIGHT)) >= 3.0
    assert max(contrast(disc, DARK), contrast(rim, DARK)) >= 3.0
    assert contrast((255, 255, 255), disc) >= 2.5, "the white glyph reads on the disc"


@pytest.mark.parametrize("size", SIZES)
def test_badge_shows_the_count(size: int) -> None:
    plain = draw_icon(Status.WAITING, 0, size)
    badged = draw_icon(Status.WAITING, 3, size)
    corner = badged.crop((size // 2, size // 2, size, size))
    reds = sum(1 for p in pixels(corner) if near(p, BADGE_COLOUR, 40))
    assert reds >= size * size // 40
    assert not any(near(p, BADGE_COLOUR, 40)
                   for p in pixels(plain.crop((size // 2, size // 2, size, size))))


def test_badge_text() -> None:
    assert [badge_text(n) for n in (0, 1, 9, 10, 99, 100)] == ["", "1", "9", "10", "99",
                                                               "99+"]


def test_flattened_for_x11() -> None:
    flat = on_background(draw_icon(Status.UP_TO_DATE, 0, 24), (128, 128, 128))
    assert flat.mode == "RGB"
    assert flat.getpixel((0, 0)) == (128, 128, 128)
    assert isinstance(flat, Image.Image)
