"""Integrity pieces without AWS: the entries layer's file list against what zipfile/tarfile read back, the
manifest document against docs/manifest.schema.json (and the schema's strictness), and the work totals."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
import yaml
from data_export.export import entries as entries_module
from data_export.export.builder import ManifestFiles, manifest_document, manifest_yaml
from data_export.export.entries import ArchiveFile, open_entries
from data_export.export.plan import WorkTotals, WorkUnit, measure, record_weight, unit_totals
from data_export.export.sections import MissingAsset
from data_export.jobs import Job
from data_export.models import SECTION_KEYS, ArchiveFormat, JobStatus, SectionReport
from data_export.storage.objects import Asset
from data_export.yaml_emit import dump_document

from tests.archive_checks import MANIFEST_SCHEMA, archive_files

JOB_ID = "S8yfMT73Q29pRJaQ7Y3QM9"
ORG_ID = "eHcFM2wk4RdyYG8yMrTGbQ"
TOP = f"acme-export-{JOB_ID}"


def asset(data: bytes, chunk: int = 1000) -> Asset:
    return Asset(size=len(data), chunks=iter([data[i : i + chunk] for i in range(0, len(data), chunk)]))


@pytest.mark.parametrize("archive_format", list(ArchiveFormat))
def test_entries_list_every_file_as_written(
    archive_format: ArchiveFormat, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(entries_module, "BUFFERED_ASSET_LIMIT", 4096)  # the streamed zip path too
    contents = {
        f"{TOP}/members/a.yaml": b"id: a\nname: Ann\n",
        f"{TOP}/products/p/images/small.jpg": os.urandom(3000),
        f"{TOP}/products/p/images/big.jpg": os.urandom(70_000),
        f"{TOP}/products/p/documents/empty.pdf": b"",
        f"{TOP}/products/p.yaml": b"id: p\n" * 500,
    }
    sink = io.BytesIO()
    entries = open_entries(archive_format, sink, datetime(2026, 1, 2, tzinfo=UTC))
    for name, data in contents.items():
        if name.endswith(".yaml"):
            entries.add_file(name, data)
        else:
            entries.add_asset(name, asset(data))
    entries.close()
    read_back = archive_files(sink.getvalue(), archive_format.value)
    assert read_back == contents
    assert entries.files == [
        ArchiveFile(name, len(data), hashlib.sha256(data).hexdigest()) for name, data in read_back.items()
    ]


def job(archive_format: ArchiveFormat = ArchiveFormat.ZIP) -> Job:
    new = Job.new(
        organization_id=ORG_ID,
        job_id=JOB_ID,
        archive_format=archive_format,
        output_filename=f"{TOP}.{archive_format.extension}",
        created_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        retention_days=7,
    )
    new.sections = [
        SectionReport(key=key, status=JobStatus.COMPLETED, record_count=1) for key in SECTION_KEYS
    ]
    return new


def manifest(files: list[ArchiveFile]) -> dict[str, Any]:
    """The manifest as a reader gets it: written as YAML, loaded with yaml.safe_load."""
    document = manifest_document(
        job(),
        {"name": "Acme", "slug": "acme"},
        [MissingAsset("products", "p", "images", "gone.png")],
        datetime(2026, 1, 2, 3, 5, tzinfo=UTC),
    )
    listed = ManifestFiles(TOP)
    listed.add(files)
    loaded: dict[str, Any] = yaml.safe_load(manifest_yaml(document, listed))
    return loaded


def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(MANIFEST_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


FILES = [
    ArchiveFile(f"{TOP}/organization/organization.yaml", 12, hashlib.sha256(b"x").hexdigest()),
    # All digits: YAML must keep it a string.
    ArchiveFile(f"{TOP}/products/p/images/huila café (2).jpg", 0, "1" * 64),
]


def test_manifest_lists_files_relative_to_the_top_folder_and_is_valid() -> None:
    loaded = manifest(FILES)
    assert loaded["files"] == [
        {"path": "organization/organization.yaml", "size": 12, "sha256": FILES[0].sha256},
        {"path": "products/p/images/huila café (2).jpg", "size": 0, "sha256": "1" * 64},
    ]
    assert list(loaded)[-1] == "files"  # the keys of earlier versions come first, unchanged
    validator().validate(loaded)


@pytest.mark.parametrize("count", [0, 1, 999, 1000, 2501])
def test_files_rendered_in_batches_are_one_list(count: int) -> None:
    files = [
        ArchiveFile(f"{TOP}/members/m{i}.yaml", i, hashlib.sha256(bytes([i % 256])).hexdigest())
        for i in range(count)
    ]
    listed = ManifestFiles(TOP)
    listed.add(files[: count // 3])
    listed.add(files[count // 3 :])
    rendered = b"".join(listed.yaml())
    assert rendered == dump_document(
        {
            "files": [
                {"path": f.path.removeprefix(TOP + "/"), "size": f.size, "sha256": f.sha256} for f in files
            ]
        }
    )
    assert len(manifest(files)["files"]) == count


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda m: m.update(extra=1), "Additional"),
        (lambda m: m.pop("files"), "files"),
        (lambda m: m.update(format_version="2.0"), "format_version"),
        (lambda m: m["files"][0].update(sha256="A" * 64), "sha256"),
        (lambda m: m["files"][0].update(size=-1), "size"),
        (lambda m: m["files"][0].update(path="/etc/passwd"), "path"),
        (lambda m: m["files"][0].update(path="a/../b"), "path"),
        (lambda m: m["files"][0].update(mode="0644"), "Additional"),
        (lambda m: m["sections"][0].update(status="failed"), "status"),
        (lambda m: m["organization"].update(id="not an id"), "id"),
        (lambda m: m.update(generated_at="yesterday"), "generated_at"),
        (lambda m: m["missing_assets"][0].pop("filename"), "filename"),
    ],
)
def test_the_schema_is_strict(change: Any, where: str) -> None:
    broken = copy.deepcopy(manifest(FILES))
    change(broken)
    errors = list(validator().iter_errors(broken))
    assert errors and any(where in (str(error.path) + error.message) for error in errors), errors


def test_measure_adds_up_and_stops_past_a_limit() -> None:
    records = {key: [{"id": f"{key}-{i}", "name": "x" * i} for i in range(3)] for key in SECTION_KEYS}
    weight = sum(record_weight(record, key) for key, section in records.items() for record in section)
    assert measure(records) == WorkTotals(3 * len(SECTION_KEYS), weight)
    assert measure(records, max_weight=weight) == WorkTotals(3 * len(SECTION_KEYS), weight)
    assert measure(records, max_weight=weight - 1) is None
    assert measure(records, max_records=3 * len(SECTION_KEYS) - 1) is None
    units = [WorkUnit("a", "members", records=2, estimated_bytes=10), WorkUnit("b", "brands", records=1)]
    assert unit_totals(units) == WorkTotals(3, 10)
