"""An organization's export reads only its own binaries (export.sections): a reference whose key is outside
the organization's prefix in the assets bucket, or could climb out of it, is refused: never read (not even
ahead), reported in the section's error, the manifest and the record, and no byte of it in the archive."""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
import yaml
from data_export.export.builder import manifest_document
from data_export.export.entries import open_entries
from data_export.export.sections import (
    OUTSIDE_ORGANIZATION,
    UNSAFE_KEY,
    MissingAsset,
    SectionFolder,
    asset_refusal,
    export_record,
    missing_summary,
    write_section,
)
from data_export.jobs import Job
from data_export.models import SECTION_KEYS, ArchiveFormat, JobStatus, SectionReport
from data_export.storage.layout import asset_key
from data_export.storage.objects import Asset

from tests.archive_checks import MANIFEST_SCHEMA, archive_files

ORG_A = "eHcFM2wk4RdyYG8yMrTGbQ"
ORG_B = "TpR7vWk3Qx9mHc2NbY5sLe"
PRODUCT = "ZUF6rFErzk2LMU4DvbtjDA"
OWN_KEY = asset_key(ORG_A, "products", PRODUCT, "images", 0)
OTHER_KEY = asset_key(ORG_B, "products", "Hk4tWm8Ns2vQeRaJc5LpXy", "images", 0)
OWN_BYTES = b"organization A's own image " * 10
OTHER_BYTES = b"SECRET of organization B " * 10


class RecordingStore:
    """Assets in memory, every key asked for recorded (reads run ahead on several threads)."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.reads: list[str] = []
        self._lock = threading.Lock()

    def open(self, key: str) -> Asset | None:
        with self._lock:
            self.reads.append(key)
        data = self.objects.get(key)
        return None if data is None else Asset(size=len(data), chunks=iter([data]))


# Keys that escape or leave A's prefix, each with a B object behind it, however a layer might read it.
HOSTILE_KEYS = {
    OTHER_KEY: OUTSIDE_ORGANIZATION,
    f"{ORG_A}x/products/p/images/0": OUTSIDE_ORGANIZATION,  # another organization whose id starts with A's
    ORG_A: OUTSIDE_ORGANIZATION,
    f"{ORG_A}/": UNSAFE_KEY,  # the folder itself
    f"/{OTHER_KEY}": UNSAFE_KEY,
    f"{ORG_A}/../{OTHER_KEY}": UNSAFE_KEY,
    f"{ORG_A}/products/../../{OTHER_KEY}": UNSAFE_KEY,
    f"{ORG_A}/./products/p/images/0": UNSAFE_KEY,
    f"{ORG_A}//{OTHER_KEY}": UNSAFE_KEY,
    f"{ORG_A}/..\\..\\{OTHER_KEY}": UNSAFE_KEY,
    f"{ORG_A}\\..\\{OTHER_KEY}": UNSAFE_KEY,
    f"{ORG_A}/products/..": UNSAFE_KEY,
    f"{ORG_A}/\uff0e\uff0e/{OTHER_KEY}": UNSAFE_KEY,  # fullwidth dots: ".." once NFKC-normalised
    f"{ORG_A}/..\uff0f{OTHER_KEY}": UNSAFE_KEY,  # fullwidth solidus: "/" once NFKC-normalised
    f"{ORG_A}/%2e%2e/{OTHER_KEY}": UNSAFE_KEY,  # ".." once percent-decoded
    f"{ORG_A}/%2E%2E%2F{OTHER_KEY}": UNSAFE_KEY,
    f"{ORG_A}/products/p/images/0\x00/../../{OTHER_KEY}": UNSAFE_KEY,
    f"{ORG_A}/products/p/images/0\n": UNSAFE_KEY,
}


@pytest.mark.parametrize(("key", "reason"), list(HOSTILE_KEYS.items()))
def test_keys_outside_the_organization_are_refused(key: str, reason: str) -> None:
    assert asset_refusal(key, ORG_A) == reason


@pytest.mark.parametrize(
    "key",
    [
        OWN_KEY,
        asset_key(ORG_A, "organization", ORG_A, "logo", 0),
        f"{ORG_A}/products/{PRODUCT}/documents/12",
        f"{ORG_A}/products/a.b/images/0",  # dots inside a name are not a climb
        f"{ORG_A}/products/…/images/0",
        f"{ORG_A}/products/café/images/0",
    ],
)
def test_keys_under_the_organization_are_read(key: str) -> None:
    assert asset_refusal(key, ORG_A) is None


@pytest.mark.parametrize("organization_id", ["", "..", "a/b", ".", "a\\b"])
def test_without_a_plain_organization_id_nothing_is_read(organization_id: str) -> None:
    assert asset_refusal(f"{organization_id}/products/p/images/0", organization_id) is not None


def product(refs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": PRODUCT, "name": "Kettle", "images": refs}


def ref(key: str, filename: str, **extra: Any) -> dict[str, Any]:
    return {"filename": filename, "content_type": "image/png", "asset_key": key, "size_bytes": 10, **extra}


def build_products(
    records: list[dict[str, Any]], store: RecordingStore, read_ahead: int
) -> tuple[dict[str, bytes], list[MissingAsset], SectionReport]:
    sink = io.BytesIO()
    entries = open_entries(ArchiveFormat.ZIP, sink, datetime(2026, 1, 2, tzinfo=UTC))
    report, missing = SectionReport(key="products"), list[MissingAsset]()
    write_section(
        entries,
        "top",
        SectionFolder("products"),
        records,
        store.open,
        report,
        missing,
        organization_id=ORG_A,
        read_ahead=read_ahead,
    )
    entries.close()
    return archive_files(sink.getvalue(), "zip"), missing, report


@pytest.mark.parametrize("read_ahead", [0, 8])
def test_a_reference_to_another_organizations_asset_is_never_read(read_ahead: int) -> None:
    hostile = list(HOSTILE_KEYS)
    store = RecordingStore({OWN_KEY: OWN_BYTES, **dict.fromkeys(hostile, OTHER_BYTES)})
    refs = [ref(OWN_KEY, "own.png"), *(ref(key, f"stolen-{index}.png") for index, key in enumerate(hostile))]
    files, missing, report = build_products([product(refs)], store, read_ahead)

    assert store.reads == [OWN_KEY]  # not read, not even ahead
    assert not any(OTHER_BYTES[:20] in data for data in files.values())
    assert files[f"top/products/{PRODUCT}/images/own.png"] == OWN_BYTES
    assert (report.record_count, report.binary_count) == (1, 1)

    exported = yaml.safe_load(files[f"top/products/{PRODUCT}.yaml"])
    assert exported["images"][0] == {
        "filename": "own.png",
        "content_type": "image/png",
        "size_bytes": len(OWN_BYTES),
        "file": f"products/{PRODUCT}/images/own.png",
    }
    for index, image in enumerate(exported["images"][1:]):
        # The key is not exported: it would name the other organization.
        assert image == {
            "filename": f"stolen-{index}.png",
            "content_type": "image/png",
            "missing": True,
            "refused": True,
        }
    assert [(m.filename, m.reason) for m in missing] == [
        (f"stolen-{index}.png", HOSTILE_KEYS[key]) for index, key in enumerate(hostile)
    ]
    assert ORG_B.encode() not in b"".join(files.values())


@pytest.mark.parametrize("read_ahead", [0, 8])
def test_refused_and_missing_assets_are_told_apart(read_ahead: int) -> None:
    store = RecordingStore({OWN_KEY: OWN_BYTES, OTHER_KEY: OTHER_BYTES})
    gone = asset_key(ORG_A, "products", PRODUCT, "images", 1)
    refs = [ref(gone, "gone.png"), ref(OTHER_KEY, "theirs.png")]
    files, missing, _ = build_products([product(refs)], store, read_ahead)
    assert store.reads == [gone]
    exported = yaml.safe_load(files[f"top/products/{PRODUCT}.yaml"])
    assert [image.get("refused", False) for image in exported["images"]] == [False, True]
    assert all(image["missing"] is True and "file" not in image for image in exported["images"])
    assert [m.refused for m in missing] == [False, True]
    assert missing_summary(missing) == (
        f"1 missing asset(s) not in the archive: {PRODUCT}/images/gone.png; "
        f"1 asset reference(s) refused, outside the organization's assets, not read: "
        f"{PRODUCT}/images/theirs.png"
    )
    assert missing_summary(missing[:1]) == f"1 missing asset(s) not in the archive: {PRODUCT}/images/gone.png"
    assert missing_summary([]) is None


def test_nothing_refused_is_written_even_through_an_unguarded_opener() -> None:
    store = RecordingStore({OTHER_KEY: OTHER_BYTES})
    written: list[str] = []
    closed: list[bool] = []

    def open_anything(key: str) -> Asset | None:
        asset = store.open(key)
        assert asset is not None
        return Asset(size=asset.size, chunks=asset.chunks, close=lambda: closed.append(True))

    missing: list[MissingAsset] = []
    exported, count = export_record(
        SectionFolder("products"),
        product([ref(OTHER_KEY, "theirs.png")]),
        open_anything,
        lambda path, asset: written.append(path),
        missing,
        ORG_A,
    )
    assert (count, written, closed) == (0, [], [True])
    assert exported["images"] == [
        {"filename": "theirs.png", "content_type": "image/png", "missing": True, "refused": True}
    ]
    assert missing[0].reason == OUTSIDE_ORGANIZATION


def test_a_record_cannot_pass_off_marks_that_the_export_sets() -> None:
    store = RecordingStore({OWN_KEY: OWN_BYTES})
    forged = ref(OWN_KEY, "own.png", refused=True, missing=True, file="products/elsewhere/x.png")
    files, missing, _ = build_products([product([forged])], store, read_ahead=0)
    exported = yaml.safe_load(files[f"top/products/{PRODUCT}.yaml"])
    assert exported["images"] == [
        {
            "filename": "own.png",
            "content_type": "image/png",
            "size_bytes": len(OWN_BYTES),
            "file": f"products/{PRODUCT}/images/own.png",
        }
    ]
    assert missing == []


def test_the_manifest_lists_refused_references_and_stays_valid() -> None:
    job = Job.new(
        organization_id=ORG_A,
        job_id="S8yfMT73Q29pRJaQ7Y3QM9",
        archive_format=ArchiveFormat.ZIP,
        output_filename="acme-export-S8yfMT73Q29pRJaQ7Y3QM9.zip",
        created_at=datetime(2026, 1, 2, tzinfo=UTC),
        retention_days=7,
    )
    job.sections = [SectionReport(key=key, status=JobStatus.COMPLETED) for key in SECTION_KEYS]
    missing = [
        MissingAsset("products", PRODUCT, "images", "gone.png"),
        MissingAsset("products", PRODUCT, "images", "theirs.png", OUTSIDE_ORGANIZATION),
        MissingAsset("brands", "b", "logo", "climb.png", UNSAFE_KEY),
    ]
    document = manifest_document(job, {"name": "Acme", "slug": "acme"}, missing, datetime.now(UTC))
    assert document["missing_assets"] == [
        {"section": "products", "record_id": PRODUCT, "field": "images", "filename": "gone.png"},
        {
            "section": "products",
            "record_id": PRODUCT,
            "field": "images",
            "filename": "theirs.png",
            "refused": True,
            "reason": "outside_organization",
        },
        {
            "section": "brands",
            "record_id": "b",
            "field": "logo",
            "filename": "climb.png",
            "refused": True,
            "reason": "unsafe_key",
        },
    ]
    validator = jsonschema.Draft202012Validator(json.loads(MANIFEST_SCHEMA.read_text()))
    validator.validate({**document, "files": []})
    for bad in ({"refused": True}, {"reason": "unsafe_key"}, {"refused": False, "reason": "unsafe_key"}):
        forged = {**document["missing_assets"][0], **bad}
        assert not validator.is_valid({**document, "missing_assets": [forged], "files": []}), bad


def test_a_chunked_units_index_keeps_the_refusal() -> None:
    # Units store their missing assets as JSON (vars) and Assemble rebuilds them (MissingAsset(**m)).
    refused = MissingAsset("products", PRODUCT, "images", "theirs.png", OUTSIDE_ORGANIZATION)
    again = MissingAsset(**json.loads(json.dumps(dict(vars(refused)))))
    assert again == refused and again.refused
    old_index = {"section": "products", "record_id": PRODUCT, "field": "images", "filename": "gone.png"}
    assert not MissingAsset(**old_index).refused
