"""Records/s of data_export.yaml_emit.dump_record vs PyYAML's CSafeDumper vs orjson, in one run.

Run from the repo root:  PYTHONPATH=layers/shared .venv/bin/python benchmarks/bench_yaml.py
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import orjson
import yaml
from data_export.yaml_emit import dump_record

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def make_record(rng: random.Random) -> dict[str, Any]:
    """A product-like record of about 1 KB of YAML, with unique ids and text."""

    def uid() -> str:
        return "".join(rng.choices(ALPHABET, k=22))

    words = ["coffee", "roast", "bergamot", "floral", "café", "washed", "Huila", "lemon", "dark", "single"]
    return {
        "id": uid(),
        "brand_id": uid(),
        "name": " ".join(rng.choices(words, k=4)).title() + f" {rng.randint(100, 999)} g",
        "gtin": f"{rng.randrange(10**14):014d}",
        "created_at": "2024-03-10T10:00:00+00:00",
        "updated_at": "2025-01-05T10:00:00+00:00",
        "description": " ".join(rng.choices(words, k=12)) + ".\nSecond line: with a colon, - and # signs.\n",
        "attributes": {"origin": "Ethiopia", "process": "washed", "roast": "light", "weight_g": 340,
                       "score": round(rng.uniform(80, 95), 2), "organic": rng.random() < 0.5},
        "tags": rng.sample(words, 3),
        "price": {"amount": f"{rng.randint(5, 99)}.{rng.randint(0, 99):02d}", "currency": "CAD"},
        "images": [
            {"filename": f"{word}.jpg", "content_type": "image/jpeg", "size_bytes": rng.randint(1000, 10**7),
             "path": f"assets/products/{uid()}/{word}.jpg", "sha256": f"{rng.getrandbits(256):064x}"}
            for word in rng.sample(words, 2)
        ],
        "documents": [],
        "brand": None,
    }


def rate(label: str, dump: Callable[[dict[str, Any]], bytes], records: list[dict[str, Any]]) -> None:
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for record in records:
            dump(record)
        best = max(best, len(records) / (time.perf_counter() - start))
    print(f"{label:<32} {best:>10,.0f} records/s")


def main() -> None:
    rng = random.Random(42)
    records = [make_record(rng) for _ in range(5_000)]
    size = sum(len(dump_record(r)) for r in records) / len(records)
    print(f"{len(records)} records, mean YAML size {size:.0f} bytes")
    rate("yaml_emit.dump_record", dump_record, records)
    rate("yaml.dump(CSafeDumper)", lambda r: yaml.dump(r, Dumper=yaml.CSafeDumper, sort_keys=False,
                                                       allow_unicode=True).encode(), records[:1000])
    rate("orjson.dumps", orjson.dumps, records)


if __name__ == "__main__":
    main()
