"""Where archive bytes go in the archive benchmarks: what the S3 multipart writer does, minus the network."""

from __future__ import annotations

import io
from collections.abc import Iterator

PART_SIZE = 8 << 20
READ_CHUNK = 1 << 20  # what the asset store reads from S3 at a time


class PartSink:
    """Copies everything into a part buffer and hands each full part over, like ``MultipartWriter``.

    Every contender writes here, so each pays the one copy that handing bytes to an uploader costs. The
    parts are kept (as an uploader would have sent them) so that the output can be verified once the
    clock has stopped."""

    def __init__(self, part_size: int = PART_SIZE) -> None:
        self._part_size = part_size
        self._buffer = bytearray()
        self._parts: list[bytearray] = []
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        self._buffer += data
        size = len(data)
        self.size += size
        if len(self._buffer) >= self._part_size:
            self._parts.append(self._buffer)
            self._buffer = bytearray()
        return size

    def flush(self) -> None:
        """For file-like users (zipfile, tarfile)."""

    def close(self) -> None:
        """For file-like users (zipfile, tarfile)."""

    def tell(self) -> int:
        return self.size

    @property
    def parts(self) -> int:
        return len(self._parts)

    def getvalue(self) -> bytes:
        """Everything written, in order (for verification, after timing)."""
        return b"".join([*self._parts, self._buffer])


def read_chunks(data: bytes, chunk: int = READ_CHUNK) -> Iterator[bytes]:
    """The object as a reader yields it: ``chunk``-sized copies, as a socket read would produce."""
    source = io.BytesIO(data)
    while block := source.read(chunk):
        yield block
