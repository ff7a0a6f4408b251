"""An exchange file is accepted only when every one of its bytes is where the format puts it."""

from __future__ import annotations

import io
import struct
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.errors import Code, Rejected
from daemon.exchange import verify_exchange
from daemon.keys import SigningKey
from daemon.manifest import MANIFEST_NAME, SIGNATURE_NAME
from tests import hostile
from tests.helpers import Unseekable

QUICK = settings(max_examples=80, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])
_KEY = SigningKey.generate()
_TRUSTED = {_KEY.public.key_id: _KEY.public}
_GOOD = hostile.Exchange(_KEY).build()


def _verdict(tmp_path: Path, data: bytes, name: str = hostile.NAME) -> str:
    """Return "accepted", or the rejection's code; anything else escapes as a failure."""
    path = tmp_path / name
    path.write_bytes(data)
    try:
        verify_exchange(path, _TRUSTED, name)
    except Rejected as rejection:
        return str(rejection.code)
    return "accepted"


def _boundaries(data: bytes) -> list[int]:
    """The offsets where the parts of a canonical archive meet, its two ends included."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        starts = [info.header_offset for info in archive.infolist()]
        directory = archive.start_dir
    end = data.rindex(b"PK\x05\x06")
    return [*starts, directory, end, len(data)]


def test_the_untouched_archive_is_accepted(tmp_path: Path) -> None:
    assert _verdict(tmp_path, _GOOD.data) == "accepted"


@QUICK
@given(where=st.integers(min_value=0), junk=st.binary(min_size=1, max_size=300))
def test_bytes_spliced_in_at_any_boundary_are_refused(tmp_path: Path, where: int,
                                                      junk: bytes) -> None:
    boundaries = _boundaries(_GOOD.data)
    at = boundaries[where % len(boundaries)]
    spliced = _GOOD.data[:at] + junk + _GOOD.data[at:]
    assert _verdict(tmp_path, spliced) != "accepted"


@QUICK
@given(where=st.integers(min_value=0), junk=st.binary(min_size=1, max_size=64))
def test_bytes_spliced_in_anywhere_are_refused(tmp_path: Path, where: int,
                                               junk: bytes) -> None:
    at = where % (len(_GOOD.data) + 1)
    spliced = _GOOD.data[:at] + junk + _GOOD.data[at:]
    assert _verdict(tmp_path, spliced) != "accepted"


@QUICK
@given(prefix=st.binary(min_size=1, max_size=200), shift=st.booleans(),
       gap=st.binary(max_size=50),
       # A trailer holding an end record's signature is another archive's end: elsewhere.
       trailer=st.binary(max_size=50).filter(lambda b: b"PK" not in b))
def test_any_layout_of_bytes_around_the_archive_earns_a_layout_code(
        tmp_path: Path, prefix: bytes, shift: bool, gap: bytes, trailer: bytes) -> None:
    layout = hostile.Layout(prefix=prefix, shift=shift, gaps={1: gap}, trailer=trailer)
    data = hostile.Exchange(_KEY).build(layout=layout).data
    # The first fault met, from the end of the file backwards, is the one said.
    expected = Code.DATA_AFTER if trailer else Code.DATA_BEFORE
    assert _verdict(tmp_path, data) == expected


@pytest.mark.parametrize("disks", [(0, 1), (1, 0), (2, 2)])
def test_each_disk_field_of_a_split_archive_is_refused(tmp_path: Path,
                                                       disks: tuple[int, int]) -> None:
    data = hostile.Exchange(_KEY).build(layout=hostile.Layout(disks=disks)).data
    assert _verdict(tmp_path, data) == Code.MULTI_DISK


def test_a_comment_that_ends_the_file_exactly_is_accepted(tmp_path: Path) -> None:
    data = hostile.Exchange(_KEY).build(layout=hostile.Layout(comment=b"cabinet")).data
    assert _verdict(tmp_path, data) == "accepted"


def test_data_descriptors_that_agree_are_accepted(tmp_path: Path) -> None:
    # Sizes after the data, as a streaming writer (Python's zipfile on a pipe) puts them.
    exchange = hostile.Exchange(_KEY)
    out = Unseekable()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, content in exchange.files.items():
            archive.writestr(path, content)
        archive.writestr(MANIFEST_NAME, exchange.manifest_bytes())
        archive.writestr(SIGNATURE_NAME, exchange.signature_bytes(), zipfile.ZIP_STORED)
    data = bytes(out.data)
    assert data[6] & 0x8  # the general purpose flags announce a data descriptor
    assert _verdict(tmp_path, data) == "accepted"


def test_a_descriptor_without_its_signature_is_read_too(tmp_path: Path) -> None:
    exchange = hostile.Exchange(_KEY)
    entries = exchange.entries()
    first = entries[0]
    descriptor = struct.pack("<III", first.crc, first.declared_compress_size, first.size)
    entries[0] = replace(first, flags=first.flags | 0x8, local_crc=0,
                         local_compress_size=0, local_size=0, descriptor=descriptor)
    assert _verdict(tmp_path, exchange.build(entries).data) == "accepted"


def test_the_writer_s_zip64_layout_is_canonical(tmp_path: Path) -> None:
    from daemon.exchange import write_signature
    from daemon.fsutil import atomic_writer
    from daemon.manifest import Manifest
    from daemon.zipwrite import DEFLATED, ZipWriter

    exchange = hostile.Exchange(_KEY)
    manifest = Manifest.from_dict(hostile.manifest_dict(_KEY))
    path = tmp_path / hostile.NAME
    with atomic_writer(path) as out, ZipWriter(out, force_zip64=True) as writer:
        for name, content in exchange.files.items():
            writer.add_bytes(name, content, DEFLATED, 0)
        write_signature(writer, manifest, _KEY)
        writer.close()
    assert _verdict(tmp_path, path.read_bytes()) == "accepted"
