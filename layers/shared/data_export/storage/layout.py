"""How the organization's data is laid out in the stores (shared by the seed loader and the export).

Org-data table (ORG_DATA_TABLE_NAME): partition key ``partition`` (S) = ``"<organization id>#<section>"``,
sort key ``record_id`` (S), for sections organization, members, brands, products, offers, locations. One
partition per section spreads a big organization's reads over many partitions (units of a big export read
in parallel), and a section is read in id order with one Query.
Attribute ``record`` (S) holds the record as JSON, exactly as the platform stores it (unknown extra fields
kept); binaries inside it are *asset references* (see ``asset_ref``).

API-keys table (API_KEYS_TABLE_NAME): partition key ``key_hash`` (S) = SHA-256 hex of the raw key; top-level
attributes used by auth (``organization_id``, ``key_id``, ``prefix``, ``member_id``, ``is_active``,
``expires_at``) and ``record`` (S): the key's metadata record as JSON, never the raw key nor its hash.
GSI ``by_organization`` (organization_id, key_id) lists an organization's keys for the export.

Assets bucket (ASSETS_BUCKET_NAME): one object per binary at ``asset_key(...)``, under its organization's
``asset_prefix``; a binary whose object is absent is a *missing* asset, which the export reports instead of
failing. A reference outside the organization's prefix is *refused*: the export never reads it
(export.sections.asset_refusal).
"""

from __future__ import annotations

RECORD_SECTIONS = ("organization", "members", "brands", "products", "offers", "locations")
API_KEYS_BY_ORGANIZATION_INDEX = "by_organization"
JOBS_BY_CREATED_AT_INDEX = "by_created_at"
# Sparse: only jobs still pending or processing carry its key (open_marker).
JOBS_OPEN_INDEX = "by_open"

# Fields of each section that hold binaries: field name -> True when it holds a list of binaries.
BINARY_FIELDS: dict[str, dict[str, bool]] = {
    "organization": {"logo": False},
    "brands": {"logo": False},
    "products": {"images": True, "documents": True},
}


def partition_key(organization_id: str, section: str) -> str:
    return f"{organization_id}#{section}"


def asset_prefix(organization_id: str) -> str:
    """Assets bucket: the folder of all the binaries of one organization, and all that its export reads."""
    return f"{organization_id}/"


def asset_key(organization_id: str, section: str, record_id: str, field: str, index: int) -> str:
    """Object key of a binary; built from ids only, never from user-typed file names."""
    return f"{asset_prefix(organization_id)}{section}/{record_id}/{field}/{index}"


def asset_ref(filename: str, content_type: str, key: str, size_bytes: int | None) -> dict[str, object]:
    """The stored form of a binary inside a record (size unknown for a missing asset)."""
    ref: dict[str, object] = {"filename": filename, "content_type": content_type, "asset_key": key}
    if size_bytes is not None:
        ref["size_bytes"] = size_bytes
    return ref


def export_prefix(organization_id: str, job_id: str) -> str:
    """Exports bucket: where a job's archives go, one folder per build attempt or run."""
    return f"exports/{organization_id}/{job_id}/"


def temporary_prefix(organization_id: str, job_id: str) -> str:
    """Exports bucket: a job's temporary unit objects (chunked builds), one folder per run."""
    return f"tmp/{organization_id}/{job_id}/"
