"""A synthetic organization as a seed fixture (format 1): N products with 1-3 images of 50-500 KB each."""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
