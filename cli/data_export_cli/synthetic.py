"""Big synthetic organizations as seed fixtures (format 1), the same bytes on every machine.

``data-export local make-fixture OUT --shape products=22000,images=3`` writes one: an organization of N
products with K small images each (``generate:`` binaries, so the YAML stays small: ~300 bytes a product),
beside a few members, API keys (a business key and an owner's user key), brands, locations and offers.
Ids, names, sizes and seeds derive from the shape alone (SHA-256 of a label), so the same shape always
gives the same file, and a test can regenerate the fixture it verifies an archive against.

Records are written as one YAML flow mapping a line whose scalars are JSON strings (JSON's double-quoted
strings are YAML's), which is ~20 times faster than ``yaml.dump`` and reads back identically.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import IO, Any

ID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
WHEN = "2025-03-01T09:00:00+00:00"
WORDS = ("coffee", "roast", "bergamot", "floral", "café", "washed", "Huila", "lemon", "dark", "single")


@dataclass(frozen=True)
class Shape:
    """What a synthetic organization holds. ``image_bytes`` is the mean size; sizes spread ±50 % around it."""

    products: int = 22_000
    images: int = 3
    image_bytes: int = 4_096
    offers: int = 0  # offers are spread over the first products
    brands: int = 10
    locations: int = 3
    label: str = "synthetic"  # the organization's name; also changes every id

    @classmethod
    def parse(cls, text: str) -> Shape:
        """``products=22000,images=3,image_bytes=4096`` (any of the fields; the rest keep their defaults)."""
        shape = cls()
        names = {field.name: field.type for field in fields(cls)}
        for part in filter(None, (piece.strip() for piece in text.split(","))):
            name, sep, value = part.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in names:
                raise ValueError(f"{part!r}: expected NAME=VALUE with NAME one of {', '.join(names)}")
            try:
                typed: Any = value.strip() if name == "label" else int(value)
            except ValueError:
                raise ValueError(f"{part!r}: {name} must be a whole number") from None
            if name != "label" and typed < 0:
                raise ValueError(f"{part!r}: {name} must not be negative")
            shape = replace(shape, **{name: typed})
        if not shape.label:
            raise ValueError("label must not be empty")
        return shape

    @property
    def organization_id(self) -> str:
        return short_id(self.label, "organization")

    @property
    def business_key(self) -> str:
        """The organization's ``csb`` key (organization-scoped)."""
        return raw_key("csb", self.label, "business")

    @property
    def owner_key(self) -> str:
        """A ``csu`` key of the owner member: the key a person who owns the organization uses."""
        return raw_key("csu", self.label, "owner")

    def image_size(self, product: int, image: int) -> int:
        spread = self.image_bytes // 2
        return self.image_bytes - spread + _number(self.label, "size", product, image) % (2 * spread + 1)

    @property
    def image_total_bytes(self) -> int:
        return sum(self.image_size(p, i) for p in range(self.products) for i in range(self.images))

    @property
    def records(self) -> int:
        """Records the organization's export holds (the profile included)."""
        return 1 + len(_MEMBERS) + 2 + self.brands + self.products + self.offers + self.locations

    @property
    def archive_entries(self) -> int:
        """Files in its archive: records, binaries and the manifest."""
        return self.records + self.products * self.images + 1


def _number(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest(), "big")  # 256 bits: 32 key digits


def short_id(*parts: object) -> str:
    """A deterministic 22-character shortuuid-alphabet id."""
    number, digits = _number(*parts), []
    for _ in range(22):
        number, digit = divmod(number, len(ID_ALPHABET))
        digits.append(ID_ALPHABET[digit])
    return "".join(digits)


def raw_key(prefix: str, *parts: object) -> str:
    number, body = _number("key", *parts), []
    for _ in range(32):
        number, digit = divmod(number, len(KEY_ALPHABET))
        body.append(KEY_ALPHABET[digit])
    text = "".join(body)
    return f"{prefix}_{text}_{zlib.crc32(text.encode()):08x}"


def gtin14(index: int) -> str:
    body = f"2{index:012d}"
    total = sum(int(digit) * (3 if position % 2 == 0 else 1) for position, digit in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


_MEMBERS = (("owner", "Rosa Díaz"), ("manager", "Sam Okafor"), ("editor", "Lee Park"))


def organization(shape: Shape) -> dict[str, Any]:
    """The organization as fixture data (what ``yaml.safe_load`` of ``write_fixture``'s file gives)."""
    return {
        "organization": {
            "id": shape.organization_id,
            "name": f"{shape.label.title()} Roasters",
            "slug": shape.label.lower(),
            "created_at": WHEN,
        },
        "members": list(_members(shape)),
        "api_keys": list(_api_keys(shape)),
        "brands": list(_brands(shape)),
        "products": list(_products(shape)),
        "offers": list(_offers(shape)),
        "locations": list(_locations(shape)),
    }


def fixture_data(shape: Shape) -> dict[str, Any]:
    return {"format": 1, "organizations": [organization(shape)]}


def _members(shape: Shape) -> Iterator[dict[str, Any]]:
    for index, (role, name) in enumerate(_MEMBERS):
        yield {
            "id": short_id(shape.label, "member", index),
            "email": f"{role}@{shape.label.lower()}.example",
            "name": name,
            "role": role,
            "joined_at": WHEN,
        }


def _api_keys(shape: Shape) -> Iterator[dict[str, Any]]:
    # Generous limits: a check polls and downloads far more often than a person would.
    limits = {"rate_limit_per_minute": 100_000, "rate_limit_per_day": 10_000_000}
    yield {
        "id": short_id(shape.label, "key", "business"),
        "name": "server",
        "key": shape.business_key,
        "created_at": WHEN,
        **limits,
    }
    yield {
        "id": short_id(shape.label, "key", "owner"),
        "name": "owner laptop",
        "key": shape.owner_key,
        "member_id": short_id(shape.label, "member", 0),
        "created_at": WHEN,
        **limits,
    }


def _brands(shape: Shape) -> Iterator[dict[str, Any]]:
    for index in range(shape.brands):
        yield {"id": short_id(shape.label, "brand", index), "name": f"Brand {index}", "created_at": WHEN}


def _locations(shape: Shape) -> Iterator[dict[str, Any]]:
    for index in range(shape.locations):
        yield {
            "id": short_id(shape.label, "location", index),
            "name": f"Store {index}",
            "kind": "store",
            "address": {"line1": f"{index + 1} Fort St", "city": "Victoria", "country": "CA"},
            "created_at": WHEN,
        }


def _products(shape: Shape) -> Iterator[dict[str, Any]]:
    for index in range(shape.products):
        product: dict[str, Any] = {
            "id": short_id(shape.label, "product", index),
            "name": f"{WORDS[index % len(WORDS)].title()} lot {index}",
            "gtin": gtin14(index),
            "created_at": WHEN,
        }
        if shape.brands:
            product["brand_id"] = short_id(shape.label, "brand", index % shape.brands)
        product["price"] = {"amount": f"{5 + index % 90}.50", "currency": "CAD"}
        product["tags"] = [WORDS[index % 7], WORDS[index % 3 + 7], "yes" if index % 2 else "0777"]
        product["images"] = [
            {
                "filename": f"lot {index} view {image}{' café' if image == 1 else ''}.jpg",
                "content_type": "image/jpeg",
                "generate": {"size_bytes": shape.image_size(index, image), "seed": index * 16 + image},
            }
            for image in range(shape.images)
        ]
        yield product


def _offers(shape: Shape) -> Iterator[dict[str, Any]]:
    for index in range(shape.offers):
        yield {
            "id": short_id(shape.label, "offer", index),
            "product_id": short_id(shape.label, "product", index % max(shape.products, 1)),
            "location_id": short_id(shape.label, "location", index % max(shape.locations, 1)),
            "price": {"amount": f"{5 + index % 90}.00", "currency": "CAD"},
            "stock_status": "in_stock",
            "updated_at": WHEN,
        }


def write_fixture(path: Path, shape: Shape) -> Path:
    """Write the fixture of ``shape`` to ``path`` (valid for ``data-export validate-fixture``)."""
    if shape.offers and (not shape.products or not shape.locations):
        raise ValueError("offers need at least one product and one location")
    data = organization(shape)
    with path.open("w", encoding="utf-8") as out:
        out.write(
            f"# A synthetic organization: data-export local make-fixture --shape {_shape_text(shape)}\n"
        )
        out.write("format: 1\norganizations:\n  - organization: ")
        _flow(out, data["organization"])
        out.write("\n")
        for section in ("members", "api_keys", "brands", "locations", "products", "offers"):
            out.write(f"    {section}:\n" if data[section] else f"    {section}: []\n")
            for record in data[section]:
                out.write("      - ")
                _flow(out, record)
                out.write("\n")
    return path


def _shape_text(shape: Shape) -> str:
    return ",".join(f"{field.name}={getattr(shape, field.name)}" for field in fields(shape))


def _flow(out: IO[str], record: dict[str, Any]) -> None:
    # Every value here is a str, int, list or dict: json.dumps writes flow YAML that PyYAML reads back exactly
    # (strings double-quoted, so "yes" and "0777" stay strings).
    out.write(json.dumps(record, ensure_ascii=False, separators=(", ", ": ")))
