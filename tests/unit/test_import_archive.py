"""restore.archive: an uploaded archive is verified before an import writes anything. A real export of the
example organization (built in-process by the export's own code) is accepted in both formats and read back
byte for byte; hostile and damaged archives are refused, each with the precise problem and entry."""

from __future__ import annotations

import hashlib
import io
import json
import random
import stat
import struct
import tarfile
import unicodedata
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

import pytest
import yaml
from data_export.archive.tar import TarGzStreamWriter
from data_export.archive.zip import ZipStreamWriter
from data_export.export.builder import (
    ManifestFiles,
    archive_folder,
    manifest_document,
    manifest_yaml,
    output_filename,
)
from data_export.export.entries import file_of, open_entries
from data_export.export.sections import MissingAsset, SectionFolder, missing_summary, write_section
from data_export.jobs import Job
from data_export.models import ArchiveFormat, ArchiveProblem, JobStatus
from data_export.restore.archive import (
    ArchiveEntry,
    ArchiveRefused,
    ImportLimits,
    ScannedArchive,
    detect_format,
    iter_files,
    scan_archive,
)
from data_export.storage.objects import Asset
from data_export_cli.seed import _api_key_item, _stored_record

from tests.archive_checks import (
    ACME,
    EXAMPLE_SECTION_COUNTS,
    archive_files,
    check_binaries,
    check_manifest,
    check_manifest_files,
    check_records,
    section_counts,
)

JOB_ID = "S8yfMT73Q29pRJaQ7Y3QM9"
REQUESTED_AT = datetime(2026, 11, 28, 19, 31, 46, 487538, tzinfo=UTC)
MTIME = REQUESTED_AT.timestamp()
FORMATS = list(ArchiveFormat)
DEFAULTS = ImportLimits()


# -- archives ---------------------------------------------------------------------------------------------


def export_example(example: Any, archive_format: ArchiveFormat) -> bytes:
    """The example organization's export, as ExportBuilder._write_archive writes it, without AWS: its
    records in id order (as the store lists them) and its binaries from the fixture, through the export's
    own section writer, entries and manifest."""
    acme = next(org for org in example.organizations if org.id == ACME)
    job = Job.new(
        organization_id=ACME,
        job_id=JOB_ID,
        archive_format=archive_format,
        output_filename=output_filename("acme-coffee", JOB_ID, archive_format.extension),
        created_at=REQUESTED_AT,
        retention_days=7,
    )
    top = archive_folder(job)
    assets: dict[str, bytes | None] = {}

    def stored(section: str) -> list[dict[str, Any]]:
        """The section's records as the seeder stores them (its own helpers), in the store's order."""
        if section == "api_keys":
            items = [_api_key_item(ACME, key) for key in acme.api_keys]
            records = [json.loads(item["record"]["S"]) for item in items]
        else:
            records = []
            for record in acme.records(section):
                exported, record_assets = _stored_record(example, ACME, section, record)
                assets.update((key, example.binary_bytes(binary)) for key, binary in record_assets)
                records.append(exported)
        return sorted(records, key=lambda record: str(record["id"]).encode())

    def open_asset(key: str) -> Asset | None:
        data = assets.get(key)
        return None if data is None else Asset(size=len(data), chunks=iter([data]))

    sink = io.BytesIO()
    entries = open_entries(archive_format, sink, job.created_at)
    missing: list[MissingAsset] = []
    for report in job.sections:
        section_missing: list[MissingAsset] = []
        write_section(
            entries,
            top,
            SectionFolder(report.key),
            stored(report.key),
            open_asset,
            report,
            section_missing,
            organization_id=ACME,
            read_ahead=0,
        )
        missing.extend(section_missing)
        report.error, report.status = missing_summary(section_missing), JobStatus.COMPLETED
    files = ManifestFiles(top)
    files.add(entries.files)
    document = manifest_document(job, acme.organization.as_typed(), missing, REQUESTED_AT)
    entries.add_file(f"{top}/manifest.yaml", manifest_yaml(document, files))
    entries.close()
    return sink.getvalue()


@pytest.fixture(scope="module")
def exports(example: Any) -> dict[ArchiveFormat, bytes]:
    built = {archive_format: export_example(example, archive_format) for archive_format in FORMATS}
    for archive_format, data in built.items():  # a genuine export: what every build path is checked for
        files = archive_files(data, archive_format.value)
        top = next(iter(files)).split("/", 1)[0]
        check_manifest_files(files, top)
        check_records(files, top, example)
        assert check_binaries(files, top, example) == 7
        manifest = yaml.safe_load(files[f"{top}/manifest.yaml"])
        assert section_counts(manifest["sections"]) == EXAMPLE_SECTION_COUNTS
        check_manifest(
            files, top, {"format_version": "1.0", "job_id": JOB_ID, "sections": manifest["sections"]}
        )
    return built


class OneWay(io.RawIOBase):
    """A stream that can only be read in order (an S3 GetObject body): tar.gz must never seek."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._data.readinto(buffer)


def opener(data: bytes, archive_format: ArchiveFormat) -> Callable[[], IO[bytes]]:
    if archive_format is ArchiveFormat.ZIP:
        return lambda: io.BytesIO(data)
    return lambda: io.BufferedReader(OneWay(data), 64 << 10)


def scan(data: bytes, archive_format: ArchiveFormat, limits: ImportLimits = DEFAULTS) -> ScannedArchive:
    return scan_archive(opener(data, archive_format), archive_format, limits)


def refusal(
    data: bytes, archive_format: ArchiveFormat, limits: ImportLimits = DEFAULTS
) -> list[tuple[str, str | None]]:
    """The (code, path) of every problem the scan refuses ``data`` for."""
    with pytest.raises(ArchiveRefused) as refused:
        scan(data, archive_format, limits)
    assert str(refused.value).startswith("archive refused: ") and "\n" not in str(refused.value)
    for problem in refused.value.problems:
        assert problem.message and "\n" not in problem.message
    return [(problem.code, problem.path) for problem in refused.value.problems]


@dataclass
class Member:
    """An entry of a hand-made archive: anything a hostile or broken archive may hold."""

    name: str
    data: bytes = b""
    kind: str = "file"  # file, dir, symlink, hardlink, fifo, chardev
    target: str = ""
    stored: bool = False  # zip: not deflated


def write_zip(members: list[Member]) -> bytes:
    modes = {
        "file": stat.S_IFREG | 0o644,
        "dir": stat.S_IFDIR | 0o755,
        "symlink": stat.S_IFLNK | 0o777,
        "fifo": stat.S_IFIFO | 0o644,
        "chardev": stat.S_IFCHR | 0o644,
    }
    sink = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(sink, "w") as archive:
        warnings.simplefilter("ignore")  # "Duplicate name": on purpose
        for member in members:
            info = zipfile.ZipInfo(
                member.name + ("/" if member.kind == "dir" else ""), (2026, 11, 28, 19, 31, 46)
            )
            info.create_system = 3
            info.external_attr = modes[member.kind] << 16
            info.compress_type = zipfile.ZIP_STORED if member.stored else zipfile.ZIP_DEFLATED
            archive.writestr(info, member.target.encode() if member.kind == "symlink" else member.data)
    return sink.getvalue()


def write_tar(members: list[Member]) -> bytes:
    types = {
        "file": tarfile.REGTYPE,
        "dir": tarfile.DIRTYPE,
        "symlink": tarfile.SYMTYPE,
        "hardlink": tarfile.LNKTYPE,
        "fifo": tarfile.FIFOTYPE,
        "chardev": tarfile.CHRTYPE,
    }
    sink = io.BytesIO()
    with tarfile.open(fileobj=sink, mode="w:gz", format=tarfile.PAX_FORMAT, compresslevel=1) as archive:
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.type, info.linkname, info.mtime = types[member.kind], member.target, int(MTIME)
            info.size = len(member.data) if member.kind == "file" else 0
            archive.addfile(info, io.BytesIO(member.data) if member.kind == "file" else None)
    return sink.getvalue()


def write(members: list[Member], archive_format: ArchiveFormat) -> bytes:
    return write_zip(members) if archive_format is ArchiveFormat.ZIP else write_tar(members)


@dataclass
class Small:
    """A small export: the example's records, its logo and a manifest listing them, as members to break."""

    top: str
    files: dict[str, bytes]  # whole names, archive order, manifest excluded
    document: dict[str, Any]  # the manifest but its files

    def manifest(self, files: dict[str, bytes] | None = None, **changes: Any) -> bytes:
        listed = ManifestFiles(self.top)
        listed.add(file_of(name, data) for name, data in (self.files if files is None else files).items())
        return manifest_yaml({**self.document, **changes}, listed)

    def members(self, files: dict[str, bytes] | None = None) -> list[Member]:
        """Every file then the manifest, which lists ``files`` (default: the same)."""
        return [
            *(Member(name, data) for name, data in self.files.items()),
            Member(f"{self.top}/manifest.yaml", self.manifest(files)),
        ]

    def path(self, suffix: str) -> str:
        """The whole name of the (only) file whose name ends with ``suffix``."""
        (name,) = (name for name in self.files if name.endswith(suffix))
        return name


@pytest.fixture(scope="module")
def small(exports: dict[ArchiveFormat, bytes]) -> Small:
    files = archive_files(exports[ArchiveFormat.ZIP], "zip")
    top = next(iter(files)).split("/", 1)[0]
    document = yaml.safe_load(files.pop(f"{top}/manifest.yaml"))
    del document["files"]
    kept = {name: data for name, data in files.items() if name.endswith(".yaml") or "/logo/" in name}
    return Small(top, kept, document)


def relative(small: Small, name: str) -> str:
    return name.removeprefix(f"{small.top}/")


# -- a real export ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("archive_format", FORMATS)
def test_the_example_export_is_verified_and_read_back_byte_for_byte(
    archive_format: ArchiveFormat, exports: dict[ArchiveFormat, bytes]
) -> None:
    data = exports[archive_format]
    assert detect_format(data[:8]) is archive_format
    scanned = scan(data, archive_format)
    files = archive_files(data, archive_format.value)
    top = f"acme-coffee-export-{JOB_ID}"
    assert scanned.archive_format is archive_format and scanned.top == top
    assert scanned.manifest == yaml.safe_load(files[f"{top}/manifest.yaml"])
    assert scanned.manifest["organization"]["id"] == ACME
    expected = [(name.removeprefix(f"{top}/"), content) for name, content in files.items()][:-1]
    assert scanned.entries == [
        ArchiveEntry(index, path, len(content), hashlib.sha256(content).hexdigest())
        for index, (path, content) in enumerate(expected)
    ]
    assert scanned.yaml_files == {path: content for path, content in expected if path.endswith(".yaml")}
    assert len(scanned.yaml_files) == 19

    binaries = {path for path, _ in expected if not path.endswith(".yaml")}
    assert "products/CpWrfXcQ9K3QMjuiwcGWu8/images/huila café.jpg" in binaries and len(binaries) == 7
    read = {}
    for entry, reader in iter_files(opener(data, archive_format), scanned, binaries):
        read[entry.path] = reader.read()
    assert list(read) == [path for path, _ in expected if path in binaries]  # archive order
    assert read == {path: content for path, content in expected if path in binaries}


@pytest.mark.parametrize("archive_format", FORMATS)
def test_iter_files_starts_at_an_index_and_skips_what_is_not_wanted(
    archive_format: ArchiveFormat, exports: dict[ArchiveFormat, bytes]
) -> None:
    data = exports[archive_format]
    scanned = scan(data, archive_format)
    binaries = [entry for entry in scanned.entries if not entry.path.endswith(".yaml")]
    files = {
        entry.path: content
        for entry, content in zip(scanned.entries, _contents(data, archive_format), strict=True)
    }
    later = binaries[3:]
    got = [
        (entry, reader.read())
        for entry, reader in iter_files(
            opener(data, archive_format), scanned, [b.path for b in binaries], later[0].index
        )
    ]
    assert [entry for entry, _ in got] == later
    assert all(content == files[entry.path] for entry, content in got)
    # As the import's apply step resumes: a scan of only the binaries left, no manifest, no YAML.
    resumed = ScannedArchive(archive_format, scanned.top, {}, later[1:], {})
    wanted = {entry.path: entry for entry in later[1:]}
    got = [
        (entry, reader.read())
        for entry, reader in iter_files(opener(data, archive_format), resumed, wanted, later[1].index)
    ]
    assert [entry for entry, _ in got] == later[1:]
    assert all(content == files[entry.path] for entry, content in got)
    # Partly read, or not read at all: the next file is still right.
    it = iter_files(opener(data, archive_format), scanned, {b.path for b in binaries})
    first_entry, first = next(it)
    assert first.read(10) == files[first_entry.path][:10]
    second_entry, second = next(it)
    assert second.read() == files[second_entry.path]


def _contents(data: bytes, archive_format: ArchiveFormat) -> list[bytes]:
    return list(archive_files(data, archive_format.value).values())[:-1]


@pytest.mark.parametrize("archive_format", FORMATS)
def test_iter_files_refuses_an_archive_that_is_not_the_one_scanned(
    archive_format: ArchiveFormat, small: Small
) -> None:
    logo = small.path("/logo/acme-logo.png")
    scanned = scan(write(small.members(), archive_format), archive_format)
    changed = dict(small.files)
    changed[logo] = bytes(len(changed[logo]))  # same size, other bytes: the archive was replaced
    other = write(
        [
            *(Member(n, d) for n, d in changed.items()),
            Member(f"{small.top}/manifest.yaml", small.manifest(changed)),
        ],
        archive_format,
    )
    files = iter_files(opener(other, archive_format), scanned, [relative(small, logo)])
    entry, reader = next(files)
    with pytest.raises(ArchiveRefused) as refused:
        reader.read()
    assert [(p.code, p.path) for p in refused.value.problems] == [("changed", relative(small, logo))]
    assert entry.path == relative(small, logo)
    # A file in another place of the archive: refused before any byte is read.
    moved = [*small.members()[1:-1], small.members()[0], small.members()[-1]]
    with pytest.raises(ArchiveRefused) as refused:
        list(
            iter_files(opener(write(moved, archive_format), archive_format), scanned, [relative(small, logo)])
        )
    assert [(p.code, p.path) for p in refused.value.problems] == [("changed", relative(small, logo))]


@pytest.mark.parametrize("archive_format", FORMATS)
def test_the_writers_other_forms_are_read(archive_format: ArchiveFormat) -> None:
    """Zip: data descriptors, stored deflate blocks, deflate on the fly, Zip64 records; tar.gz: PAX names
    and incompressible content as stored blocks. Checked against a manifest like the builder's."""
    rng = random.Random(3)
    top = "shop-export-" + JOB_ID
    files = {
        f"{top}/products/p/images/photo.jpg": rng.randbytes(300_000),
        f"{top}/products/p/documents/" + "spec sheet é " * 12 + ".pdf": b"%PDF-1.4 " * 40_000,
        f"{top}/products/p.yaml": b"id: p\nname: Kettle\n",
        f"{top}/products/empty.txt": b"",
    }
    sink = io.BytesIO()
    if archive_format is ArchiveFormat.ZIP:
        with ZipStreamWriter(sink, force_zip64=True) as writer:
            for index, (name, data) in enumerate(files.items()):
                chunks = [data[i : i + 50_000] for i in range(0, len(data), 50_000)]
                writer.add_stream(
                    name, chunks, size_hint=None if index else len(data), mtime=MTIME, compress=index == 1
                )
            listed = ManifestFiles(top)
            listed.add(file_of(name, data) for name, data in files.items())
            writer.add_bytes(
                f"{top}/manifest.yaml", manifest_yaml({"format_version": "1.0"}, listed), mtime=MTIME
            )
        with zipfile.ZipFile(sink) as check:
            assert all(info.flag_bits & 0x8 for info in check.infolist()[:-1])  # data descriptors
    else:
        with TarGzStreamWriter(sink) as writer:
            for name, data in files.items():
                writer.add_stream(name, [data], size=len(data), mtime=MTIME)
            listed = ManifestFiles(top)
            listed.add(file_of(name, data) for name, data in files.items())
            writer.add_bytes(
                f"{top}/manifest.yaml", manifest_yaml({"format_version": "1.0"}, listed), mtime=MTIME
            )
    data = sink.getvalue()
    scanned = scan(data, archive_format)
    assert [entry.path for entry in scanned.entries] == [name.removeprefix(f"{top}/") for name in files]
    read = {
        e.path: r.read()
        for e, r in iter_files(opener(data, archive_format), scanned, [e.path for e in scanned.entries])
    }
    assert read == {name.removeprefix(f"{top}/"): content for name, content in files.items()}


# -- hostile and broken archives --------------------------------------------------------------------------


@pytest.mark.parametrize("archive_format", FORMATS)
def test_the_small_export_is_accepted(archive_format: ArchiveFormat, small: Small) -> None:
    scanned = scan(write(small.members(), archive_format), archive_format)
    assert [entry.path for entry in scanned.entries] == [relative(small, name) for name in small.files]


def with_extra(small: Small, *extra: Member, listed: bool = False) -> list[Member]:
    """The small export with ``extra`` entries before the manifest (listed in it or not)."""
    files = {**small.files, **{m.name: m.data for m in extra if m.kind == "file"}} if listed else None
    members = small.members(files)
    return [*members[:-1], *extra, members[-1]]


@pytest.mark.parametrize("archive_format", FORMATS)
@pytest.mark.parametrize(
    ("name", "code", "path"),
    [
        ("{top}/../x.yaml", "traversal", "../x.yaml"),
        ("../x", "traversal", "../x"),
        ("{top}/members/./x.yaml", "traversal", "members/./x.yaml"),
        ("{top}/members//x.yaml", "traversal", "members//x.yaml"),
        ("{top}/members\\..\\..\\x.yaml", "traversal", "members\\..\\..\\x.yaml"),
        ("{top}/members/new\nline.yaml", "traversal", "members/new\\nline.yaml"),
        ("/etc/passwd", "absolute_path", "/etc/passwd"),
        ("C:/Windows/x.dll", "absolute_path", "C:/Windows/x.dll"),
        ("elsewhere/x.yaml", "outside_top", "elsewhere/x.yaml"),
    ],
)
def test_unsafe_names_are_refused(
    archive_format: ArchiveFormat, small: Small, name: str, code: str, path: str
) -> None:
    members = with_extra(small, Member(name.format(top=small.top), b"id: x\n"))
    assert refusal(write(members, archive_format), archive_format) == [(code, path)]


@pytest.mark.parametrize("archive_format", FORMATS)
def test_a_name_past_the_limit_is_refused(archive_format: ArchiveFormat, small: Small) -> None:
    members = with_extra(small, Member(f"{small.top}/members/{'x' * 300}.yaml", b"id: x\n"), listed=True)
    data = write(members, archive_format)
    assert refusal(data, archive_format, ImportLimits(max_path_bytes=200)) == [
        ("too_large", f"members/{'x' * 300}.yaml")
    ]
    scan(data, archive_format)


@pytest.mark.parametrize(
    ("archive_format", "kind", "code"),
    [
        (ArchiveFormat.ZIP, "symlink", "link"),
        (ArchiveFormat.TAR_GZ, "symlink", "link"),
        (ArchiveFormat.TAR_GZ, "hardlink", "link"),
        (ArchiveFormat.TAR_GZ, "fifo", "special_file"),
        (ArchiveFormat.TAR_GZ, "chardev", "special_file"),
        (ArchiveFormat.ZIP, "fifo", "special_file"),
    ],
)
def test_links_and_special_files_are_refused(
    archive_format: ArchiveFormat, kind: str, code: str, small: Small
) -> None:
    target = "/etc/passwd" if kind == "symlink" else small.path("organization.yaml")
    members = with_extra(small, Member(f"{small.top}/products/x.yaml", kind=kind, target=target))
    assert refusal(write(members, archive_format), archive_format) == [(code, "products/x.yaml")]


@pytest.mark.parametrize("archive_format", FORMATS)
def test_folders_are_skipped(archive_format: ArchiveFormat, small: Small) -> None:
    members = small.members()
    with_folders = [Member(small.top, kind="dir"), Member(f"{small.top}/members", kind="dir"), *members]
    assert (
        scan(write(with_folders, archive_format), archive_format).entries
        == scan(write(members, archive_format), archive_format).entries
    )
    outside = [Member("elsewhere", kind="dir"), *members]
    assert refusal(write(outside, archive_format), archive_format) == [("outside_top", "elsewhere")]


@pytest.mark.parametrize("archive_format", FORMATS)
def test_a_path_twice_is_refused(archive_format: ArchiveFormat, small: Small) -> None:
    record = small.path("organization.yaml")
    twice = with_extra(small, Member(record, small.files[record]))
    assert refusal(write(twice, archive_format), archive_format) == [
        ("duplicate_path", relative(small, record))
    ]
    # The same name in another Unicode normal form: one file once extracted on macOS, say.
    composed = f"{small.top}/products/café.yaml"
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    both = with_extra(small, Member(composed, b"a"), Member(decomposed, b"b"), listed=True)
    assert refusal(write(both, archive_format), archive_format) == [
        ("duplicate_path", relative(small, decomposed))
    ]


def zeros(size: int, level: int = 9) -> Iterator[bytes]:
    """``size`` zero bytes deflated (raw), in pieces, never all in memory at once."""
    deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = bytes(1 << 20)
    for _ in range(size >> 20):
        yield deflate.compress(block)
    yield deflate.flush()


def test_a_zip_bomb_is_refused_before_it_is_inflated(small: Small) -> None:
    size = 100 << 20
    bomb = f"{small.top}/products/p/images/bomb.png"
    payload = b"".join(zeros(size))
    assert len(payload) < size // 500
    # A STORED header, then the central directory, patched to DEFLATED: no 100 MiB in memory.
    members = with_extra(small, Member(bomb, payload, stored=True))
    data = bytearray(write_zip(members))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo(bomb)
    crc = zlib.crc32(bytes(size))
    _patch_entry(data, info, method=8, crc=crc, size=size)
    assert refusal(bytes(data), ArchiveFormat.ZIP) == [("compression_ratio", relative(small, bomb))]


def _patch_entry(
    data: bytearray,
    info: zipfile.ZipInfo,
    *,
    method: int | None = None,
    crc: int | None = None,
    size: int | None = None,
    compressed: int | None = None,
    flags: int | None = None,
) -> None:
    """Rewrite an entry's method, CRC-32, sizes or flags in its local and central headers."""
    name = info.filename.encode()
    for at, offsets in (
        (info.header_offset, {"flags": 6, "method": 8, "crc": 14, "compressed": 18, "size": 22}),
        (_central_at(data, name), {"flags": 8, "method": 10, "crc": 16, "compressed": 20, "size": 24}),
    ):
        if flags is not None:
            struct.pack_into("<H", data, at + offsets["flags"], flags)
        if method is not None:
            struct.pack_into("<H", data, at + offsets["method"], method)
        if crc is not None:
            struct.pack_into("<I", data, at + offsets["crc"], crc)
        if size is not None:
            struct.pack_into("<I", data, at + offsets["size"], size)
        if compressed is not None:
            struct.pack_into("<I", data, at + offsets["compressed"], compressed)


def _central_at(data: bytearray, name: bytes) -> int:
    at = data.index(b"PK\x01\x02")
    while True:
        name_size = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46 : at + 46 + name_size] == name:
            return at
        at = data.index(b"PK\x01\x02", at + 46)


def test_a_gzip_bomb_is_refused_as_it_inflates(small: Small) -> None:
    size = 100 << 20
    bomb = f"{small.top}/products/p/images/bomb.png"
    header = tarfile.TarInfo(bomb)
    header.size, header.mtime = size, int(MTIME)
    tar = [header.tobuf(tarfile.PAX_FORMAT)]
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    gz = [deflate.compress(b"".join(tar))]
    block = bytes(1 << 20)
    gz.extend(deflate.compress(block) for _ in range(size >> 20))
    gz.append(deflate.compress(bytes(1024)))
    gz.append(deflate.flush())
    data = b"".join(gz)
    assert refusal(data, ArchiveFormat.TAR_GZ) == [("compression_ratio", relative(small, bomb))]


@pytest.mark.parametrize("archive_format", FORMATS)
def test_too_many_entries_are_refused(archive_format: ArchiveFormat, small: Small) -> None:
    data = write(small.members(), archive_format)
    assert refusal(data, archive_format, ImportLimits(max_entries=5)) == [("too_many_entries", None)]
    assert scan(data, archive_format, ImportLimits(max_entries=len(small.files) + 1)).entries


@pytest.mark.parametrize("archive_format", FORMATS)
def test_files_past_the_size_limits_are_refused(archive_format: ArchiveFormat, small: Small) -> None:
    data = write(small.members(), archive_format)
    logo = small.path("/logo/acme-logo.png")
    biggest = max(len(content) for content in small.files.values())
    assert len(small.files[logo]) == biggest
    assert refusal(data, archive_format, ImportLimits(max_entry_bytes=biggest - 1)) == [
        ("too_large", relative(small, logo))
    ]
    assert refusal(data, archive_format, ImportLimits(max_total_bytes=biggest)) == [("too_large", None)]
    records = {name: len(content) for name, content in small.files.items() if name.endswith(".yaml")}
    record = max(records, key=lambda name: records[name])
    assert refusal(data, archive_format, ImportLimits(max_yaml_bytes=records[record] - 1)) == [
        ("too_large", relative(small, record))
    ]


@pytest.mark.parametrize("archive_format", FORMATS)
def test_a_changed_file_is_refused(archive_format: ArchiveFormat, small: Small) -> None:
    record = small.path("organization.yaml")
    files = dict(small.files)
    content = files[record]
    files[record] = content.replace(b"Acme", b"Evil")  # same size, other bytes; the manifest unchanged
    assert len(files[record]) == len(content) and files[record] != content
    members = [
        *(Member(n, d) for n, d in files.items()),
        Member(f"{small.top}/manifest.yaml", small.manifest()),
    ]
    assert refusal(write(members, archive_format), archive_format) == [("tampered", relative(small, record))]
    files[record] = content + b"extra: true\n"
    members = [
        *(Member(n, d) for n, d in files.items()),
        Member(f"{small.top}/manifest.yaml", small.manifest()),
    ]
    assert refusal(write(members, archive_format), archive_format) == [
        ("size_mismatch", relative(small, record))
    ]


def test_a_zip_entry_that_fails_its_crc_is_refused(small: Small) -> None:
    logo = small.path("/logo/acme-logo.png")
    members = small.members()
    for member in members:
        member.stored = True
    data = bytearray(write_zip(members))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo(logo)
    data[info.header_offset + 30 + len(logo.encode()) + len(info.extra) + 1000] ^= 0xFF
    assert refusal(bytes(data), ArchiveFormat.ZIP) == [("tampered", relative(small, logo))]


@pytest.mark.parametrize("archive_format", FORMATS)
def test_files_and_manifest_must_match(archive_format: ArchiveFormat, small: Small) -> None:
    extra = Member(f"{small.top}/members/intruder.yaml", b"id: intruder\n")
    assert refusal(write(with_extra(small, extra), archive_format), archive_format) == [
        ("not_in_manifest", "members/intruder.yaml")
    ]
    record = small.path("organization.yaml")
    without = [member for member in small.members() if member.name != record]
    assert refusal(write(without, archive_format), archive_format) == [
        ("missing_file", relative(small, record))
    ]


@pytest.mark.parametrize("archive_format", FORMATS)
def test_the_manifest_must_be_there_last_and_of_format_1(archive_format: ArchiveFormat, small: Small) -> None:
    members = small.members()
    assert refusal(write(members[:-1], archive_format), archive_format) == [("no_manifest", "manifest.yaml")]
    first = [members[-1], *members[:-1]]
    assert refusal(write(first, archive_format), archive_format) == [("bad_manifest", "manifest.yaml")]
    foreign = [*members[:-1], Member(members[-1].name, small.manifest(format_version="2.0"))]
    with pytest.raises(ArchiveRefused) as refused:
        scan(write(foreign, archive_format), archive_format)
    assert refused.value.problems == [
        ArchiveProblem(
            code="format_version",
            path="manifest.yaml",
            message="the manifest has format_version '2.0'; this service reads format 1.x (it writes 1.0)",
        )
    ]
    newer = [*members[:-1], Member(members[-1].name, small.manifest(format_version="1.7"))]
    assert scan(write(newer, archive_format), archive_format).manifest["format_version"] == "1.7"
    for broken in (b"files: [\n", b"- a list\n", b"format_version: '1.0'\nfiles:\n  - path: x\n"):
        bad = [*members[:-1], Member(members[-1].name, broken)]
        assert refusal(write(bad, archive_format), archive_format) == [("bad_manifest", "manifest.yaml")]


@pytest.mark.parametrize("archive_format", FORMATS)
def test_a_truncated_upload_is_refused(
    archive_format: ArchiveFormat, exports: dict[ArchiveFormat, bytes]
) -> None:
    data = exports[archive_format]
    problems = refusal(data[: len(data) // 2], archive_format)
    assert [code for code, _ in problems] == ["truncated"]


@pytest.mark.parametrize("archive_format", FORMATS)
def test_random_bytes_are_not_an_archive(archive_format: ArchiveFormat) -> None:
    data = random.Random(11).randbytes(100_000)
    assert detect_format(data[:8]) is None
    assert refusal(data, archive_format) == [("not_an_archive", None)]
    assert refusal(b"", archive_format) == [("not_an_archive", None)]


def test_an_encrypted_zip_entry_is_refused(small: Small) -> None:
    record = small.path("organization.yaml")
    data = bytearray(write(small.members(), ArchiveFormat.ZIP))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo(record)
    _patch_entry(data, info, flags=info.flag_bits | 0x1)
    assert refusal(bytes(data), ArchiveFormat.ZIP) == [("encrypted", relative(small, record))]


def test_a_problem_list_stops_at_100(small: Small) -> None:
    extra = [Member(f"{small.top}/members/x{index}.yaml", b"x") for index in range(150)]
    problems = refusal(write(with_extra(small, *extra), ArchiveFormat.ZIP), ArchiveFormat.ZIP)
    assert len(problems) == 100 and {code for code, _ in problems} == {"not_in_manifest"}


def test_problems_are_reported_together(small: Small) -> None:
    record = small.path("organization.yaml")
    members = with_extra(
        small, Member(f"{small.top}/../x"), Member(f"{small.top}/l", kind="symlink", target="/")
    )
    members = [member for member in members if member.name != record]
    assert refusal(write(members, ArchiveFormat.ZIP), ArchiveFormat.ZIP) == [
        ("traversal", "../x"),
        ("link", "l"),
        ("missing_file", relative(small, record)),
    ]


def test_refusal_reads_as_one_line() -> None:
    refused = ArchiveRefused(
        [ArchiveProblem(code="traversal", path="../x", message="a"), ArchiveProblem(code="link", message="b")]
    )
    assert str(refused) == "archive refused: traversal (../x): a; and 1 more problem(s)"


@pytest.mark.parametrize("archive_format", FORMATS)
def test_an_archive_of_the_folders_contents_is_told_so(archive_format: ArchiveFormat, small: Small) -> None:
    flat = [Member(relative(small, member.name), member.data) for member in small.members()]
    assert refusal(write(flat, archive_format), archive_format) == [("outside_top", "manifest.yaml")]


def test_a_zip_entry_that_inflates_past_its_declared_size_is_stopped_there(small: Small) -> None:
    record = small.path("organization.yaml")
    data = bytearray(write(small.members(), ArchiveFormat.ZIP))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo(record)
    _patch_entry(data, info, size=10)
    assert refusal(bytes(data), ArchiveFormat.ZIP) == [("tampered", relative(small, record))]


def tar_bytes(members: list[Member]) -> bytes:
    sink = io.BytesIO()
    with tarfile.open(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.size, info.mtime = len(member.data), int(MTIME)
            archive.addfile(info, io.BytesIO(member.data))
    return sink.getvalue()


def test_gzip_framing_that_readers_accept_is_accepted(small: Small) -> None:
    tar = tar_bytes(small.members())
    scanned = scan(write_tar(small.members()), ArchiveFormat.TAR_GZ)
    without_end = tar.rstrip(b"\x00")
    without_end += bytes(-len(without_end) % tarfile.BLOCKSIZE)  # the last member whole, no end blocks
    half = len(tar) // 2
    for accepted in (
        zlib.compress(without_end, wbits=31),
        zlib.compress(tar[:half], wbits=31) + zlib.compress(tar[half:], wbits=31),  # two gzip members
        zlib.compress(tar, wbits=31) + bytes(5000),  # zeros after the stream, as gzip itself ignores
    ):
        assert scan(accepted, ArchiveFormat.TAR_GZ) == scanned
    assert refusal(zlib.compress(tar, wbits=31) + b"junk", ArchiveFormat.TAR_GZ) == [("not_an_archive", None)]
    corrupt = bytearray(zlib.compress(tar, wbits=31))
    corrupt[-6] ^= 0xFF  # the trailer's CRC-32
    assert refusal(bytes(corrupt), ArchiveFormat.TAR_GZ) == [("tampered", None)]


def test_tar_headers_that_tarfile_would_read_whole_are_limited(small: Small) -> None:
    pax = tarfile.TarInfo("PaxHeader")
    pax.type, pax.size = tarfile.XHDTYPE, 2 << 20
    data = pax.tobuf(tarfile.USTAR_FORMAT) + b"9 a=b\n" * ((2 << 20) // 6) + tar_bytes(small.members())
    assert refusal(zlib.compress(data, wbits=31), ArchiveFormat.TAR_GZ) == [("too_large", None)]
    sparse = tarfile.TarInfo(f"{small.top}/products/sparse.bin")
    sparse.type = tarfile.GNUTYPE_SPARSE
    members = small.members()
    head = tar_bytes(members[:-1]).rstrip(b"\x00")
    head += bytes(-len(head) % tarfile.BLOCKSIZE)
    data = head + sparse.tobuf(tarfile.GNU_FORMAT) + tar_bytes(members[-1:])
    assert refusal(zlib.compress(data, wbits=31), ArchiveFormat.TAR_GZ) == [
        ("special_file", "products/sparse.bin")
    ]


def test_overlapping_zip_entries_are_refused(small: Small) -> None:
    """The non-recursive zip bomb: entries whose data overlap, so that the same bytes inflate many times."""
    logo = small.path("/logo/acme-logo.png")
    data = bytearray(write(small.members(), ArchiveFormat.ZIP))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        infos = archive.infolist()
    assert infos[0].filename == logo
    _patch_entry(data, infos[0], compressed=infos[0].compress_size + 200)  # runs into the next entry
    assert refusal(bytes(data), ArchiveFormat.ZIP) == [("compression_ratio", relative(small, logo))]
    data = bytearray(write(small.members(), ArchiveFormat.ZIP))
    second = _central_at(data, infos[1].filename.encode())
    struct.pack_into("<I", data, second + 42, infos[0].header_offset)  # two entries, one local header
    assert refusal(bytes(data), ArchiveFormat.ZIP) == [("compression_ratio", relative(small, logo))]


def test_a_tar_that_stops_short_is_truncated(small: Small) -> None:
    tar = tar_bytes(small.members())
    second_header = tarfile.BLOCKSIZE * (2 + -(-len(next(iter(small.files.values()))) // tarfile.BLOCKSIZE))
    for cut in (second_header + 100, second_header - 100):  # inside a file's data, inside a header
        assert [code for code, _ in refusal(zlib.compress(tar[:cut], wbits=31), ArchiveFormat.TAR_GZ)] == [
            "truncated"
        ]
    noise = zlib.compress(random.Random(5).randbytes(5000), wbits=31)
    assert refusal(noise, ArchiveFormat.TAR_GZ) == [("not_an_archive", None)]
