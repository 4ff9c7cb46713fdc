"""The import's plan (restore.plan): records read back, checked, mapped and compared with the target, per
file reports for what is invalid, and nothing planned for members and API keys."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from data_export.models import ImportMode
from data_export.restore.plan import ImportPlan, copied_id, plan_import
from data_export.yaml_emit import dump_record

SOURCE = "eHcFM2wk4RdyYG8yMrTGbQ"
TARGET = "TpR7vWk3Qx9mHc2NbY5sLe"
AT = "2025-01-01T00:00:00+00:00"
BRAND = "PozSCfVhrBvHG4uL7NW5hT"
PRODUCT = "ZUF6rFErzk2LMU4DvbtjDA"
LOCATION = "Rb5Gm2XwT8kLpQ3nVc7YsE"
OFFER = "Ub7Ys3KfW9mNcQ2rTe4GhA"


def archive(**overrides: Any) -> dict[str, bytes]:
    records: dict[str, Any] = {
        "organization/organization.yaml": {"id": SOURCE, "name": "Acme", "slug": "acme", "created_at": AT},
        f"members/{BRAND}.yaml": {
            "id": BRAND,
            "email": "a@b.c",
            "name": "A",
            "role": "owner",
            "joined_at": AT,
        },
        f"brands/{BRAND}.yaml": {"id": BRAND, "name": "Roasts", "created_at": AT},
        f"products/{PRODUCT}.yaml": {
            "id": PRODUCT,
            "name": "Beans",
            "gtin": "00628176543215",
            "brand_id": BRAND,
            "created_at": AT,
            "images": [
                {
                    "filename": "f.jpg",
                    "content_type": "image/jpeg",
                    "size_bytes": 3,
                    "file": "products/P/f.jpg",
                },
                {"filename": "gone.jpg", "content_type": "image/jpeg", "missing": True},
            ],
        },
        f"locations/{LOCATION}.yaml": {
            "id": LOCATION,
            "name": "Shop",
            "kind": "store",
            "address": {"city": "X"},
            "created_at": AT,
        },
        f"offers/{OFFER}.yaml": {
            "id": OFFER,
            "product_id": PRODUCT,
            "location_id": LOCATION,
            "price": {"amount": "1.00", "currency": "CAD"},
            "stock_status": "in_stock",
            "updated_at": AT,
        },
    }
    records.update(overrides)
    return {
        path: value if isinstance(value, bytes) else dump_record(value)
        for path, value in records.items()
        if value is not None
    }


ENTRIES = {"products/P/f.jpg": (0, 3, "ab" * 32)}
MANIFEST = {"format_version": "1.0", "job_id": "S8yfMT73Q29pRJaQ7Y3QM9", "organization": {"id": SOURCE}}


def plan(
    files: dict[str, bytes],
    mode: ImportMode = ImportMode.COPY,
    target: str = TARGET,
    existing: dict[str, dict[str, dict[str, Any]]] | None = None,
    objects: Collection[str] = (),
    overwrite: bool = False,
) -> ImportPlan:
    stored = existing or {}
    return plan_import(
        mode=mode,
        overwrite=overwrite,
        target_organization_id=target,
        manifest=MANIFEST,
        entries=ENTRIES,
        yaml_files=files,
        existing_records=lambda section, ids: {i: r for i, r in stored.get(section, {}).items() if i in ids},
        existing_objects=lambda keys: [key for key in keys if key in objects],
    )


def test_a_copy_maps_ids_and_references_and_writes_what_is_referred_to_first() -> None:
    result = plan(archive())
    assert [(r.section, r.record_id) for r in result.records] == [
        ("locations", copied_id(TARGET, SOURCE, "locations", LOCATION)),
        ("brands", copied_id(TARGET, SOURCE, "brands", BRAND)),
        ("products", copied_id(TARGET, SOURCE, "products", PRODUCT)),
        ("offers", copied_id(TARGET, SOURCE, "offers", OFFER)),
        ("organization", TARGET),
    ]
    product = result.records[2].record
    assert product["brand_id"] == copied_id(TARGET, SOURCE, "brands", BRAND)
    new_product = result.records[2].record_id
    assert product["images"] == [
        {
            "filename": "f.jpg",
            "content_type": "image/jpeg",
            "asset_key": f"{TARGET}/products/{new_product}/images/0",
            "size_bytes": 3,
        },
        {
            "filename": "gone.jpg",
            "content_type": "image/jpeg",
            "asset_key": f"{TARGET}/products/{new_product}/images/1",
        },
    ]
    assert [(b.path, b.key) for b in result.binaries] == [
        ("products/P/f.jpg", product["images"][0]["asset_key"])
    ]
    offer = result.records[3].record
    assert offer["product_id"] == new_product
    assert result.sections["members"].records == 1 and result.sections["members"].skipped_reason
    assert result.invalid_count == 0 and not result.problems
    # The same archive into the same organization maps to the same ids: a second import finds them.
    assert copied_id(TARGET, SOURCE, "brands", BRAND) == copied_id(TARGET, SOURCE, "brands", BRAND)
    assert ImportPlan.from_json(result.to_json()).records == result.records


def test_invalid_records_are_reported_per_file_and_what_refers_to_them_too() -> None:
    files = archive(
        **{
            f"brands/{BRAND}.yaml": b"name: [unclosed\n",
            "brands/Other.yaml": {"name": "No id", "created_at": AT},
            "widgets/W.yaml": {"id": "W"},
        }
    )
    result = plan(files)
    brands = {item.path: item.reason for item in result.sections["brands"].invalid}
    assert brands[f"brands/{BRAND}.yaml"].startswith("not valid YAML at line 2")
    assert brands["brands/Other.yaml"] == "missing required field(s): id"
    # The product names the broken brand, and the offer the product: both invalid, with the reason.
    assert "brand_id" in result.sections["products"].invalid[0].reason
    assert "product_id" in result.sections["offers"].invalid[0].reason
    assert [p.code for p in result.problems] == ["unknown_section"]
    assert result.invalid_count == 4


def test_binary_references_must_name_files_of_the_archive_once() -> None:
    product = {
        "id": PRODUCT,
        "name": "Beans",
        "gtin": "00628176543215",
        "created_at": AT,
        "images": [{"filename": "x", "content_type": "image/jpeg", "file": "../../etc/passwd"}],
    }
    result = plan(archive(**{f"products/{PRODUCT}.yaml": product}))
    assert "not in the archive" in result.sections["products"].invalid[0].reason
    twice = dict(product, images=[{"filename": "x", "content_type": "a/b", "file": "products/P/f.jpg"}] * 2)
    result = plan(archive(**{f"products/{PRODUCT}.yaml": twice}))
    assert "already uses" in result.sections["products"].invalid[0].reason


def test_existing_records_are_skipped_unless_overwrite() -> None:
    existing = {"brands": {BRAND: {"id": BRAND, "name": "Changed"}}, "organization": {SOURCE: {"id": SOURCE}}}
    result = plan(archive(), ImportMode.RESTORE, target=SOURCE, existing=existing)
    assert result.sections["brands"].skipped_existing == 1 and result.sections["brands"].would_create == 0
    assert "brands" not in {record.section for record in result.records}
    replaced = plan(archive(), ImportMode.RESTORE, target=SOURCE, existing=existing, overwrite=True)
    assert replaced.sections["brands"].overwritten == 1
    assert any(record.section == "brands" and record.replaces for record in replaced.records)


def test_restore_accepts_references_to_records_the_organization_still_has() -> None:
    files = archive(**{f"brands/{BRAND}.yaml": None})
    assert plan(files, ImportMode.RESTORE, target=SOURCE).sections["products"].invalid_count == 1
    still_there = {"brands": {BRAND: {"id": BRAND, "name": "Roasts"}}}
    result = plan(files, ImportMode.RESTORE, target=SOURCE, existing=still_there)
    assert result.invalid_count == 0 and result.sections["products"].would_create == 1


def test_restore_brings_back_missing_binaries_of_existing_records_at_their_own_keys() -> None:
    key = f"{SOURCE}/products/{PRODUCT}/images/7"
    stored = {"id": PRODUCT, "images": [{"filename": "f.jpg", "asset_key": key}]}
    existing = {"products": {PRODUCT: stored}, "brands": {BRAND: {"id": BRAND}}}
    result = plan(archive(), ImportMode.RESTORE, target=SOURCE, existing=existing)
    assert [binary.key for binary in result.binaries] == [key]
    assert result.sections["products"].binaries_would_restore == 1
    present = plan(archive(), ImportMode.RESTORE, target=SOURCE, existing=existing, objects=[key])
    assert present.binaries == [] and present.sections["products"].binaries_skipped_existing == 1
    foreign = {"products": {PRODUCT: {"id": PRODUCT, "images": [{"filename": "f.jpg", "asset_key": "x/y"}]}}}
    assert plan(archive(), ImportMode.RESTORE, target=SOURCE, existing=foreign).binaries == []


def test_a_restore_into_another_organization_is_refused_whole() -> None:
    result = plan(archive(), ImportMode.RESTORE, target=TARGET)
    assert [problem.code for problem in result.problems] == ["wrong_organization"]
    assert result.records == [] and result.binaries == []


def test_a_copy_fills_in_only_the_targets_empty_profile_fields() -> None:
    profile = {
        "id": SOURCE,
        "name": "Acme",
        "slug": "acme",
        "created_at": AT,
        "website": "https://a",
        "country": "CA",
    }
    existing = {
        "organization": {
            TARGET: {"id": TARGET, "name": "Empty", "slug": "e", "created_at": AT, "country": ""}
        }
    }
    result = plan(archive(**{"organization/organization.yaml": profile}), existing=existing)
    assert result.sections["organization"].merged_fields == ["country", "website"]
    merged = next(record for record in result.records if record.section == "organization")
    assert merged.record["name"] == "Empty" and merged.record["website"] == "https://a" and merged.replaces
