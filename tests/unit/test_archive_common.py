"""What the zip and tar.gz writers share: entry-name checks, write batching, deflate stored-block framing."""

from __future__ import annotations

import zlib

import pytest
from data_export.archive import BatchingWriter, StoredBlockFramer, check_entry_name
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.archive_tools import UNSAFE_NAMES


def is_safe_reference(name: str) -> bool:
    """The rule, spelled out: relative, no control characters, no backslash, no empty/./.. component."""
    if not name or name.startswith("/") or "\\" in name:
        return False
    if any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F for char in name):
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


name_characters = st.sampled_from(["a", "b", ".", "/", "\\", " ", "é", "\x00", "\x1f", "\x7f", "\x85", "😀"])


@given(st.text(name_characters, max_size=12))
def test_the_fast_name_check_applies_exactly_the_rule(name: str) -> None:
    if is_safe_reference(name):
        assert check_entry_name(name) == name.encode("utf-8")
    else:
        with pytest.raises(ValueError):
            check_entry_name(name)


@pytest.mark.parametrize("name", [name for name in UNSAFE_NAMES if "\udcff" not in name])
def test_unsafe_names_say_what_is_wrong(name: str) -> None:
    with pytest.raises(ValueError, match="archive entry name"):
        check_entry_name(name)


def test_lone_surrogates_are_rejected() -> None:
    with pytest.raises(ValueError, match="not valid Unicode"):
        check_entry_name("lone\udcffsurrogate")


class RecordingSink:
    def __init__(self) -> None:
        self.writes: list[bytes | bytearray | memoryview] = []

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.writes.append(data)
        return len(data)

    def joined(self) -> bytes:
        return b"".join(self.writes)


def test_small_writes_are_merged_and_big_ones_pass_through_uncopied() -> None:
    sink = RecordingSink()
    out = BatchingWriter(sink, batch_size=1000, direct_size=100)
    out.write(b"a" * 10)
    out.write(b"b" * 20)
    assert sink.writes == []
    big = b"c" * 100
    out.write(big)
    assert sink.writes[0] == b"a" * 10 + b"b" * 20
    assert sink.writes[1] is big
    for _ in range(20):
        out.write(b"d" * 99)
    assert len(sink.writes) == 3  # 1,000 bytes of small writes make one batch
    out.flush()
    assert out.offset == len(sink.joined()) == 30 + 100 + 20 * 99


def test_a_reused_caller_buffer_does_not_change_what_was_written() -> None:
    sink = RecordingSink()
    out = BatchingWriter(sink)
    buffer = bytearray(b"first")
    out.write(buffer)
    out.write(memoryview(buffer)[:2])
    buffer[:] = b"XXXXX"
    out.flush()
    assert sink.joined() == b"firstfi"


@given(
    st.lists(st.integers(min_value=0, max_value=200_000), max_size=6),
    st.booleans(),
)
def test_stored_blocks_decode_to_the_input_however_it_is_chunked(sizes: list[int], final: bool) -> None:
    chunks = [bytes([index % 251]) * size for index, size in enumerate(sizes)]
    sink = RecordingSink()
    out = BatchingWriter(sink)
    framer = StoredBlockFramer(out)
    for chunk in chunks:
        framer.write(chunk)
    framer.finish(final=final)
    out.flush()
    stream = sink.joined()
    if not final:  # a stream that more blocks may follow: end it to decode it
        stream += StoredBlockFramer.FINAL_EMPTY_BLOCK
    decompressor = zlib.decompressobj(-15)
    assert decompressor.decompress(stream) == b"".join(chunks)
    assert decompressor.eof and not decompressor.unused_data
    blocks = -(-sum(sizes) // StoredBlockFramer.MAX_BLOCK)
    assert len(stream) == sum(sizes) + 5 * blocks + 5  # 5-byte header per block, then the final block
