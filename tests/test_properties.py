"""Properties of exchange file names, member paths and the strict reader, with hypothesis."""

from __future__ import annotations

import ntpath
import posixpath
import unicodedata
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from daemon.errors import Code, Rejected
from daemon.exchange import verify_exchange
from daemon.keys import SigningKey
from daemon.naming import (
    DOSSIER_RE,
    MAX_PATH_LENGTH,
    ExchangeName,
    Kind,
    check_member_path,
    fold,
    looks_like_exchange,
    make_name,
    parse_name,
)
from tests import hostile

# Moderate example counts: the whole file runs in a few seconds.
QUICK = settings(max_examples=200, deadline=None)

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# Built from alphabets rather than st.from_regex, which is several times slower.
dossiers = st.text(st.sampled_from(_ALNUM), min_size=1, max_size=20)
moments = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59),
                       timezones=st.one_of(st.none(), st.just(timezone(timedelta(hours=1)))))
kinds = st.sampled_from(Kind)


T = TypeVar("T")


def attempt(function: Callable[[str], T], text: str) -> T | Rejected:
    """Return what `function` returns, or the rejection it raises (anything else escapes)."""
    try:
        return function(text)
    except Rejected as rejection:
        return rejection


# ---------------------------------------------------------------- file names


@QUICK
@given(dossiers, moments, kinds)
def test_make_name_and_parse_name_round_trip(dossier: str, moment: datetime,
                                             kind: Kind) -> None:
    name = make_name(dossier, moment, kind)
    parsed = parse_name(name)
    assert parsed == ExchangeName(dossier, moment.replace(microsecond=0, tzinfo=None), kind)
    assert parsed.canonical == name
    assert name.endswith("." + kind.extension)
    assert looks_like_exchange(name)


def _near_names() -> st.SearchStrategy[str]:
    """Names close to valid ones, where a parser is most likely to slip."""
    parts = st.tuples(
        st.text(st.sampled_from("8502182AzK\u212a\u017f\u0130-_ é"), max_size=22),
        st.sampled_from(["-", "_", "--", ""]),
        st.text(st.sampled_from("0123456789\u0660\uff11 "), min_size=12, max_size=15),
        st.sampled_from([".wwz", ".WWZ", ".wVz", ".zip", ".wwz.zip", "wwz", ".wwz ", ".ẘwz"]),
    )
    return parts.map("".join)


@QUICK
@given(st.one_of(st.text(max_size=60), _near_names()))
@example("\u212a1-20201027171147.wwz")  # Kelvin sign: case-folds to "k"
@example("\u017f1-20201027171147.wwz")  # long s: case-folds to "s"
@example("8502182-20201027171147.wwz\n")
@example("8502182-20200230171147.wwz")  # 30 February
@example("8502182-20201027246060.wwz")
def test_any_text_parses_or_is_a_bad_name(text: str) -> None:
    parsed = attempt(parse_name, text)
    if isinstance(parsed, Rejected):
        assert parsed.code is Code.BAD_NAME
        assert not looks_like_exchange(text)
        return
    # Whatever is accepted is plain ASCII, and exactly what passeur would write itself
    # up to the extension's case.
    assert text.isascii()
    assert DOSSIER_RE.fullmatch(parsed.dossier)
    assert parsed.canonical == text[:-3] + text[-3:].lower()
    assert make_name(parsed.dossier, parsed.saved_at, parsed.kind) == parsed.canonical


@QUICK
@given(dossiers, moments, kinds, st.data())
def test_extensions_are_matched_whatever_their_case(dossier: str, moment: datetime,
                                                    kind: Kind, data: st.DataObject) -> None:
    canonical = make_name(dossier, moment, kind)
    stem, extension = canonical[:-3], canonical[-3:]
    upper = data.draw(st.lists(st.booleans(), min_size=3, max_size=3))
    shouted = "".join(c.upper() if u else c for c, u in zip(extension, upper, strict=True))
    parsed = parse_name(stem + shouted)
    assert parsed.kind is kind
    assert parsed.canonical == canonical


# ---------------------------------------------------------------- member paths

_TOKENS = ["a", "B", "é", "e\u0301", "x.xml", "/", "//", "\\", ":", "\x00", ".", "..", " ",
           "C:", "c:", "\n", "\x7f", "?", "*", "|", "\u202e", "\u200b", "\u2028", "CON",
           "nul.txt", "ı", "\u212a", "\uff0e\uff0e", "-"]

token_paths = st.lists(st.sampled_from(_TOKENS), max_size=12).map("".join)


def assert_safe(path: str) -> None:
    """Everything an accepted member path promises."""
    assert path
    assert len(path) <= MAX_PATH_LENGTH
    assert not path.startswith(("/", "\\"))
    assert not any(ch in path for ch in "\\\x00:")
    assert not ntpath.splitdrive(path)[0]
    assert not ntpath.isabs(path)
    assert not posixpath.isabs(path)
    parts = path.split("/")
    assert ".." not in parts
    assert "." not in parts
    assert "" not in parts
    assert all(unicodedata.category(ch)[0] != "C" or unicodedata.category(ch) in ("Co", "Cn")
               for ch in path)
    # Already normal, and stays inside whatever folder it is joined to, on both systems.
    assert posixpath.normpath(path) == path
    assert posixpath.normpath(posixpath.join("/base", path)).startswith("/base/")
    assert ntpath.normpath(ntpath.join("C:\\base", path)).startswith("C:\\base\\")


@QUICK
@given(st.one_of(token_paths, st.text(max_size=40)))
@example("ecritures.xml")
@example("situations/situation-09.xml")
def test_an_accepted_member_path_is_relative_and_stays_inside(path: str) -> None:
    checked = attempt(check_member_path, path)
    if isinstance(checked, Rejected):
        assert checked.code is Code.PATH_UNSAFE
        return
    assert checked == path
    assert_safe(path)


_safe_component = st.builds(
    lambda body, extension: "x" + body + extension,
    st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789éü_-"), max_size=10),
    st.sampled_from(["", ".xml", ".pdf", ".txt", ".a", ".tar.gz"]),
)
safe_paths = st.lists(_safe_component, min_size=1, max_size=5).map("/".join)


@QUICK
@given(safe_paths)
def test_ordinary_paths_are_accepted(path: str) -> None:
    assert check_member_path(path) == path


def _inject(path: str, data: st.DataObject) -> str:
    """Make a safe path dangerous in one of the ways an archive can."""
    parts = path.split("/")
    at = data.draw(st.integers(0, len(path)))
    part_at = data.draw(st.integers(0, len(parts)))
    how = data.draw(st.sampled_from([
        "absolute", "backslash-root", "drive", "drive-slash", "unc", "unc-backslash",
        "dotdot", "dot", "empty", "backslash", "nul", "colon", "control", "trailing-dot",
        "trailing-space", "too-long", "bidi", "device",
    ]))
    control = data.draw(st.sampled_from([chr(c) for c in (*range(32), *range(127, 160))]))
    device = data.draw(st.sampled_from(["CON", "prn", "Aux", "nul.xml", "COM1.txt", "lpt9"]))
    injected = {
        "absolute": "/" + path,
        "backslash-root": "\\" + path,
        "drive": "C:" + path,
        "drive-slash": "d:/" + path,
        "unc": "//serveur/partage/" + path,
        "unc-backslash": "\\\\serveur\\partage\\" + path,
        "dotdot": "/".join([*parts[:part_at], "..", *parts[part_at:]]),
        "dot": "/".join([*parts[:part_at], ".", *parts[part_at:]]),
        "empty": "/".join([*parts[:part_at], "", *parts[part_at:]]),
        "backslash": path[:at] + "\\" + path[at:],
        "nul": path[:at] + "\x00" + path[at:],
        "colon": path[:at] + ":" + path[at:],
        "control": path[:at] + control + path[at:],
        "trailing-dot": "/".join(p + "." if i == part_at else p for i, p in enumerate(parts)),
        "trailing-space": "/".join(p + " " if i == part_at else p for i, p in enumerate(parts)),
        "too-long": path + "/" + "/".join(["x" * 100] * 3),
        "bidi": path[:at] + "\u202e" + path[at:],
        "device": "/".join([*parts[:part_at], device, *parts[part_at:]]),
    }[how]
    if how in ("trailing-dot", "trailing-space") and part_at == len(parts):
        injected = injected + "/x."
    return injected


@QUICK
@given(safe_paths, st.data())
def test_dangerous_paths_are_always_refused(path: str, data: st.DataObject) -> None:
    dangerous = _inject(path, data)
    with pytest.raises(Rejected) as refused:
        check_member_path(dangerous)
    assert refused.value.code is Code.PATH_UNSAFE


# ---------------------------------------------------------------- folding


def _tricky_characters() -> list[str]:
    """Characters whose case or normal forms are not one-to-one: where folds go wrong."""
    found = []
    for code in range(0x20, 0x3000):
        ch = chr(code)
        if unicodedata.category(ch) in ("Cs", "Cn"):
            continue
        nfkc = unicodedata.normalize("NFKC", ch)
        if ch.casefold() != ch.lower() or ch.upper().lower() != ch.lower() or nfkc != ch:
            found.append(ch)
    return found


_VARIANTS: dict[str, Callable[[str], str]] = {
    "upper": str.upper,
    "lower": str.lower,
    "casefold": str.casefold,
    "swapcase": str.swapcase,
    "title": str.title,
    "nfc": lambda s: unicodedata.normalize("NFC", s),
    "nfd": lambda s: unicodedata.normalize("NFD", s),
    "nfkc": lambda s: unicodedata.normalize("NFKC", s),
    "nfkd": lambda s: unicodedata.normalize("NFKD", s),
}
tricky_text = st.text(st.one_of(st.sampled_from(_tricky_characters()),
                                st.characters(codec="utf-8")), max_size=8)


@settings(max_examples=400, deadline=None)
@given(tricky_text, st.sampled_from(sorted(_VARIANTS)))
@example("ı", "upper")  # dotless i: upper-cases to I, as NTFS does
@example("ß", "upper")
@example("r\u00e9sultat.xml", "nfd")
@example("\u212a", "lower")
def test_case_and_normalisation_variants_fold_together(text: str, variant: str) -> None:
    assert fold(_VARIANTS[variant](text)) == fold(text)


@QUICK
@given(tricky_text)
def test_fold_is_stable(text: str) -> None:
    assert fold(fold(text)) == fold(text)


@QUICK
@given(st.text(st.characters(codec="ascii"), max_size=12),
       st.text(st.characters(codec="ascii"), max_size=12))
def test_fold_tells_apart_ascii_names_that_differ_beyond_case(a: str, b: str) -> None:
    assert (fold(a) == fold(b)) == (a.lower() == b.lower())


# ---------------------------------------------------------------- the reader never crashes

_KEY = SigningKey.generate()
_KEYRING = {_KEY.public.key_id: _KEY.public}
_VALID = hostile.Exchange(_KEY).build()


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, len(_VALID.data) - 1), st.integers(0, 255)),
                min_size=1, max_size=4),
       st.integers(0, len(_VALID.data)))
def test_a_damaged_exchange_is_refused_never_crashes(tmp_path: Path,
                                                     changes: list[tuple[int, int]],
                                                     length: int) -> None:
    data = bytearray(_VALID.data)
    for position, value in changes:
        data[position] = value
    path = tmp_path / _VALID.name
    path.write_bytes(bytes(data[:length]))
    try:
        manifest = verify_exchange(path, _KEYRING, path.name)
    except Rejected:
        return
    # Accepted only when the damage missed everything that matters (a CRC, a date...):
    # then what was read is exactly what was signed.
    assert manifest.to_dict() == hostile.manifest_dict(_KEY)
