"""Records sections: YAML + compression + archive entry, in records/s, against a peer and a ceiling.

- ours: ``yaml_emit.dump_record`` into ``ZipStreamWriter.add_bytes`` / ``TarGzStreamWriter.add_bytes``. The
  emitter's string caches are emptied before every run: a worker meets each record's ids and text for the
  first time (keys and enumerations are cached again within the run, as in production).
- peer: PyYAML's libyaml ``CSafeDumper`` into stdlib ``zipfile`` (deflate, level 6) / ``tarfile`` ``w|gz``.
- ceiling: ``orjson.dumps`` and the same deflate call on its output, no archive at all (zip: one raw deflate
  per record, as zip entries are compressed one by one; tar.gz: one gzip stream).

Every timed output is checked: each archive is opened (``zipfile``, ``tarfile``) and every record loaded back
with PyYAML (``CSafeLoader``) must equal its source; the ceiling's JSON is inflated and loaded by orjson.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
import zlib
from collections.abc import Sequence
from typing import Any

import orjson
import yaml
from data_export import yaml_emit
from data_export.archive.compression import get_backend
from data_export.archive.tar import TarGzStreamWriter
from data_export.archive.zip import ZipStreamWriter
from data_export.yaml_emit import dump_record

from benchmarks.harness import Comparison, Contender, Output, check, compare
from benchmarks.inputs import TOP
from benchmarks.sinks import PartSink

MTIME = 1_700_000_000


def pyyaml_dump(record: dict[str, Any]) -> bytes:
    # The readable block style our emitter writes, with the fastest PyYAML emitter there is.
    text: str = yaml.dump(record, Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=True)
    return text.encode("utf-8")


def empty_emitter_caches() -> None:
    """What a fresh worker starts with: no string rendered yet."""
    yaml_emit._key_cache.clear()
    yaml_emit._str_cache.clear()


def record_names(records: Sequence[dict[str, Any]]) -> list[str]:
    return [f"{TOP}/products/{record.get('id', index)}-{index}.yaml" for index, record in enumerate(records)]


def load_yaml(document: bytes) -> Any:
    return yaml.load(document, Loader=yaml.CSafeLoader)


class RecordChecks:
    """Verifiers of each kind of output, against the source records."""

    def __init__(self, records: Sequence[dict[str, Any]], names: Sequence[str]) -> None:
        self.records, self.names = records, names

    def _same(self, index: int, loaded: Any, what: str) -> None:
        check(loaded == self.records[index], f"{what}: {self.names[index]} does not load back to its record")

    def documents(self, documents: list[bytes]) -> int:
        check(len(documents) == len(self.records), f"{len(documents)} documents for {len(self.records)}")
        for index, document in enumerate(documents):
            self._same(index, load_yaml(document), "YAML")
        return sum(map(len, documents))

    def json_documents(self, documents: list[bytes]) -> int:
        check(len(documents) == len(self.records), f"{len(documents)} documents for {len(self.records)}")
        for index, document in enumerate(documents):
            self._same(index, orjson.loads(document), "JSON")
        return sum(map(len, documents))

    def zip_archive(self, archive: bytes) -> int:
        with zipfile.ZipFile(io.BytesIO(archive)) as opened:
            check(opened.namelist() == list(self.names), "zip: not the expected entries, in order")
            for index, name in enumerate(self.names):
                self._same(index, load_yaml(opened.read(name)), "zip")
        return len(archive)

    def tar_archive(self, archive: bytes) -> int:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as opened:
            members = opened.getmembers()
            check([m.name for m in members] == list(self.names), "tar.gz: not the expected entries, in order")
            for index, member in enumerate(members):
                extracted = opened.extractfile(member)
                check(extracted is not None, f"tar.gz: {member.name} is not a file")
                assert extracted is not None
                self._same(index, load_yaml(extracted.read()), "tar.gz")
        return len(archive)

    def deflated_json(self, blobs: list[bytes]) -> int:
        self.json_documents([zlib.decompress(blob, -15) for blob in blobs])
        return sum(map(len, blobs))

    def gzip_json_lines(self, stream: bytes) -> int:
        self.json_documents(zlib.decompress(stream, 31).splitlines())
        return len(stream)


def run(records: Sequence[dict[str, Any]], *, rounds: int, label: str) -> list[Comparison]:
    count = len(records)
    names = record_names(records)
    checks = RecordChecks(records, names)
    pairs = list(zip(records, names, strict=True))
    backend = get_backend()

    def yaml_ours() -> Output:
        return Output(count, [dump_record(record) for record in records])

    def yaml_pyyaml() -> Output:
        return Output(count, [pyyaml_dump(record) for record in records])

    def yaml_orjson() -> Output:
        return Output(count, [orjson.dumps(record) for record in records])

    def zip_ours() -> Output:
        sink = PartSink()
        with ZipStreamWriter(sink) as writer:
            for record, name in pairs:
                writer.add_bytes(name, dump_record(record), mtime=MTIME)
        return Output(count, sink)

    def zip_peer() -> Output:
        sink = PartSink()
        with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as archive:
            for record, name in pairs:
                info = zipfile.ZipInfo(name, date_time=(2023, 11, 14, 22, 13, 20))
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, pyyaml_dump(record))
        return Output(count, sink)

    def zip_ceiling() -> Output:
        deflate = backend.deflate
        return Output(count, [deflate(orjson.dumps(record)) for record in records])

    def tar_ours() -> Output:
        sink = PartSink()
        with TarGzStreamWriter(sink) as writer:
            for record, name in pairs:
                writer.add_bytes(name, dump_record(record), mtime=MTIME)
        return Output(count, sink)

    def tar_peer() -> Output:
        sink = PartSink()
        with tarfile.open(fileobj=sink, mode="w|gz") as archive:  # type: ignore[call-overload]
            for record, name in pairs:
                content = pyyaml_dump(record)
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(content), MTIME
                archive.addfile(info, io.BytesIO(content))
        return Output(count, sink)

    def tar_ceiling() -> Output:
        sink, compressor = PartSink(), backend.gzip_member()
        for record in records:
            sink.write(compressor.compress(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)))
        sink.write(compressor.flush())
        return Output(count, sink)

    def archive(verify: Any) -> Any:
        return lambda sink: verify(sink.getvalue())

    size = sum(len(dump_record(r)) for r in records) // max(1, count)
    return [
        compare(
            "YAML emission alone",
            "records",
            [
                Contender("yaml_emit.dump_record", "ours", yaml_ours, checks.documents, empty_emitter_caches),
                Contender("PyYAML CSafeDumper", "peer", yaml_pyyaml, checks.documents),
                Contender("orjson.dumps (JSON)", "ceiling", yaml_orjson, checks.json_documents),
            ],
            rounds=rounds,
            notes=f"{label}; ~{size} bytes of YAML each",
        ),
        compare(
            "Records -> zip",
            "records",
            [
                Contender(
                    "ours: yaml_emit + ZipStreamWriter",
                    "ours",
                    zip_ours,
                    archive(checks.zip_archive),
                    empty_emitter_caches,
                ),
                Contender(
                    "PyYAML CSafeDumper + zipfile deflate (level 6)",
                    "peer",
                    zip_peer,
                    archive(checks.zip_archive),
                ),
                Contender(
                    f"orjson + {backend.name} deflate level 1, no archive",
                    "ceiling",
                    zip_ceiling,
                    checks.deflated_json,
                ),
            ],
            rounds=rounds,
            notes=f"{label}; {backend.name} deflate, zlib-scale level 1 (ours and ceiling); zipfile level 6",
        ),
        compare(
            "Records -> tar.gz",
            "records",
            [
                Contender(
                    "ours: yaml_emit + TarGzStreamWriter",
                    "ours",
                    tar_ours,
                    archive(checks.tar_archive),
                    empty_emitter_caches,
                ),
                Contender(
                    "PyYAML CSafeDumper + tarfile w|gz (level 9)",
                    "peer",
                    tar_peer,
                    archive(checks.tar_archive),
                ),
                Contender(
                    f"orjson + one {backend.name} gzip stream (level 1)",
                    "ceiling",
                    tar_ceiling,
                    archive(checks.gzip_json_lines),
                ),
            ],
            rounds=rounds,
            notes=f"{label}; one gzip stream: compression is cheap per record, headers and YAML dominate",
        ),
    ]
