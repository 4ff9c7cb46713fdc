"""Reads and verifies an uploaded export archive (docs/archive-format.md) before an import writes anything.

``scan_archive`` reads the archive once, streaming, in constant memory but for the YAML files (which it
keeps) and one small tuple per file: every entry's name and type, the limits (entries, sizes, compression
ratios: zip and gzip bombs), and each file's size and SHA-256 against the manifest. It refuses the archive
with every problem found (``ArchiveRefused``). ``iter_files`` reads the files an import wants a second time,
each checked against the scan as it is read. Nothing is ever extracted to disk.

A problem's ``path`` is the entry's path below the archive's top folder (as the manifest names it) when the
entry is in that folder, else the entry's whole name in the archive.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import hashlib
import io
import re
import stat
import struct
import tarfile
import unicodedata
import zlib
from array import array
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, BinaryIO, NamedTuple, NoReturn, Self

import yaml

from data_export.models import FORMAT_VERSION, ArchiveFormat, ArchiveProblem

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

try:  # libyaml parses a big manifest several times faster
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

_CHUNK = 1 << 20
_MAX_PROBLEMS = 100
_MANIFEST = "manifest.yaml"
_READ_MAJOR = "1"  # the format_version major this reader knows


@dataclass(frozen=True)
class ImportLimits:
    """What an uploaded archive may hold; past any of these it is refused before anything is written."""

    max_entries: int = 2_000_000  # files in the archive
    max_total_bytes: int = 1 << 40  # uncompressed bytes of all files (1 TiB)
    max_entry_bytes: int = 64 << 30  # one file
    max_ratio: int = 200  # uncompressed/compressed, per zip entry, and for the whole gzip stream
    ratio_floor_bytes: int = 16 << 20  # ratio checks apply only past this many uncompressed bytes
    max_yaml_bytes: int = 4 << 20  # a record file (kept in memory)
    # The manifest is parsed whole (about 30 times its size in memory at its peak): 32 MiB lists about
    # 300,000 files, and the validating Lambda's 3,008 MB holds it beside the records' YAML.
    max_manifest_bytes: int = 32 << 20
    max_path_bytes: int = 1024
    max_yaml_total_bytes: int = 512 << 20  # every YAML file together: all of them are kept in memory


_DEFAULT_LIMITS = ImportLimits()


class ArchiveRefused(Exception):
    """The archive is refused, for the ``problems`` listed (at most 100)."""

    def __init__(self, problems: Iterable[ArchiveProblem]) -> None:
        self.problems: list[ArchiveProblem] = list(problems)[:_MAX_PROBLEMS]
        super().__init__(_summary(self.problems))


@dataclass(frozen=True)
class ArchiveEntry:
    """A file of the archive (the manifest aside)."""

    index: int  # position among the archive's files (manifest excluded), archive order, from 0
    path: str  # below the top folder, '/'-separated
    size: int
    sha256: str  # hex


@dataclass
class ScannedArchive:
    """A verified archive: what its manifest says, its files, and the bytes of its YAML files."""

    archive_format: ArchiveFormat
    top: str
    manifest: dict[str, Any]
    entries: list[ArchiveEntry]  # every file but manifest.yaml, archive order
    yaml_files: dict[str, bytes]  # path -> bytes of every '*.yaml' entry (other than the manifest)


def detect_format(head: bytes) -> ArchiveFormat | None:
    """The archive format its first bytes announce: a zip (or an empty zip), a gzip file, or neither."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return ArchiveFormat.ZIP
    if head.startswith(b"\x1f\x8b"):
        return ArchiveFormat.TAR_GZ
    return None


def scan_archive(
    open_stream: Callable[[], IO[bytes]],
    archive_format: ArchiveFormat,
    limits: ImportLimits = _DEFAULT_LIMITS,
) -> ScannedArchive:
    """Read the whole archive once and verify it; raises ArchiveRefused with every problem found.

    zip: ``open_stream()`` must be seekable (the central directory is at the end); tar.gz: it is read
    strictly in order."""
    if archive_format is ArchiveFormat.ZIP:
        scan = _scan_zip(open_stream, limits)
    else:
        scan = _scan_tar(open_stream, limits)
    return _finish(scan, archive_format)


def iter_files(
    open_stream: Callable[[], IO[bytes]],
    scanned: ScannedArchive,
    wanted: Collection[str],
    start_index: int = 0,
    limits: ImportLimits = _DEFAULT_LIMITS,
) -> Iterator[tuple[ArchiveEntry, BinaryIO]]:
    """The files of ``scanned.entries`` whose path is in ``wanted`` and index at least ``start_index``, in
    archive order, each with a reader of its bytes (read it before advancing). A reader read to its end
    raises ArchiveRefused (code ``changed``) if the bytes are not the scanned ones.

    ``scanned.entries`` may be any subset of the scan's (with their indexes): zip finds them through the
    central directory, tar.gz streams from the start and skips the others."""
    if not isinstance(wanted, AbstractSet | Mapping):
        wanted = set(wanted)
    todo = sorted(
        (entry for entry in scanned.entries if entry.index >= start_index and entry.path in wanted),
        key=lambda entry: entry.index,
    )
    if not todo:
        return
    if scanned.archive_format is ArchiveFormat.ZIP:
        yield from _iter_zip(open_stream, scanned.top, todo, limits)
    else:
        yield from _iter_tar(open_stream, scanned.top, todo, limits)


# -- problems ---------------------------------------------------------------------------------------------


class _Bad(Exception):
    """What is wrong at one entry (``name``), or with the archive as a whole (``name`` None)."""

    def __init__(self, code: str, name: str | None, message: str) -> None:
        super().__init__(message)
        self.code, self.name, self.message = code, name, message


class _Stop(Exception):
    """Reading on is pointless or unsafe; the problems recorded say why."""


# After these, reading the entries' data is unsafe (a bomb, past a limit) or impossible.
_FATAL = frozenset({"too_many_entries", "too_large", "compression_ratio", "truncated", "not_an_archive"})


class _Problems:
    def __init__(self) -> None:
        self.found: list[tuple[str, str | None, str]] = []  # code, entry name in the archive, message
        self.stopped = False

    def add(self, code: str, name: str | None, message: str) -> None:
        self.found.append((code, name, message))
        if len(self.found) >= _MAX_PROBLEMS:
            self.halt()

    def halt(self, code: str | None = None, name: str | None = None, message: str = "") -> NoReturn:
        if code is not None:
            self.found.append((code, name, message))
        self.stopped = True
        raise _Stop

    def fatal(self) -> bool:
        return any(code in _FATAL for code, _, _ in self.found)

    def refused(self, top: str) -> ArchiveRefused:
        return ArchiveRefused(
            ArchiveProblem(code=code, path=_shown(name, top), message=message)
            for code, name, message in self.found
        )


def _summary(problems: list[ArchiveProblem]) -> str:
    if not problems:
        return "archive refused"
    first = problems[0]
    where = f" ({first.path})" if first.path else ""
    more = f"; and {len(problems) - 1} more problem(s)" if len(problems) > 1 else ""
    text = f"archive refused: {first.code}{where}: {first.message}{more}"
    return text.replace("\r", " ").replace("\n", " ")


def _printable(text: str) -> str:
    """``text`` with control characters and undecodable bytes escaped, for a report a person reads."""
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode() for c in text
    )


def _shown(name: str | None, top: str) -> str | None:
    if name is None:
        return None
    if top and name.startswith(f"{top}/") and len(name) > len(top) + 1:
        name = name[len(top) + 1 :]
    return _printable(name)


_DRIVE = re.compile(r"[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _name_problem(name: str, limits: ImportLimits) -> tuple[str, str] | None:
    """Why an entry's name is unsafe (code, message), or None."""
    if not name:
        return "traversal", "the entry has an empty name"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "traversal", "the name is not valid UTF-8"
    if size > limits.max_path_bytes:
        return "too_large", f"the name is {size:,} bytes long; at most {limits.max_path_bytes:,} are allowed"
    if name.startswith("/") or _DRIVE.match(name):
        return "absolute_path", "the path is absolute: extracted, it would be written outside any folder"
    if "\\" in name:
        return "traversal", "the path has a backslash, a folder separator on Windows"
    if _CONTROL.search(name):
        return "traversal", "the name has a control character"
    parts = name.split("/")
    if ".." in parts:
        return "traversal", "the path has a '..' component: extracted, it would climb out of its folder"
    if "." in parts or "" in parts:
        return "traversal", "the path has an empty or '.' component"
    return None


# -- one pass over the entries, either format -------------------------------------------------------------


class _File(NamedTuple):
    name: str  # whole name in the archive
    size: int
    sha256: str  # "" when its data could not be read whole (its problem is reported)


class _Scan:
    """What one pass found: the files (archive order), the YAML bytes, the manifest, and the problems."""

    def __init__(self, limits: ImportLimits) -> None:
        self.limits = limits
        self.problems = _Problems()
        self.first: str | None = None  # the first entry's name
        self.count = 0
        self.total = 0
        self.yaml_total = 0
        self.files: list[_File] = []
        self.folders: list[str] = []
        self.refused: set[str] = set()  # entries refused for their name or type
        self.yaml: dict[str, bytes] = {}
        self.manifest: tuple[int, bytes | None] | None = None  # the last '<folder>/manifest.yaml' read

    def entry(self, name: str, kind: str, what: str = "") -> bool:
        """Check an entry's name and ``kind`` (file, dir, link, special; ``what`` says which link or special
        file); True when it is a file to read."""
        self.count += 1
        if self.count > self.limits.max_entries:
            self.problems.halt(
                "too_many_entries", None, f"the archive has more than {self.limits.max_entries:,} entries"
            )
        if self.first is None:
            self.first = name
        checked = name.removesuffix("/") if kind == "dir" else name
        problem = _name_problem(checked, self.limits)
        if problem is None and kind in ("link", "special"):
            code = "link" if kind == "link" else "special_file"
            problem = code, f"{what}: an export holds only regular files and folders"
        if problem is not None:
            self.refused.add(name)
            self.problems.add(problem[0], name, problem[1])
            return False
        if kind == "dir":
            self.folders.append(checked)
            return False
        return True

    def declared(self, name: str, size: int) -> None:
        """Count a file's size as its header declares it, before reading it."""
        if size > self.limits.max_entry_bytes:
            self.problems.halt(
                "too_large", name, f"{size:,} bytes; one file may be at most {self.limits.max_entry_bytes:,}"
            )
        self.total += size
        if self.total > self.limits.max_total_bytes:
            self.problems.halt(
                "too_large", None, f"the files add up to more than {self.limits.max_total_bytes:,} bytes"
            )

    def read(self, name: str, size: int, chunks: Iterable[bytes]) -> None:
        """Hash a file's bytes (keeping a YAML file's); its reader checks them against its header."""
        is_manifest = name.count("/") == 1 and name.endswith("/" + _MANIFEST)
        keep = is_manifest or name.endswith(".yaml")
        limit = self.limits.max_manifest_bytes if is_manifest else self.limits.max_yaml_bytes
        if keep and size > limit:
            keep = False
            if not is_manifest:  # a manifest too big is a bad manifest, once it is known to be the one
                self.problems.add("too_large", name, f"a YAML file of {size:,} bytes; at most {limit:,}")
        if keep and not is_manifest:
            self.yaml_total += size
            if self.yaml_total > self.limits.max_yaml_total_bytes:
                self.problems.halt(
                    "too_large",
                    None,
                    f"the YAML files add up to more than {self.limits.max_yaml_total_bytes:,} bytes",
                )
        digest = hashlib.sha256()
        pieces: list[bytes] = []
        got = 0
        for chunk in chunks:
            got += len(chunk)
            digest.update(chunk)
            if keep:
                pieces.append(chunk)
        if got != size:
            raise _Bad("tampered", name, f"{got:,} bytes where its header declares {size:,}")
        self.files.append(_File(name, got, digest.hexdigest()))
        if is_manifest:
            self.manifest = (len(self.files) - 1, b"".join(pieces) if keep else None)
        elif keep:
            self.yaml[name] = b"".join(pieces)

    def broken(self, name: str, size: int) -> None:
        """A file whose data could not be read whole (its problem is reported)."""
        self.files.append(_File(name, size, ""))

    def top(self) -> str:
        """The archive's top folder: the manifest's (the last file), else the first entry's first part."""
        if self.files:
            folder, _, rest = self.files[-1].name.partition("/")
            if rest == _MANIFEST:
                return folder
        return (self.first or "").split("/", 1)[0]


def _finish(scan: _Scan, archive_format: ArchiveFormat) -> ScannedArchive:
    top = scan.top()
    scanned = None
    if not scan.problems.stopped:
        with contextlib.suppress(_Stop):  # at the 100th problem
            scanned = _verify(scan, top, archive_format)
    if scanned is None or scan.problems.found:
        raise scan.problems.refused(top)
    return scanned


def _verify(scan: _Scan, top: str, archive_format: ArchiveFormat) -> ScannedArchive | None:
    """The files against the top folder, each other and the manifest."""
    problems = scan.problems
    if scan.files and scan.files[-1].name == _MANIFEST:  # one problem, not one per file
        problems.add(
            "outside_top",
            _MANIFEST,
            "the archive has no top folder: an export has everything in one folder (archive the folder "
            "itself, not what is in it)",
        )
        return None
    prefix = f"{top}/"
    manifest_name = prefix + _MANIFEST
    seen: dict[str, str] = {}  # NFC name -> the name as first seen
    entries: list[ArchiveEntry] = []
    manifest_at: int | None = None
    for position, file in enumerate(scan.files):
        if not top or not file.name.startswith(prefix):
            problems.add(
                "outside_top",
                file.name,
                f"not in the archive's folder '{_printable(top)}/', as every file is",
            )
            continue
        normal = unicodedata.normalize("NFC", file.name)
        earlier = seen.get(normal)
        if earlier is not None:
            scan.refused.add(file.name)  # not missing as well
            problems.add(
                "duplicate_path",
                file.name,
                "the archive holds this path twice"
                if earlier == file.name
                else f"the same path as '{_shown(earlier, top)}' once Unicode-normalised (NFC)",
            )
            continue
        seen[normal] = file.name
        if file.name == manifest_name:
            manifest_at = position
            continue
        entries.append(ArchiveEntry(len(entries), file.name[len(prefix) :], file.size, file.sha256))
    for folder in scan.folders:
        if folder != top and not folder.startswith(prefix):
            problems.add("outside_top", folder, f"a folder outside the archive's folder '{_printable(top)}/'")

    if manifest_at is None:
        problems.add(
            "no_manifest",
            manifest_name,
            f"the archive has no {_MANIFEST} in its folder '{_printable(top)}/': not an export archive, "
            "or not a whole one",
        )
        return None
    if manifest_at != len(scan.files) - 1:
        following = len(scan.files) - 1 - manifest_at
        problems.add(
            "bad_manifest",
            manifest_name,
            f"{_MANIFEST} is not the archive's last file ({following:,} file(s) follow it): an export "
            "writes it last",
        )
        return None
    if not scan.files[manifest_at].sha256:
        return None  # unreadable: reported already
    data = scan.manifest[1] if scan.manifest is not None and scan.manifest[0] == manifest_at else None
    if data is None:
        problems.add(
            "bad_manifest",
            manifest_name,
            f"{_MANIFEST} is {scan.files[manifest_at].size:,} bytes; at most "
            f"{scan.limits.max_manifest_bytes:,} are read",
        )
        return None
    parsed = _parse_manifest(data, manifest_name, problems)
    if parsed is None:
        return None
    manifest, listed = parsed

    in_archive: set[str] = set()
    for entry in entries:
        in_archive.add(entry.path)
        expected = listed.get(entry.path)
        name = prefix + entry.path
        if expected is None:
            problems.add(
                "not_in_manifest", name, "in the archive but not in its manifest, which lists every file"
            )
        elif not entry.sha256:
            continue  # unreadable: reported already
        elif entry.size != expected[0]:
            problems.add(
                "size_mismatch",
                name,
                f"{entry.size:,} bytes in the archive, {expected[0]:,} in the manifest",
            )
        elif entry.sha256 != expected[1]:
            problems.add(
                "tampered",
                name,
                "its SHA-256 is not the manifest's: the file was changed after the export",
            )
    for path in listed:
        if path not in in_archive and prefix + path not in scan.refused:
            problems.add("missing_file", prefix + path, "listed in the manifest but not in the archive")
    if problems.found:
        return None
    yaml_files = {name[len(prefix) :]: data for name, data in scan.yaml.items() if name.startswith(prefix)}
    return ScannedArchive(archive_format, top, manifest, entries, yaml_files)


_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def _parse_manifest(
    data: bytes, name: str, problems: _Problems
) -> tuple[dict[str, Any], dict[str, tuple[int, str]]] | None:
    """The manifest and its files (path -> size, sha256), or None with its problems reported."""
    try:
        document = yaml.load(data, Loader=_Loader)  # a safe loader (libyaml's when present)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problems.add("bad_manifest", name, f"{_MANIFEST} is not valid YAML{where}")
        return None
    except RecursionError:
        problems.add("bad_manifest", name, f"{_MANIFEST} is nested too deeply to read")
        return None
    if not isinstance(document, dict):
        problems.add("bad_manifest", name, f"{_MANIFEST} is not a mapping of keys (format_version, files...)")
        return None
    version = document.get("format_version")
    if not isinstance(version, str) or version.split(".", 1)[0].strip() != _READ_MAJOR:
        found = "no format_version" if version is None else f"format_version {_printable(repr(version))}"
        problems.add(
            "format_version",
            name,
            f"the manifest has {found}; this service reads format {_READ_MAJOR}.x (it writes "
            f"{FORMAT_VERSION})",
        )
        return None
    files = document.get("files")
    if not isinstance(files, list):
        problems.add("bad_manifest", name, f"{_MANIFEST} has no list of the archive's files ('files')")
        return None
    listed: dict[str, tuple[int, str]] = {}
    malformed = False
    for index, item in enumerate(files):
        why = _listed_problem(item)
        if why is None and item["path"] in listed:
            why = f"lists '{_printable(item['path'])}' a second time"
        if why is not None:
            malformed = True
            problems.add("bad_manifest", name, f"files[{index}] {why}")
            continue
        listed[item["path"]] = (item["size"], item["sha256"].lower())
    if malformed:
        return None
    return document, listed


def _listed_problem(item: Any) -> str | None:
    if not isinstance(item, dict):
        return "is not a mapping of path, size and sha256"
    path, size, digest = item.get("path"), item.get("size"), item.get("sha256")
    if not isinstance(path, str) or not path:
        return "has no path"
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        return f"('{_printable(path)}') has no size in bytes"
    if not isinstance(digest, str) or _SHA256.fullmatch(digest) is None:
        return f"('{_printable(path)}') has no sha256 (64 hex digits)"
    return None


# -- zip --------------------------------------------------------------------------------------------------

_EOCD = struct.Struct("<IHHHHIIH")
_ZIP64_LOCATOR = struct.Struct("<IIQI")
_ZIP64_EOCD = struct.Struct("<IQHHIIQQQQ")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_EOCD_SIG, _LOCATOR_SIG, _ZIP64_EOCD_SIG = 0x06054B50, 0x07064B50, 0x06064B50
_CENTRAL_SIG, _LOCAL_SIG = 0x02014B50, 0x04034B50
_U16, _U32 = 0xFFFF, 0xFFFFFFFF
_FLAG_ENCRYPTED, _FLAG_STRONG_ENCRYPTION, _FLAG_UTF8 = 0x0001, 0x0040, 0x0800
_STORED, _DEFLATED, _AES = 0, 8, 99
_SPECIAL = {
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
}


class _ZipEnd(NamedTuple):
    entries: int
    cd_offset: int
    cd_size: int


class _ZipRecord(NamedTuple):
    """One central directory entry."""

    name: str
    raw_name: bytes
    kind: str  # file, dir, link, special
    what: str  # which link or special file
    flags: int
    method: int
    crc: int
    compressed: int
    size: int
    offset: int  # of its local header


def _read_exact(stream: IO[bytes], size: int) -> bytes:
    """``size`` bytes, or fewer at the end of the stream."""
    data = stream.read(size)
    if len(data) == size or not data:
        return data
    pieces = [data]
    got = len(data)
    while got < size:
        more = stream.read(size - got)
        if not more:
            break
        pieces.append(more)
        got += len(more)
    return b"".join(pieces)


def _zip_end(stream: IO[bytes], size: int) -> _ZipEnd:
    """The end of central directory record (Zip64's when there is one)."""
    tail_size = min(size, _EOCD.size + _U16)
    stream.seek(size - tail_size)
    tail = _read_exact(stream, tail_size)
    at = tail.rfind(b"PK\x05\x06")
    while at >= 0:
        # A signature inside the comment or the data would not reach the end of the file exactly.
        if at + _EOCD.size <= len(tail) and at + _EOCD.size + _EOCD.unpack_from(tail, at)[7] == len(tail):
            break
        at = tail.rfind(b"PK\x05\x06", 0, at)
    if at < 0:
        stream.seek(0)
        if _read_exact(stream, 4) == b"PK\x03\x04":
            raise _Bad(
                "truncated",
                None,
                "the zip file has no end of central directory: the upload is incomplete (truncated)",
            )
        raise _Bad("not_an_archive", None, "not a zip file: it has no central directory")
    _, disk, cd_disk, disk_count, count, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, at)
    end_at = size - tail_size + at
    cd_end = end_at
    locator = b""
    if end_at >= _ZIP64_LOCATOR.size:
        stream.seek(end_at - _ZIP64_LOCATOR.size)
        locator = _read_exact(stream, _ZIP64_LOCATOR.size)
    if len(locator) == _ZIP64_LOCATOR.size and _ZIP64_LOCATOR.unpack(locator)[0] == _LOCATOR_SIG:
        record_at = _ZIP64_LOCATOR.unpack(locator)[2]
        if record_at + _ZIP64_EOCD.size > end_at - _ZIP64_LOCATOR.size:
            raise _Bad("not_an_archive", None, "the zip's Zip64 end record is corrupt")
        stream.seek(record_at)
        record = _read_exact(stream, _ZIP64_EOCD.size)
        signature, _, _, _, disk, cd_disk, disk_count, count, cd_size, cd_offset = _ZIP64_EOCD.unpack(record)
        if signature != _ZIP64_EOCD_SIG:
            raise _Bad("not_an_archive", None, "the zip's Zip64 end record is corrupt")
        cd_end = record_at
    if disk or cd_disk or disk_count != count:
        raise _Bad(
            "not_an_archive", None, "a split (multi-part) zip archive, which the service does not read"
        )
    if cd_offset + cd_size > cd_end or count * _CENTRAL.size > cd_size:
        raise _Bad(
            "not_an_archive", None, "the zip's central directory is corrupt (it does not fit its place)"
        )
    return _ZipEnd(count, cd_offset, cd_size)


class _Sequential:
    """``length`` bytes read in order from the stream's position, 1 MiB at a time."""

    def __init__(self, stream: IO[bytes], length: int) -> None:
        self._stream = stream
        self._left = length
        self._buffer = b""
        self._at = 0

    def take(self, size: int) -> bytes:
        if len(self._buffer) - self._at < size:
            rest = self._buffer[self._at :]
            want = min(max(size - len(rest), _CHUNK), self._left)
            data = _read_exact(self._stream, want)
            self._left -= len(data)
            self._buffer, self._at = rest + data, 0
        piece = self._buffer[self._at : self._at + size]
        self._at += len(piece)
        return piece


def _cd_records(stream: IO[bytes], end: _ZipEnd) -> Iterator[_ZipRecord]:
    stream.seek(end.cd_offset)
    directory = _Sequential(stream, end.cd_size)
    for number in range(1, end.entries + 1):
        head = directory.take(_CENTRAL.size)
        if len(head) < _CENTRAL.size or _CENTRAL.unpack(head)[0] != _CENTRAL_SIG:
            raise _Bad("not_an_archive", None, f"the zip's central directory is corrupt at entry {number:,}")
        (_, _, _, flags, method, _, _, crc, compressed, size, name_size, extra_size, comment_size, _, _,
         external, offset) = _CENTRAL.unpack(head)  # fmt: skip
        raw_name = directory.take(name_size)
        extra = directory.take(extra_size)
        if (
            len(raw_name) < name_size
            or len(extra) < extra_size
            or len(directory.take(comment_size)) < comment_size
        ):
            raise _Bad("not_an_archive", None, f"the zip's central directory is corrupt at entry {number:,}")
        name = _zip_name(raw_name, flags)
        if _U32 in (size, compressed, offset):
            size, compressed, offset = _zip64_fields(name, extra, size, compressed, offset)
        kind, what = _zip_kind(name, external)
        yield _ZipRecord(name, raw_name, kind, what, flags, method, crc, compressed, size, offset)


def _zip_name(raw: bytes, flags: int) -> str:
    if flags & _FLAG_UTF8:
        return raw.decode("utf-8", "surrogateescape")  # invalid UTF-8 stays visible, and is refused
    try:
        return raw.decode("utf-8")  # many zip tools write UTF-8 without saying so
    except UnicodeDecodeError:
        return raw.decode("cp437")  # the zip specification's default


def _zip64_fields(name: str, extra: bytes, size: int, compressed: int, offset: int) -> tuple[int, int, int]:
    """The entry's sizes and offset from its Zip64 extra field: those whose 32-bit field is 0xFFFFFFFF."""
    at = 0
    while at + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, at)
        body = extra[at + 4 : at + 4 + length]
        at += 4 + length
        if tag != 1:
            continue
        values = [size, compressed, offset]
        taken = 0
        for position, value in enumerate(values):
            if value == _U32:
                if taken + 8 > len(body):
                    break
                values[position] = struct.unpack_from("<Q", body, taken)[0]
                taken += 8
        else:
            return values[0], values[1], values[2]
    raise _Bad("not_an_archive", name, "its Zip64 sizes are missing: the entry is corrupt")


def _zip_kind(name: str, external: int) -> tuple[str, str]:
    """file, dir, link or special, from the name and the unix mode in the external attributes."""
    if name.endswith("/"):
        return "dir", ""
    file_type = stat.S_IFMT(external >> 16)
    if file_type == stat.S_IFLNK:
        return "link", "a symbolic link"
    if file_type == stat.S_IFDIR:
        return "dir", ""
    if file_type in (0, stat.S_IFREG):
        return "file", ""
    return "special", _SPECIAL.get(file_type, "a special file")


def _zip_refusal(record: _ZipRecord, limits: ImportLimits) -> tuple[str, str] | None:
    """Why a file entry's data is not read (code, message), or None."""
    if record.flags & (_FLAG_ENCRYPTED | _FLAG_STRONG_ENCRYPTION) or record.method == _AES:
        return "encrypted", "the entry is encrypted: it cannot be verified, and an export is never encrypted"
    if record.method not in (_STORED, _DEFLATED):
        return (
            "not_an_archive",
            f"compressed with method {record.method}, which the service does not read (an export's entries "
            "are stored or deflated)",
        )
    if record.method == _STORED and record.compressed != record.size:
        return "tampered", "a stored entry whose two sizes differ: its header is corrupt"
    if record.size > limits.ratio_floor_bytes and record.size > limits.max_ratio * record.compressed:
        return (
            "compression_ratio",
            f"{record.size:,} bytes compressed into {record.compressed:,}, more than {limits.max_ratio}:1: "
            "a zip bomb",
        )
    return None


def _zip_chunks(
    stream: IO[bytes], record: _ZipRecord, cd_offset: int, next_header: int | None
) -> Iterator[bytes]:
    """An entry's bytes, inflated within its declared size and checked against its CRC-32 and sizes.

    Seeks before every read, so that readers of several entries may share the stream."""
    stream.seek(record.offset)
    head = _read_exact(stream, _LOCAL.size)
    if record.offset + _LOCAL.size > cd_offset or len(head) < _LOCAL.size:
        raise _Bad("truncated", record.name, "its data lies past the end of the archive")
    signature, _, _, method, _, _, _, _, _, name_size, extra_size = _LOCAL.unpack(head)
    if signature != _LOCAL_SIG:
        raise _Bad(
            "not_an_archive", record.name, "no local header where the central directory puts the entry"
        )
    local_name = _read_exact(stream, name_size)
    if local_name != record.raw_name or method != record.method:
        raise _Bad(
            "tampered",
            record.name,
            "its local header and the central directory disagree (name or compression): the zip is corrupt "
            "or was altered",
        )
    position = record.offset + _LOCAL.size + name_size + extra_size
    end = position + record.compressed
    if end > cd_offset:
        raise _Bad("truncated", record.name, "its data runs past the end of the archive's entries")
    if next_header is not None and end > next_header:
        raise _Bad(
            "compression_ratio",
            record.name,
            "its data overlaps the next entry: overlapping entries are how a zip bomb reuses its data",
        )
    left, produced, crc = record.compressed, 0, 0
    if record.method == _STORED:
        while left:
            stream.seek(position)
            chunk = stream.read(min(_CHUNK, left))
            if not chunk:
                raise _Bad("truncated", record.name, "the file ends inside the entry's data")
            position, left, produced = position + len(chunk), left - len(chunk), produced + len(chunk)
            crc = zlib.crc32(chunk, crc)
            yield chunk
    else:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        pending = b""
        while not inflater.eof:
            if not pending:
                if not left:
                    raise _Bad(
                        "tampered", record.name, "its compressed data ends early: the entry is corrupt"
                    )
                stream.seek(position)
                pending = stream.read(min(_CHUNK, left))
                if not pending:
                    raise _Bad("truncated", record.name, "the file ends inside the entry's data")
                position, left = position + len(pending), left - len(pending)
            try:
                # Never more than one byte past the declared size: a lying header cannot make it inflate on.
                out = inflater.decompress(pending, min(_CHUNK, record.size + 1 - produced))
            except zlib.error:
                raise _Bad("tampered", record.name, "its compressed data is corrupt") from None
            pending = inflater.unconsumed_tail
            if not out:
                continue
            produced += len(out)
            # Its declared ratio was checked: an entry inflating past its declared size lies.
            if produced > record.size:
                raise _Bad("tampered", record.name, f"it inflates past the {record.size:,} bytes it declares")
            crc = zlib.crc32(out, crc)
            yield out
    if produced != record.size:
        raise _Bad("tampered", record.name, f"{produced:,} bytes where its header declares {record.size:,}")
    if crc != record.crc:
        raise _Bad(
            "tampered", record.name, "its CRC-32 is not its header's: the entry is corrupt or was altered"
        )


def _scan_zip(open_stream: Callable[[], IO[bytes]], limits: ImportLimits) -> _Scan:
    scan = _Scan(limits)
    stream = open_stream()
    try:
        try:
            end = _zip_end(stream, stream.seek(0, io.SEEK_END))
            if end.entries > limits.max_entries:
                scan.problems.halt(
                    "too_many_entries",
                    None,
                    f"the archive has {end.entries:,} entries; at most {limits.max_entries:,}",
                )
            offsets = array("Q")
            readable: list[_ZipRecord] = []
            # The central directory first: names, types and declared sizes, before any data is read.
            for record in _cd_records(stream, end):
                offsets.append(record.offset)
                if not scan.entry(record.name, record.kind, record.what):
                    continue
                refusal = _zip_refusal(record, limits)
                if refusal is not None:
                    scan.refused.add(record.name)
                    scan.problems.add(refusal[0], record.name, refusal[1])
                    continue
                scan.declared(record.name, record.size)
                readable.append(record)
            if scan.problems.fatal():
                scan.problems.halt()
            ordered = sorted(offsets)
            del offsets
            for record in readable:
                following = bisect.bisect_right(ordered, record.offset)
                if following >= 2 and ordered[following - 2] == record.offset:
                    raise _Bad(
                        "compression_ratio",
                        record.name,
                        "it shares its data with another entry: overlapping entries are how a zip bomb "
                        "reuses its data",
                    )
                next_header = ordered[following] if following < len(ordered) else None
                try:
                    scan.read(
                        record.name,
                        record.size,
                        _zip_chunks(stream, record, end.cd_offset, next_header),
                    )
                except _Bad as bad:
                    if bad.code in _FATAL:
                        raise
                    scan.problems.add(bad.code, bad.name, bad.message)
                    scan.broken(record.name, record.size)
        except _Bad as bad:
            scan.problems.halt(bad.code, bad.name, bad.message)
    except _Stop:
        pass
    finally:
        stream.close()
    return scan


def _iter_zip(
    open_stream: Callable[[], IO[bytes]], top: str, todo: list[ArchiveEntry], limits: ImportLimits
) -> Iterator[tuple[ArchiveEntry, BinaryIO]]:
    stream = open_stream()
    try:
        wanted = {entry.index: entry for entry in todo}
        last = todo[-1].index
        records: dict[int, _ZipRecord] = {}
        try:
            end = _zip_end(stream, stream.seek(0, io.SEEK_END))
            index = 0
            for record in _cd_records(stream, end):
                if record.kind == "dir":
                    continue
                if index in wanted:
                    records[index] = record
                index += 1
                if index > last:
                    break
        except _Bad as bad:
            raise _changed(todo[0], bad.message) from None
        for entry in todo:
            found = records.get(entry.index)
            if found is None:
                raise _changed(entry, "the archive has fewer files than it had")
            if found.name != f"{top}/{entry.path}":
                raise _changed(entry, f"the file at its place is '{_printable(found.name)}'")
            refusal = _zip_refusal(found, limits)
            if found.kind != "file" or found.size != entry.size or refusal is not None:
                raise _changed(entry, "its entry in the central directory is not the one verified")
            chunks = _zip_chunks(stream, found, end.cd_offset, None)
            yield entry, io.BufferedReader(_Verified(entry, chunks), _CHUNK)
    finally:
        stream.close()


# -- tar.gz -----------------------------------------------------------------------------------------------

_TAR_BUFFER = 64 << 10
# tarfile reads these headers' data whole, into memory.
_TAR_META = frozenset(
    {
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
    }
)
_MAX_TAR_META = 1 << 20
_TAR_FILE_TYPES = frozenset({tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE})
_TAR_SPECIAL = {
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO (named pipe)",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
}


class _Gunzip(io.RawIOBase):
    """The bytes of a gzip stream, read strictly in order from ``source``: refuses a gzip bomb (past the
    ratio floor, more than max_ratio bytes out per byte in), a stream that ends early, and anything after
    its last member but zeros."""

    def __init__(self, source: IO[bytes], limits: ImportLimits) -> None:
        super().__init__()
        self._source = source
        self._limits = limits
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._input = b""
        self._consumed = 0  # compressed bytes taken from the source
        self._produced = 0
        self._done = False
        # The tar framing around max_total_bytes of files: headers and padding, a few blocks per entry.
        self._ceiling = limits.max_total_bytes + 3 * tarfile.BLOCKSIZE * limits.max_entries + _CHUNK

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1, /) -> bytes:
        if size is None or size < 0:
            size = _CHUNK
        while size and not self._done:
            if not self._input:
                self._fill()
            try:
                out = self._inflater.decompress(self._input, size)
            except zlib.error as error:
                raise self._corrupt(error) from None
            self._input = self._inflater.unconsumed_tail
            if self._inflater.eof:
                self._next_member()
            if out:
                self._produced += len(out)
                self._check()
                return out
        return b""

    def _fill(self) -> None:
        self._input = self._source.read(_CHUNK)
        if not self._input:
            if not self._consumed:
                raise _Bad("not_an_archive", None, "the file is empty")
            raise _Bad("truncated", None, "the gzip stream ends early: the upload is incomplete (truncated)")
        self._consumed += len(self._input)

    def _next_member(self) -> None:
        rest = self._inflater.unused_data
        while len(rest) < 2:
            more = self._source.read(_CHUNK)
            if not more:
                break
            self._consumed += len(more)
            rest += more
        if not rest.strip(b"\x00"):  # nothing, or zeros (as tape blocking pads a file): gzip ignores them
            while more := self._source.read(_CHUNK):
                if more.strip(b"\x00"):
                    break
            else:
                self._done = True
                return
        if not rest.startswith(b"\x1f\x8b"):
            raise _Bad(
                "not_an_archive", None, "the file goes on after its gzip stream with bytes that are not gzip"
            )
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._input = rest

    def _check(self) -> None:
        used = self._consumed - len(self._input)
        if self._produced > self._limits.ratio_floor_bytes and self._produced > self._limits.max_ratio * used:
            raise _Bad(
                "compression_ratio",
                None,
                f"the gzip stream inflates more than {self._limits.max_ratio}:1 ({self._produced:,} "
                f"bytes from {used:,}): a gzip bomb",
            )
        if self._produced > self._ceiling:
            raise _Bad("too_large", None, f"the archive inflates past {self._ceiling:,} bytes")

    def _corrupt(self, error: zlib.error) -> _Bad:
        text = str(error)
        if "incorrect data check" in text or "incorrect length check" in text:
            return _Bad(
                "tampered",
                None,
                "the gzip stream's CRC-32 is not its data's: the archive is corrupt or altered",
            )
        if not self._produced:
            return _Bad("not_an_archive", None, "not a gzip file, or a corrupt one")
        return _Bad("tampered", None, f"the gzip data is corrupt after {self._produced:,} bytes")


class _TarInfo(tarfile.TarInfo):
    """tarfile's header parsing, with limits on what tarfile would read whole into memory."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        info = super().frombuf(buf, encoding, errors)
        if info.type in _TAR_META and info.size > _MAX_TAR_META:
            raise _Bad(
                "too_large", None, f"a tar extended header of {info.size:,} bytes; at most {_MAX_TAR_META:,}"
            )
        if info.type == tarfile.GNUTYPE_SPARSE:  # its extension headers would be read one after another
            raise _Bad(
                "special_file", info.name, "a sparse file: an export holds only regular files and folders"
            )
        return info

    @classmethod
    def fromtarfile(cls, archive: tarfile.TarFile) -> Self:
        try:
            return super().fromtarfile(archive)
        except tarfile.HeaderError as error:
            if isinstance(archive, _TarStream):
                archive.ended = error  # why the archive ended: tarfile itself stops there silently
            raise

    def _proc_gnusparse_10(self, member: tarfile.TarInfo, pax_headers: Any, archive: Any) -> None:
        # tarfile would read a sparse map of any length from the data into a list: never read one.
        raise _Bad(
            "special_file", member.name, "a sparse file: an export holds only regular files and folders"
        )


class _TarStream(tarfile.TarFile):
    """tarfile's stream mode (``r|``), without its list of every member read (one TarInfo per entry)."""

    members: list[tarfile.TarInfo]
    ended: tarfile.HeaderError | None = None

    def next(self) -> tarfile.TarInfo | None:
        member = super().next()
        self.members.clear()
        return member


def _open_tar(gunzip: _Gunzip) -> _TarStream:
    return _TarStream.open(
        fileobj=gunzip,
        mode="r|",
        tarinfo=_TarInfo,
        bufsize=_TAR_BUFFER,
        encoding="utf-8",
        errors="surrogateescape",
    )


def _tar_kind(member: tarfile.TarInfo) -> tuple[str, str]:
    if member.type in _TAR_FILE_TYPES and member.sparse is None:
        return "file", ""
    if member.type == tarfile.DIRTYPE:
        return "dir", ""
    if member.type == tarfile.SYMTYPE:
        return "link", f"a symbolic link to '{_printable(member.linkname)}'"
    if member.type == tarfile.LNKTYPE:
        return "link", f"a hard link to '{_printable(member.linkname)}'"
    if member.sparse is not None:
        return "special", "a sparse file"
    return "special", _TAR_SPECIAL.get(member.type, f"an entry of tar type {_printable(repr(member.type))}")


def _tar_ending(archive: _TarStream) -> None:
    """Raise if the tar data ended on a broken header (tarfile stops there as if at its end)."""
    # tarfile's header errors are not in its stubs: by name.
    ended = type(archive.ended).__name__
    if ended == "TruncatedHeaderError":
        raise _Bad("truncated", None, "the tar data ends inside an entry's header: the upload is incomplete")
    if ended == "InvalidHeaderError":
        raise _Bad("not_an_archive", None, "the tar data is corrupt: an entry's header is invalid")


def _tar_read_error(error: tarfile.TarError) -> _Bad:
    text = str(error)
    if "unexpected end of data" in text or "truncated" in text:
        return _Bad(
            "truncated", None, "the tar data ends inside an entry: the upload is incomplete (truncated)"
        )
    if text == "empty file":
        return _Bad("not_an_archive", None, "the gzip file holds no tar archive")
    return _Bad(
        "not_an_archive", None, f"the gzip file does not hold a readable tar archive ({_printable(text)})"
    )


def _scan_tar(open_stream: Callable[[], IO[bytes]], limits: ImportLimits) -> _Scan:
    scan = _Scan(limits)
    stream = open_stream()
    name: str | None = None  # the entry being read
    try:
        try:
            gunzip = _Gunzip(stream, limits)
            with _open_tar(gunzip) as archive:
                while (member := archive.next()) is not None:
                    name = member.name
                    kind, what = _tar_kind(member)
                    if scan.entry(name, kind, what):
                        if member.size < 0:
                            raise _Bad("not_an_archive", name, "its tar header gives a negative size")
                        scan.declared(name, member.size)
                        data = archive.extractfile(member)
                        if data is None:  # tarfile gives a reader for every regular file
                            raise AssertionError(name)
                        scan.read(name, member.size, iter(functools.partial(data.read, _CHUNK), b""))
                    name = None
                _tar_ending(archive)
            # On to the end of the gzip stream: its CRC-32 is checked there, and nothing may follow it.
            while gunzip.read(_CHUNK):
                pass
        except _Bad as bad:
            # The gzip stream's problems belong to no entry, but where it ends or inflates too much.
            at = name if bad.code in ("truncated", "compression_ratio") else None
            scan.problems.halt(bad.code, bad.name if bad.name is not None else at, bad.message)
        except tarfile.TarError as error:
            unreadable = _tar_read_error(error)
            scan.problems.halt(unreadable.code, name, unreadable.message)
    except _Stop:
        pass
    finally:
        stream.close()
    return scan


def _iter_tar(
    open_stream: Callable[[], IO[bytes]], top: str, todo: list[ArchiveEntry], limits: ImportLimits
) -> Iterator[tuple[ArchiveEntry, BinaryIO]]:
    stream = open_stream()
    try:
        pending = iter(todo)
        target: ArchiveEntry | None = next(pending)
        index = 0
        try:
            archive = _open_tar(_Gunzip(stream, limits))
        except (_Bad, tarfile.TarError) as error:
            raise _changed(todo[0], _reason(error)) from None
        with archive:
            while target is not None:
                try:
                    member = archive.next()
                except (_Bad, tarfile.TarError) as error:
                    raise _changed(target, _reason(error)) from None
                if member is None:
                    raise _changed(target, "the archive ends before this file")
                kind, _ = _tar_kind(member)
                if kind == "dir":
                    continue
                if index == target.index:
                    if member.name != f"{top}/{target.path}" or kind != "file" or member.size != target.size:
                        raise _changed(target, f"the entry at its place is '{_printable(member.name)}'")
                    data = archive.extractfile(member)
                    if data is None:
                        raise AssertionError(member.name)
                    chunks = iter(functools.partial(data.read, _CHUNK), b"")
                    yield target, io.BufferedReader(_Verified(target, chunks), _CHUNK)
                    target = next(pending, None)
                index += 1
    finally:
        stream.close()


# -- second pass ------------------------------------------------------------------------------------------


def _changed(entry: ArchiveEntry, why: str) -> ArchiveRefused:
    return ArchiveRefused(
        [
            ArchiveProblem(
                code="changed",
                path=_printable(entry.path),
                message=f"the archive is not the one verified: {why}",
            )
        ]
    )


def _reason(error: Exception) -> str:
    if isinstance(error, _Bad):
        return error.message
    if isinstance(error, tarfile.TarError):
        return _tar_read_error(error).message
    return "its compressed data is corrupt"


class _Verified(io.RawIOBase):
    """One file's bytes, checked against the scan (size, SHA-256) as they are read."""

    def __init__(self, entry: ArchiveEntry, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._entry = entry
        self._chunks = chunks
        self._digest = hashlib.sha256()
        self._size = 0
        self._chunk = memoryview(b"")
        self._finished = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        while not self._chunk:
            if self._finished:
                return 0
            try:
                chunk = next(self._chunks, None)
            except (_Bad, tarfile.TarError, zlib.error) as error:
                raise _changed(self._entry, _reason(error)) from None
            if chunk is None:
                self._finish()
                return 0
            self._size += len(chunk)
            if self._size > self._entry.size:
                raise _changed(self._entry, f"it is longer than the {self._entry.size:,} bytes verified")
            self._digest.update(chunk)
            self._chunk = memoryview(chunk)
        view = memoryview(buffer).cast("B")
        size = min(len(view), len(self._chunk))
        view[:size] = self._chunk[:size]
        self._chunk = self._chunk[size:]
        return size

    def _finish(self) -> None:
        self._finished = True
        if self._size != self._entry.size:
            raise _changed(self._entry, f"{self._size:,} bytes, not the {self._entry.size:,} verified")
        if self._digest.hexdigest() != self._entry.sha256:
            raise _changed(self._entry, "its SHA-256 is not the one verified")
