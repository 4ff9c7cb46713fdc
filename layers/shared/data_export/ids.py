"""Identifiers: 22-character shortuuids."""

from __future__ import annotations

import re

import shortuuid

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
ID_PATTERN = f"^[{ALPHABET}]{{22}}$"
_ID_RE = re.compile(ID_PATTERN)


def new_id() -> str:
    return str(shortuuid.uuid())


def is_valid_id(value: str) -> bool:
    return bool(_ID_RE.fullmatch(value))
