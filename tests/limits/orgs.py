"""Synthetic organizations for the limits tests: ``benchmarks.load``'s small tenant, with as many products
as a test wants (a product is 1 record and 2 binaries), seeded as the seed command does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from benchmarks.load import BINARY_FIELDS, SECTIONS, Tenant, _binary, _new_key, tenant_data


def organization(index: int, products: int, key: str) -> dict[str, Any]:
    from data_export.ids import new_id

    data = tenant_data(index, key)
    first = data["products"][0]
    for p in range(len(data["products"]), products):
        data["products"].append(
            {
                **first,
                "id": new_id(),
                "name": f"Product {p}",
                "images": [_binary(f"front-{p}.jpg", "image/jpeg", 2048 + p, index * 100_000 + p)],
                "documents": [
                    _binary(f"sheet-{p}.pdf", "application/pdf", 1024 + p, index * 100_000 + 50_000 + p)
                ],
            }
        )
    del data["products"][products:]
    return data


def seed_organizations(stack: Any, folder: Path, products: list[int], first_index: int = 0) -> list[Tenant]:
    """One organization per entry of ``products`` (that many products each), seeded into the stack."""
    from data_export.settings import get_settings
    from data_export_cli.seed import Binary, load_fixture, seed_file

    keys = [_new_key() for _ in products]
    organizations = [
        organization(first_index + offset, count, key)
        for offset, (count, key) in enumerate(zip(products, keys, strict=True))
    ]
    path = folder / "organizations.yaml"
    path.write_text(yaml.safe_dump({"format": 1, "organizations": organizations}, sort_keys=False))
    seed_file(
        path, dynamodb_client=stack.client("dynamodb"), s3_client=stack.client("s3"), settings=get_settings()
    )
    fixture = load_fixture(path)
    tenants = []
    for data, key in zip(organizations, keys, strict=True):
        records = {
            section: [data["organization"]] if section == "organization" else data.get(section, [])
            for section in SECTIONS
        }
        binaries: dict[str, bytes] = {}
        for section, names in BINARY_FIELDS.items():
            for record in records[section]:
                for name in names:
                    value = record.get(name)
                    for source in value if isinstance(value, list) else [value] if value else []:
                        content = fixture.binary_bytes(Binary.model_validate(source))
                        assert content is not None
                        binaries[f"{section}/{record['id']}/{name}/{source['filename']}"] = content
        tenants.append(Tenant(data["organization"]["id"], key, records, binaries))
    return tenants


def record_count(tenant: Tenant) -> int:
    return sum(len(records) for records in tenant.records.values())
