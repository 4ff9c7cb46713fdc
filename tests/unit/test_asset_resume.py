"""export.prefetch.resuming over in-memory assets: only a read that broke off is resumed, from the bytes
handed out, a bounded number of times; other failures are the section's at once; closing closes the
response being read."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from data_export.errors import is_stream_reset
from data_export.export.prefetch import MAX_RESUMES, resuming
from data_export.storage.objects import Asset

DATA = bytes(range(256)) * 40  # 10,240 bytes


class Store:
    """One object; its reads break off (``error``) after ``cut`` bytes, the first ``breaks`` times."""

    def __init__(self, cut: int, breaks: int, error: Exception) -> None:
        self.cut, self.breaks, self.error = cut, breaks, error
        self.offsets: list[int] = []
        self.closed: list[int] = []

    def _chunks(self, offset: int) -> Iterator[bytes]:
        data = DATA[offset:]
        if self.breaks > 0:
            self.breaks -= 1
            yield data[: self.cut]
            raise self.error
        for start in range(0, len(data), 1000):
            yield data[start : start + 1000]

    def open(self, offset: int = 0) -> Asset:
        self.offsets.append(offset)
        return Asset(
            size=len(DATA) - offset,
            chunks=self._chunks(offset),
            close=lambda: self.closed.append(offset),
            reopen=self.open,
        )


@pytest.mark.parametrize("breaks", range(1, MAX_RESUMES + 1))
def test_a_reset_read_resumes_where_it_stopped(breaks: int) -> None:
    store = Store(cut=777, breaks=breaks, error=ConnectionResetError(104, "Connection reset by peer"))
    assert b"".join(resuming(store.open()).chunks) == DATA
    assert store.offsets == [777 * n for n in range(breaks + 1)]
    assert store.closed == store.offsets[:-1]  # each broken response closed before the next is opened


def test_a_read_that_keeps_breaking_fails() -> None:
    store = Store(cut=10, breaks=MAX_RESUMES + 1, error=TimeoutError("read timed out"))
    with pytest.raises(TimeoutError):
        b"".join(resuming(store.open()).chunks)
    assert len(store.offsets) == MAX_RESUMES + 1


def test_other_failures_are_not_resumed() -> None:
    store = Store(cut=10, breaks=1, error=ValueError("corrupt"))
    assert not is_stream_reset(store.error)
    with pytest.raises(ValueError, match="corrupt"):
        b"".join(resuming(store.open()).chunks)
    assert store.offsets == [0]


def test_an_asset_that_cannot_reopen_is_left_as_it_is() -> None:
    asset = Asset(size=3, chunks=iter([b"abc"]))
    assert resuming(asset) is asset


def test_closing_closes_the_response_being_read() -> None:
    store = Store(cut=500, breaks=1, error=ConnectionResetError())
    asset = resuming(store.open())
    chunks = iter(asset.chunks)
    assert next(chunks) == DATA[:500]
    assert next(chunks) == DATA[500:1500]  # the first chunk of the reopened read
    asset.close()
    assert store.closed == [0, 500]
