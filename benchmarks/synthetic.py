"""Synthetic organizations as seed fixtures (format 1).

- ``write_fixture``: N products with 1-3 ``generate:`` images of 50-500 KB each (random bytes; the poll
  benchmark's small organization).
- ``write_corpus_fixture``: N products from the realistic corpus (``corpus_records``), each with 1-3 images
  (JPEG, PNG, SVG) and 0-2 documents (PDF, CSV, text) drawn from a pool of corpus files, which the fixture
  references as files (``file:``): a file of the pool may serve several products, each its own S3 object.
  ``CorpusOrg.expected`` says what every product's export must hold (its fields, and each binary's SHA-256).
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
WORDS = ["coffee", "roast", "bergamot", "floral", "café", "washed", "Huila", "lemon", "dark", "single"]
CREATED = "2024-03-10T10:00:00+00:00"


@dataclass(frozen=True)
class SyntheticOrg:
    path: Path
    organization_id: str
    api_key: str
    products: int
    images: int
    image_bytes: int
    # product id -> (its fields as seeded, no binaries; field -> (SHA-256, size) of each binary, in order)
    expected: dict[str, tuple[dict[str, Any], dict[str, list[tuple[bytes, int]]]]] = field(
        default_factory=dict
    )
    counts: dict[str, int] = field(default_factory=dict)  # records per section


if TYPE_CHECKING:
    from benchmarks.inputs import BinaryFile


def _id(rng: random.Random) -> str:
    return "".join(rng.choices(ALPHABET, k=22))


def _gtin(rng: random.Random) -> str:
    body = f"{rng.randrange(10**13):013d}"
    total = sum(int(digit) * (3 if index % 2 == 0 else 1) for index, digit in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


def _api_key(rng: random.Random) -> str:
    body = "".join(rng.choices(KEY_ALPHABET, k=32))
    return f"csb_{body}_{zlib.crc32(body.encode()) & 0xFFFFFFFF:08x}"


def write_fixture(folder: Path, *, products: int, seed: int = 1) -> SyntheticOrg:
    """Write ``folder/org.yaml``; binaries are ``generate`` sources, so the fixture itself stays small."""
    rng = random.Random(seed)
    organization_id = _id(rng)
    brands = [{"id": _id(rng), "name": f"Brand {index}", "created_at": CREATED} for index in range(20)]
    locations = [
        {
            "id": _id(rng),
            "name": f"Store {index}",
            "kind": "store",
            "address": {"line1": f"{index} Fort St", "city": "Victoria", "country": "CA"},
            "created_at": CREATED,
        }
        for index in range(5)
    ]
    product_records: list[dict[str, Any]] = []
    offers: list[dict[str, Any]] = []
    images = image_bytes = 0
    for _ in range(products):
        product_images = []
        for word in rng.sample(WORDS, rng.randint(1, 3)):
            size = rng.randint(50_000, 500_000)
            images, image_bytes = images + 1, image_bytes + size
            generate = {"size_bytes": size, "seed": images}
            product_images.append(
                {"filename": f"{word}.jpg", "content_type": "image/jpeg", "generate": generate}
            )
        product = {
            "id": _id(rng),
            "brand_id": rng.choice(brands)["id"],
            "name": " ".join(rng.choices(WORDS, k=4)).title() + f" {rng.randint(100, 999)} g",
            "gtin": _gtin(rng),
            "created_at": CREATED,
            "description": " ".join(rng.choices(WORDS, k=12))
            + ".\nSecond line: with a colon, - and # signs.\n",
            "attributes": {"origin": "Ethiopia", "process": "washed", "weight_g": rng.randint(100, 1000)},
            "tags": rng.sample(WORDS, 3),
            "price": {"amount": f"{rng.randint(5, 99)}.{rng.randint(0, 99):02d}", "currency": "CAD"},
            "images": product_images,
        }
        product_records.append(product)
        offers.append(
            {
                "id": _id(rng),
                "product_id": product["id"],
                "location_id": rng.choice(locations)["id"],
                "price": product["price"],
                "stock_status": rng.choice(["in_stock", "low_stock", "out_of_stock"]),
                "updated_at": CREATED,
            }
        )
    owner = {
        "id": _id(rng),
        "email": "owner@example.org",
        "name": "Owner",
        "role": "owner",
        "joined_at": CREATED,
    }
    api_key = _api_key(rng)
    fixture = {
        "format": 1,
        "organizations": [
            {
                "organization": {
                    "id": organization_id,
                    "name": "Synthetic Roasters",
                    "slug": "synthetic",
                    "created_at": CREATED,
                },
                "members": [owner],
                "api_keys": [
                    {
                        "id": _id(rng),
                        "name": "bench",
                        "key": api_key,
                        "created_at": CREATED,
                        # The poll benchmark calls far more often than a client may.
                        "rate_limit_per_minute": 1_000_000,
                        "rate_limit_per_day": 100_000_000,
                    }
                ],
                "brands": brands,
                "products": product_records,
                "offers": offers,
                "locations": locations,
            }
        ],
    }
    path = folder / "org.yaml"
    path.write_text(yaml.dump(fixture, Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=True))
    return SyntheticOrg(path, organization_id, api_key, products, images, image_bytes)


IMAGE_KINDS = ("jpeg", "png", "svg")
DOCUMENT_KINDS = ("pdf", "csv", "text")


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``<n>-name`` if another binary of the same record already has it."""
    candidate, index = name, 1
    while candidate in taken:
        candidate, index = f"{index}-{name}", index + 1
    taken.add(candidate)
    return candidate


def write_corpus_fixture(
    folder: Path, *, products: int, pool: Sequence[BinaryFile], seed: int = 1, target_bytes: int | None = None
) -> SyntheticOrg:
    """``folder/org.yaml`` and ``folder/pool/``: ``products`` corpus products with binaries from ``pool``.

    With ``target_bytes``, products are added past ``products`` until their binaries add up to it."""
    from benchmarks.corpus import corpus_records

    rng = random.Random(f"fixture:{seed}")
    pool_dir = folder / "pool"
    pool_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, item in enumerate(pool):
        path = pool_dir / f"{index:05d}-{item.name}"
        path.write_bytes(item.data)
        paths.append(path.relative_to(folder).as_posix())
    images = [i for i, item in enumerate(pool) if item.kind in IMAGE_KINDS] or list(range(len(pool)))
    documents = [i for i, item in enumerate(pool) if item.kind in DOCUMENT_KINDS] or list(range(len(pool)))
    organization_id = _id(rng)
    brands = [{"id": _id(rng), "name": f"Brand {index}", "created_at": CREATED} for index in range(40)]
    locations = [
        {
            "id": _id(rng),
            "name": f"Store {index}",
            "kind": "store",
            "address": {"line1": f"{index} Fort St", "city": "Victoria", "country": "CA"},
            "created_at": CREATED,
        }
        for index in range(5)
    ]
    # Enough records to reach target_bytes: a product has 3 binaries on average (2 images, 1 document).
    average = 3 * sum(len(item.data) for item in pool) / max(1, len(pool))
    count = products if target_bytes is None else max(products, int(target_bytes / average * 1.5) + 100)
    records = corpus_records(seed, count, brand_ids=[brand["id"] for brand in brands])
    product_records: list[dict[str, Any]] = []
    offers: list[dict[str, Any]] = []
    expected: dict[str, tuple[dict[str, Any], dict[str, list[tuple[bytes, int]]]]] = {}
    binaries = binary_bytes = 0
    for record in records:
        if len(product_records) >= products and (target_bytes is None or binary_bytes >= target_bytes):
            break
        product = dict(record)
        hashes: dict[str, list[tuple[bytes, int]]] = {}
        taken: set[str] = set()
        for field_name, choices, low, high in (("images", images, 1, 3), ("documents", documents, 0, 2)):
            refs = []
            for index in rng.sample(choices, min(len(choices), rng.randint(low, high))):
                item = pool[index]
                refs.append(
                    {
                        "filename": _unique(item.name, taken),
                        "content_type": item.content_type,
                        "file": paths[index],
                    }
                )
                hashes.setdefault(field_name, []).append((item.sha256, len(item.data)))
                binaries, binary_bytes = binaries + 1, binary_bytes + len(item.data)
            if refs:
                product[field_name] = refs
        product_records.append(product)
        expected[product["id"]] = (dict(record), hashes)
        offers.append(
            {
                "id": _id(rng),
                "product_id": product["id"],
                "location_id": rng.choice(locations)["id"],
                "price": product.get("price") or {"amount": "9.99", "currency": "CAD"},
                "stock_status": rng.choice(["in_stock", "low_stock", "out_of_stock"]),
                "updated_at": CREATED,
            }
        )
    owner = {
        "id": _id(rng),
        "email": "owner@example.org",
        "name": "Owner",
        "role": "owner",
        "joined_at": CREATED,
    }
    api_key = _api_key(rng)
    fixture = {
        "format": 1,
        "organizations": [
            {
                "organization": {
                    "id": organization_id,
                    "name": "Corpus Roasters",
                    "slug": "corpus",
                    "created_at": CREATED,
                },
                "members": [owner],
                "api_keys": [
                    {
                        "id": _id(rng),
                        "name": "bench",
                        "key": api_key,
                        "created_at": CREATED,
                        "rate_limit_per_minute": 1_000_000,
                        "rate_limit_per_day": 100_000_000,
                    }
                ],
                "brands": brands,
                "products": product_records,
                "offers": offers,
                "locations": locations,
            }
        ],
    }
    path = folder / "org.yaml"
    path.write_text(yaml.dump(fixture, Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=True))
    counts = {
        "organization": 1,
        "members": 1,
        "api_keys": 1,
        "brands": len(brands),
        "products": len(product_records),
        "offers": len(offers),
        "locations": len(locations),
    }
    return SyntheticOrg(
        path, organization_id, api_key, len(product_records), binaries, binary_bytes, expected, counts
    )
