"""Synthetic inputs: product records as the export writes them, binaries like the images beside them."""

from __future__ import annotations

import hashlib
import random
from typing import Any

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
WORDS = ["coffee", "roast", "bergamot", "floral", "café", "washed", "Huila", "lemon", "dark", "single"]
TOP = "acme-coffee-export-9rmGWTfn73qSm2TjFwu33Y"


def short_id(rng: random.Random) -> str:
    return "".join(rng.choices(ALPHABET, k=22))


def product_record(rng: random.Random) -> dict[str, Any]:
    """A product as exported (image references rewritten to their archive file): ~1 KB of YAML."""
    product_id = short_id(rng)
    images = [
        {
            "filename": f"{word}.jpg",
            "content_type": "image/jpeg",
            "size_bytes": rng.randint(50_000, 500_000),
            "file": f"products/{product_id}/images/{word}.jpg",
        }
        for word in rng.sample(WORDS, rng.randint(1, 3))
    ]
    return {
        "id": product_id,
        "brand_id": short_id(rng),
        "name": " ".join(rng.choices(WORDS, k=4)).title() + f" {rng.randint(100, 999)} g",
        "gtin": f"{rng.randrange(10**14):014d}",
        "created_at": "2024-03-10T10:00:00+00:00",
        "updated_at": "2025-01-05T10:00:00+00:00",
        "description": " ".join(rng.choices(WORDS, k=12)) + ".\nSecond line: with a colon, - and # signs.\n",
        "attributes": {
            "origin": "Ethiopia",
            "process": "washed",
            "roast": "light",
            "weight_g": 340,
            "score": round(rng.uniform(80, 95), 2),
            "organic": rng.random() < 0.5,
        },
        "tags": rng.sample(WORDS, 3),
        "price": {"amount": f"{rng.randint(5, 99)}.{rng.randint(0, 99):02d}", "currency": "CAD"},
        "images": images,
        "documents": [],
        "sha256": f"{rng.getrandbits(256):064x}",
    }


def records(count: int, seed: int = 42) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [product_record(rng) for _ in range(count)]


def record_names(items: list[dict[str, Any]]) -> list[str]:
    return [f"{TOP}/products/{item['id']}.yaml" for item in items]


def generated_bytes(size: int, seed: int) -> bytes:
    """The seed fixture's ``generate`` bytes: incompressible, like JPEG, PNG or PDF content."""
    return hashlib.shake_256(str(seed).encode()).digest(size)


def binaries(total_bytes: int, *, low: int = 50_000, high: int = 500_000, seed: int = 7) -> list[bytes]:
    """Incompressible files of ``low``-``high`` bytes adding up to about ``total_bytes``."""
    rng = random.Random(seed)
    sizes: list[int] = []
    while sum(sizes) < total_bytes:
        sizes.append(rng.randint(low, high))
    pool = generated_bytes(high + len(sizes), seed)
    # Distinct contents without hashing gigabytes: windows of one pool at shifting offsets.
    return [pool[index : index + size] for index, size in enumerate(sizes)]


def binary_names(items: list[bytes]) -> list[str]:
    return [f"{TOP}/products/p{index:06d}/images/photo {index}.jpg" for index in range(len(items))]
