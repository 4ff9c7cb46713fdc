"""Records sections: YAML + compression + archive entry, in records/s, against a peer and a ceiling.

- ours: ``yaml_emit.dump_record`` into ``ZipStreamWriter.add_bytes`` / ``TarGzStreamWriter.add_bytes``.
- peer: PyYAML's libyaml ``CSafeDumper`` into stdlib ``zipfile`` (deflate) / ``tarfile`` ``w|gz``.
- ceiling: ``orjson.dumps`` and the same deflate call on its output, no archive at all (zip: one
  raw deflate per record, as zip entries are compressed one by one; tar.gz: one gzip stream).
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from typing import Any

import orjson
import yaml
from data_export.archive.compression import get_backend
from data_export.archive.tar import TarGzStreamWriter
from data_export.archive.zip import ZipStreamWriter
from data_export.yaml_emit import dump_record

from benchmarks import data
from benchmarks.harness import Comparison, Contender, compare
from benchmarks.sinks import PartSink

MTIME = 1_700_000_000


def pyyaml_dump(record: dict[str, Any]) -> bytes:
    # The readable block style our emitter writes, with the fastest PyYAML emitter there is.
    text: str = yaml.dump(record, Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=True)
    return text.encode("utf-8")


def verify(records: list[dict[str, Any]], names: list[str]) -> None:
    """What is measured must be right: entries open with zipfile and load back to the records."""
    sink = io.BytesIO()
    with ZipStreamWriter(sink) as writer:
        for record, name in zip(records[:200], names, strict=False):
            writer.add_bytes(name, dump_record(record), mtime=MTIME)
    with zipfile.ZipFile(sink) as archive:
        for record, name in zip(records[:200], names, strict=False):
            if yaml.load(archive.read(name), Loader=yaml.CSafeLoader) != record:
                raise AssertionError(f"{name} does not load back to its record")


def run(*, count: int, rounds: int) -> list[Comparison]:
    records = data.records(count)
    names = data.record_names(records)
    verify(records, names)
    pairs = list(zip(records, names, strict=True))
    backend = get_backend()

    def yaml_ours() -> int:
        for record in records:
            dump_record(record)
        return count

    def yaml_pyyaml() -> int:
        for record in records:
            pyyaml_dump(record)
        return count

    def yaml_orjson() -> int:
        for record in records:
            orjson.dumps(record)
        return count

    def zip_ours() -> int:
        with ZipStreamWriter(PartSink()) as writer:
            for record, name in pairs:
                writer.add_bytes(name, dump_record(record), mtime=MTIME)
        return count

    def zip_peer() -> int:
        with zipfile.ZipFile(PartSink(), "w", zipfile.ZIP_DEFLATED) as archive:
            for record, name in pairs:
                info = zipfile.ZipInfo(name, date_time=(2023, 11, 14, 22, 13, 20))
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, pyyaml_dump(record))
        return count

    def zip_ceiling() -> int:
        deflate = backend.deflate
        for record in records:
            deflate(orjson.dumps(record))
        return count

    def tar_ours() -> int:
        with TarGzStreamWriter(PartSink()) as writer:
            for record, name in pairs:
                writer.add_bytes(name, dump_record(record), mtime=MTIME)
        return count

    def tar_peer() -> int:
        with tarfile.open(fileobj=PartSink(), mode="w|gz") as archive:  # type: ignore[call-overload]
            for record, name in pairs:
                content = pyyaml_dump(record)
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(content), MTIME
                archive.addfile(info, io.BytesIO(content))
        return count

    def tar_ceiling() -> int:
        compressor = backend.gzip_member()
        for record in records:
            compressor.compress(orjson.dumps(record))
        compressor.flush()
        return count

    size = sum(len(dump_record(r)) for r in records) // count
    return [
        compare(
            "YAML emission alone",
            "records",
            [
                Contender("yaml_emit.dump_record", "ours", yaml_ours),
                Contender("PyYAML CSafeDumper", "peer", yaml_pyyaml),
                Contender("orjson.dumps (JSON)", "ceiling", yaml_orjson),
            ],
            rounds=rounds,
            notes=f"{count} product records, ~{size} bytes of YAML each",
        ),
        compare(
            "Records -> zip",
            "records",
            [
                Contender("ours: yaml_emit + ZipStreamWriter", "ours", zip_ours),
                Contender("PyYAML CSafeDumper + zipfile deflate", "peer", zip_peer),
                Contender(f"orjson + {backend.name} deflate", "ceiling", zip_ceiling),
            ],
            rounds=rounds,
            notes=f"{backend.name} deflate, zlib-scale level 1 (ours and ceiling); zipfile level 6",
        ),
        compare(
            "Records -> tar.gz",
            "records",
            [
                Contender("ours: yaml_emit + TarGzStreamWriter", "ours", tar_ours),
                Contender("PyYAML CSafeDumper + tarfile w|gz", "peer", tar_peer),
                Contender(f"orjson + {backend.name} gzip stream", "ceiling", tar_ceiling),
            ],
            rounds=rounds,
            notes="one gzip stream: compression is cheap per record, headers and YAML dominate",
        ),
    ]
