"""Seed fixtures: parse and fully validate one, then load it into the org-data and API-key stores.

The format is specified in ``shared/spec/seed-fixture.md``. Validation runs two passes over the parsed YAML
and always both, so that one ``FixtureError`` reports every problem at once: pydantic models check each
record's structure and field formats, then a walk over the same data checks what spans records (unique ids
and raw keys, references inside one organization, files beside the fixture, JSON-compatible values).
Records keep the mapping exactly as typed, so unknown extra keys are stored verbatim.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import math
import re
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self, TypeVar

import yaml
from data_export.settings import Settings
from data_export.storage.layout import BINARY_FIELDS, RECORD_SECTIONS, asset_key, asset_ref, partition_key
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    model_validator,
)

if TYPE_CHECKING:
    from botocore.config import Config
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, WriteRequestUnionTypeDef
    from mypy_boto3_s3 import S3Client

try:  # libyaml is several times faster on big (benchmark) fixtures
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

SUPPORTED_FORMAT = 1
ID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

_ID = re.compile(f"[{ID_ALPHABET}]{{22}}")
_GTIN = re.compile(r"[0-9]{8}|[0-9]{12,14}")
_API_KEY = re.compile(r"(csb|csu|cpk)_([A-Za-z0-9]{32})_([0-9a-f]{8})")
_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?(?:Z|[+-][0-9]{2}:[0-9]{2})"
)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_CONTENT_TYPE = re.compile(r"[\w.+-]+/[\w.+-]+(?:\s*;.*)?")
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_LIST_SECTIONS = ("members", "api_keys", "brands", "products", "offers", "locations")
# Reference fields: section -> field -> section of the record it names (in the same organization).
_REFERENCES = {
    "products": {"brand_id": "brands"},
    "offers": {"product_id": "products", "location_id": "locations"},
    "api_keys": {"member_id": "members"},
}
_SINGULAR = {"brands": "brand", "products": "product", "locations": "location", "members": "member"}
_BATCH_WRITE_LIMIT = 25
_BATCH_WRITE_ATTEMPTS = 8
# Requests in flight while seeding (boto3 clients are thread-safe). Measured in docs/scaling.md, "Seeding".
SEED_THREADS = 8
_ASSETS_PER_TASK = 50
_INVALID_FIXTURE = 3  # exit status of ``python -m data_export_cli.seed`` for an invalid fixture
_T = TypeVar("_T")


# --- problems -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    path: str  # e.g. "organizations[0].products[3].gtin"; "" for the whole document
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class FixtureError(ValueError):
    """An invalid fixture, with every problem found (``str()`` lists them one per line)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


# --- field formats --------------------------------------------------------------------------------------


def _short_id(value: str) -> str:
    if not _ID.fullmatch(value):
        raise ValueError(f"{value!r} is not a 22-character shortuuid")
    return value


def _timestamp(value: str) -> str:
    if _TIMESTAMP.fullmatch(value):
        try:
            datetime.fromisoformat(value)
        except ValueError:
            pass  # right shape, impossible date or offset
        else:
            return value
    raise ValueError(f"{value!r} is not an ISO-8601 timestamp with an offset, like 2024-03-02T09:15:00+00:00")


def gs1_check_digit_ok(digits: str) -> bool:
    """True when the last digit is the GS1 check digit of the others (weights 3,1,3,... from the right)."""
    body = digits[:-1]
    total = sum(int(digit) * (3 if position % 2 == 0 else 1) for position, digit in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == int(digits[-1])


def _gtin(value: str) -> str:
    if not _GTIN.fullmatch(value):
        raise ValueError("must be a string of 8, 12, 13 or 14 digits")
    if not gs1_check_digit_ok(value):
        raise ValueError(f"{value!r} has a wrong GS1 check digit")
    return value


def api_key_checksum(body: str) -> str:
    return f"{zlib.crc32(body.encode()):08x}"


def _api_key(value: str) -> str:
    # Messages never repeat the raw key: it is a secret.
    match = _API_KEY.fullmatch(value)
    if match is None:
        raise ValueError("must be <csb|csu|cpk>_<32 letters or digits>_<8 lowercase hex digits>")
    if api_key_checksum(match[2]) != match[3]:
        raise ValueError("checksum is not the CRC-32 of the key body")
    return value


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise ValueError(f"{value!r} is not an email address")
    return value


def _content_type(value: str) -> str:
    if not _CONTENT_TYPE.fullmatch(value):
        raise ValueError(f"{value!r} is not a media type like image/png")
    return value


def _amount(value: Any) -> Any:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if (is_number and math.isfinite(value) and value >= 0) or (
        isinstance(value, str) and _DECIMAL.fullmatch(value)
    ):
        return value
    raise ValueError('must be a non-negative decimal, as a string like "21.50" or a number')


def _format(value: int) -> int:
    if value != SUPPORTED_FORMAT:
        raise ValueError(f"unsupported fixture format {value}; this loader reads format {SUPPORTED_FORMAT}")
    return value


ShortId = Annotated[str, AfterValidator(_short_id)]
Timestamp = Annotated[str, AfterValidator(_timestamp)]
Gtin = Annotated[str, AfterValidator(_gtin)]
RawApiKey = Annotated[str, AfterValidator(_api_key)]
Email = Annotated[str, AfterValidator(_email)]
ContentType = Annotated[str, AfterValidator(_content_type)]
Text = Annotated[str, StringConstraints(min_length=1)]
Amount = Annotated[Any, AfterValidator(_amount)]

# strict: YAML already gives typed values, so a number where a string belongs (an unquoted gtin) is an error.
_CLOSED = ConfigDict(strict=True, frozen=True, extra="forbid")
_OPEN = ConfigDict(strict=True, frozen=True, extra="allow")


# --- structure ------------------------------------------------------------------------------------------


class GeneratedBytes(BaseModel):
    model_config = _CLOSED
    size_bytes: Annotated[int, Field(ge=0)]
    seed: int


class Binary(BaseModel):
    # Closed: a binary is stored as an asset reference, so an unknown key here would be lost.
    model_config = _CLOSED
    filename: Text
    content_type: ContentType
    file: str | None = None
    generate: GeneratedBytes | None = None
    missing: bool = False

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Self:
        given = {"file": self.file, "generate": self.generate, "missing": self.missing or None}
        sources = [name for name, value in given.items() if value is not None]
        if len(sources) != 1:
            found = ", ".join(sources) or "none"
            raise ValueError(f"needs exactly one source: file, generate or missing: true (found {found})")
        return self


class Price(BaseModel):
    model_config = _OPEN
    amount: Amount
    currency: Text


class Record(BaseModel):
    """A record; ``as_typed()`` gives it back exactly as in the fixture, unknown extra keys included."""

    model_config = _OPEN
    id: ShortId
    _as_typed: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_as_typed(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        record = handler(data)
        if isinstance(data, dict):
            record._as_typed = data
        return record

    def as_typed(self) -> dict[str, Any]:
        return copy.deepcopy(self._as_typed)


class OrganizationProfile(Record):
    name: Text
    slug: Text
    created_at: Timestamp
    description: str | None = None
    website: str | None = None
    country: str | None = None
    settings: dict[str, Any] | None = None
    logo: Binary | None = None


class Member(Record):
    email: Email
    name: Text
    role: Literal["owner", "manager", "editor", "billing"]
    joined_at: Timestamp
    title: str | None = None
    phone: str | None = None


class ApiKey(Record):
    name: Text
    key: RawApiKey
    created_at: Timestamp
    member_id: ShortId | None = None
    is_active: bool = True
    expires_at: Timestamp | None = None
    last_used: Timestamp | None = None
    rate_limit_per_minute: Annotated[int, Field(ge=0)] | None = None
    rate_limit_per_day: Annotated[int, Field(ge=0)] | None = None

    @property
    def prefix(self) -> str:
        return self.key.split("_", 1)[0]


class Brand(Record):
    name: Text
    created_at: Timestamp
    description: str | None = None
    website: str | None = None
    logo: Binary | None = None
    tags: list[str] | None = None


class Product(Record):
    name: Text
    gtin: Gtin
    created_at: Timestamp
    brand_id: ShortId | None = None
    description: str | None = None
    attributes: dict[str, Any] | None = None
    tags: list[str] | None = None
    price: Price | None = None
    images: list[Binary] | None = None
    documents: list[Binary] | None = None


class Offer(Record):
    product_id: ShortId
    location_id: ShortId
    price: Price
    stock_status: Literal["in_stock", "low_stock", "out_of_stock", "unknown"]
    updated_at: Timestamp
    url: str | None = None


class Location(Record):
    name: Text
    kind: Literal["store", "warehouse", "online"]
    address: dict[str, Any]
    created_at: Timestamp
    latitude: Annotated[float, Field(ge=-90, le=90)] | None = None
    longitude: Annotated[float, Field(ge=-180, le=180)] | None = None
    opening_hours: dict[str, Any] | None = None


class OrganizationData(BaseModel):
    model_config = _CLOSED
    organization: OrganizationProfile
    members: list[Member] = []
    api_keys: list[ApiKey] = []
    brands: list[Brand] = []
    products: list[Product] = []
    offers: list[Offer] = []
    locations: list[Location] = []

    @property
    def id(self) -> str:
        return self.organization.id

    def records(self, section: str) -> Sequence[Record]:
        """Records of one of ``layout.RECORD_SECTIONS`` (the profile is the one record of "organization")."""
        if section == "organization":
            return (self.organization,)
        if section not in RECORD_SECTIONS:
            raise ValueError(f"unknown section {section!r}")
        records: Sequence[Record] = getattr(self, section)
        return records


class Fixture(BaseModel):
    model_config = _CLOSED
    format: Annotated[int, AfterValidator(_format)]
    organizations: list[OrganizationData] = []
    _base_dir: Path = PrivateAttr(default_factory=Path)

    @property
    def base_dir(self) -> Path:
        """Folder of the fixture, which ``file:`` binaries are relative to."""
        return self._base_dir

    def binary_size(self, binary: Binary) -> int | None:
        """Size in bytes of a binary's content; None for a missing asset."""
        if binary.generate is not None:
            return binary.generate.size_bytes
        if binary.file is not None:
            return (self._base_dir / binary.file).stat().st_size
        return None

    def binary_bytes(self, binary: Binary) -> bytes | None:
        """Content of a binary; None for a missing asset."""
        if binary.generate is not None:
            return generate_bytes(binary.generate.size_bytes, binary.generate.seed)
        if binary.file is not None:
            return (self._base_dir / binary.file).read_bytes()
        return None


def generate_bytes(size_bytes: int, seed: int) -> bytes:
    """The deterministic content of a ``generate:`` binary, the same on every machine."""
    return hashlib.shake_256(str(seed).encode()).digest(size_bytes)


# --- loading and validating -----------------------------------------------------------------------------


class _FixtureLoader(_BaseLoader):
    """SafeLoader that keeps timestamps as the strings typed and rejects duplicate mapping keys."""

    yaml_implicit_resolvers = {  # noqa: RUF012 - PyYAML's own class attribute, replaced not mutated
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        # PyYAML silently keeps the last of two equal keys, which would drop data without a word.
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key_node.value!r}",
                        key_node.start_mark,
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep)


def load_fixture(path: Path) -> Fixture:
    """Parse and validate the fixture file at ``path``; raise ``FixtureError`` listing every problem."""
    return validate_fixture_data(parse_fixture(path.read_bytes()), path.parent)


def parse_fixture(source: str | bytes) -> Any:
    """The YAML document as plain data, timestamps kept as typed; ``FixtureError`` when it is not YAML."""
    try:
        return yaml.load(source, Loader=_FixtureLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise FixtureError([Problem("", f"{where}{error.problem or error.context}")]) from None
    except yaml.YAMLError as error:
        raise FixtureError([Problem("", " ".join(str(error).split()))]) from None


def validate_fixture_data(data: Any, base_dir: Path) -> Fixture:
    """Validate already-parsed fixture data whose ``file:`` paths are relative to ``base_dir``."""
    data = copy.deepcopy(data)  # records keep their input mapping: the caller's must not change under them
    problems: list[Problem] = []
    fixture: Fixture | None = None
    try:
        fixture = Fixture.model_validate(data)
    except ValidationError as error:
        problems.extend(_pydantic_problems(error))
    reported = {problem.path for problem in problems}
    problems.extend(problem for problem in _non_json_values(data, "") if problem.path not in reported)
    problems.extend(_cross_record_problems(data, base_dir))
    if problems:
        raise FixtureError(problems)
    assert fixture is not None
    fixture._base_dir = base_dir.resolve()
    return fixture


def _pydantic_problems(error: ValidationError) -> Iterator[Problem]:
    for detail in error.errors(include_url=False):
        if detail["type"] == "value_error":
            message = str(detail["ctx"]["error"])  # our validators' own words, without "Value error, "
        elif detail["type"] == "extra_forbidden":
            message = "unknown key"
        elif detail["type"] == "string_type" and isinstance(detail["input"], int | float):
            message = f"{detail['msg']}: quote it, YAML read {detail['input']!r}"  # gtin: 0123…, country: NO
        else:
            message = detail["msg"]
        yield Problem(_location_path(detail["loc"]), message)


def _location_path(loc: tuple[int | str, ...]) -> str:
    """``("organizations", 0, "products", 3, "gtin")`` -> ``"organizations[0].products[3].gtin"``."""
    path = ""
    for position, part in enumerate(loc):
        if part == "[key]":  # pydantic's marker after a mapping key that failed
            continue
        is_mapping_key = position + 1 < len(loc) and loc[position + 1] == "[key]"
        if isinstance(part, int) and not is_mapping_key:
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _non_json_values(value: Any, path: str) -> Iterator[Problem]:
    """Values that JSON cannot hold exactly (extra keys are free-form, so pydantic does not see them all)."""
    if isinstance(value, dict):
        for key, item in value.items():
            item_path = f"{path}.{key}" if path else str(key)
            if isinstance(key, str):
                yield from _non_json_values(item, item_path)
            else:
                yield Problem(item_path, f"key {key!r} must be a string")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _non_json_values(item, f"{path}[{index}]")
    elif isinstance(value, float) and not math.isfinite(value):
        yield Problem(path, "must be a finite number")
    elif value is not None and not isinstance(value, str | int | float | bool):
        yield Problem(path, f"a {type(value).__name__} is not JSON data (quote it)")


def _raw_records(data: Any) -> Iterator[tuple[int, str, str, dict[str, Any]]]:
    """(organization index, section, path, record) of every record that is at least a mapping."""
    organizations = data.get("organizations") if isinstance(data, dict) else None
    if not isinstance(organizations, list):
        return
    for org_index, entry in enumerate(organizations):
        if not isinstance(entry, dict):
            continue
        prefix = f"organizations[{org_index}]"
        if isinstance(profile := entry.get("organization"), dict):
            yield org_index, "organization", f"{prefix}.organization", profile
        for section in _LIST_SECTIONS:
            if isinstance(records := entry.get(section), list):
                for index, record in enumerate(records):
                    if isinstance(record, dict):
                        yield org_index, section, f"{prefix}.{section}[{index}]", record


def _cross_record_problems(data: Any, base_dir: Path) -> Iterator[Problem]:
    # Works on the raw data, skipping what is malformed (pydantic reports that), so it runs on any input.
    records = list(_raw_records(data))
    owners: dict[str, tuple[int, str, str]] = {}  # id -> (organization index, section, path) of first use
    raw_keys: dict[str, str] = {}  # raw api key -> path of its first use
    for org_index, section, path, record in records:
        record_id = record.get("id")
        if isinstance(record_id, str):
            if record_id in owners:
                first_use = owners[record_id][2]
                yield Problem(f"{path}.id", f"duplicate id {record_id!r} (first used at {first_use})")
            else:
                owners[record_id] = (org_index, section, f"{path}.id")
        if section == "api_keys":
            key = record.get("key")
            if isinstance(key, str):
                if key.startswith("csu_") and record.get("member_id") is None:
                    yield Problem(f"{path}.member_id", "required for csu (user-scoped) keys")
                if key in raw_keys:
                    yield Problem(f"{path}.key", f"same raw key as {raw_keys[key]}")
                else:
                    raw_keys[key] = f"{path}.key"
        yield from _file_problems(section, path, record, base_dir)
    for org_index, section, path, record in records:
        for field, target in _REFERENCES.get(section, {}).items():
            value = record.get(field)
            if isinstance(value, str):
                message = _reference_problem(value, target, org_index, owners.get(value))
                if message:
                    yield Problem(f"{path}.{field}", message)


def _reference_problem(value: str, target: str, org_index: int, owner: tuple[int, str, str] | None) -> str:
    what = _SINGULAR[target]
    if owner is None:
        return f"no {what} has id {value!r}"
    if owner[0] != org_index:
        return f"{value!r} is a {what} of organizations[{owner[0]}], not of this organization"
    if owner[1] != target:
        return f"{value!r} is not a {what} (it is a record of {owner[1]})"
    return ""


def _file_problems(section: str, path: str, record: dict[str, Any], base_dir: Path) -> Iterator[Problem]:
    for field, is_list in BINARY_FIELDS.get(section, {}).items():
        value = record.get(field)
        located: list[tuple[str, Any]]
        if is_list:
            located = [(f"{field}[{i}]", b) for i, b in enumerate(value)] if isinstance(value, list) else []
        else:
            located = [(field, value)]
        for where, binary in located:
            if isinstance(binary, dict) and isinstance(file := binary.get("file"), str):
                message = _file_problem(base_dir, file)
                if message:
                    yield Problem(f"{path}.{where}.file", message)


def _file_problem(base_dir: Path, relative: str) -> str:
    if Path(relative).is_absolute():
        return f"{relative!r} must be a path relative to the fixture's folder"
    folder = base_dir.resolve()
    target = (folder / relative).resolve()  # resolves symlinks too: a link out of the folder escapes
    if not target.is_relative_to(folder):
        return f"{relative!r} escapes the fixture's folder"
    if not target.is_file():
        return f"{relative!r} is not a file beside the fixture"
    return ""


# --- seeding --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedSummary:
    organization_ids: tuple[str, ...]
    records: dict[str, int]  # per section: RECORD_SECTIONS and "api_keys"
    assets: int  # objects written to the assets bucket
    asset_bytes: int
    missing_assets: int  # ``missing: true`` binaries (referenced, no object)


def seed_file(
    path: Path, *, dynamodb_client: DynamoDBClient, s3_client: S3Client, settings: Settings
) -> SeedSummary:
    """Validate the fixture at ``path`` fully, then load it; an invalid fixture raises and loads nothing."""
    fixture = load_fixture(path)
    return seed_stores(fixture, dynamodb_client=dynamodb_client, s3_client=s3_client, settings=settings)


def seed_file_in_subprocess(path: Path, *, environment: Mapping[str, str] | None = None) -> SeedSummary:
    """``seed_file`` in a child Python (``python -m data_export_cli.seed FILE``) that reaches AWS through
    the environment (``environment``, else this process's: the local stack sets AWS_ENDPOINT_URL, the
    admin's keys and the stores' names). The local stack's moto server runs in this process, where every
    request costs it CPU under one GIL; so the seeder's own work (YAML, validation, content, botocore)
    runs beside it, on another core. Raises ``FixtureError`` as ``seed_file`` does, RuntimeError when the
    child fails otherwise (its traceback on this process's stderr)."""
    completed = subprocess.run(  # noqa: S603 - this interpreter, this module, a path
        [sys.executable, "-m", "data_export_cli.seed", str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(environment) if environment is not None else None,
        check=False,
    )
    lines = completed.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    if completed.returncode == _INVALID_FIXTURE and "problems" in result:
        raise FixtureError([Problem(where, message) for where, message in result["problems"]])
    if completed.returncode != 0 or "organization_ids" not in result:
        raise RuntimeError(f"seeding {path} failed in its subprocess (exit {completed.returncode})")
    return SeedSummary(**{**result, "organization_ids": tuple(result["organization_ids"])})


def _main(argv: Sequence[str]) -> int:
    """``python -m data_export_cli.seed FILE``: what ``seed_file_in_subprocess`` runs."""
    from data_export.settings import get_settings

    [path] = argv
    try:
        fixture = load_fixture(Path(path))
    except FixtureError as error:
        print(json.dumps({"problems": [[problem.path, problem.message] for problem in error.problems]}))
        return _INVALID_FIXTURE
    clients = seeding_clients()
    summary = seed_stores(
        fixture, dynamodb_client=clients["dynamodb"], s3_client=clients["s3"], settings=get_settings()
    )
    print(json.dumps(dataclasses.asdict(summary)))
    return 0


def seed_stores(
    fixture: Fixture,
    *,
    dynamodb_client: DynamoDBClient,
    s3_client: S3Client,
    settings: Settings,
    threads: int = SEED_THREADS,
) -> SeedSummary:
    """Load a validated fixture into the stores; every write is a put, so seeding again changes nothing.

    Up to ``threads`` requests run at once, but never more than a client's connection pool holds
    (``seeding_config()`` sizes it): a request past the pool would open and drop a connection of its own."""
    counts = dict.fromkeys((*RECORD_SECTIONS, "api_keys"), 0)
    record_items: list[dict[str, AttributeValueTypeDef]] = []
    key_items: list[dict[str, AttributeValueTypeDef]] = []
    assets: list[tuple[str, Binary]] = []
    for organization in fixture.organizations:
        for section in RECORD_SECTIONS:
            for record in organization.records(section):
                stored, record_assets = _stored_record(fixture, organization.id, section, record)
                assets.extend(record_assets)
                record_items.append(
                    {
                        "partition": {"S": partition_key(organization.id, section)},
                        "record_id": {"S": record.id},
                        "record": {"S": _json(stored)},
                    }
                )
                counts[section] += 1
        for api_key in organization.api_keys:
            key_items.append(_api_key_item(organization.id, api_key))
            counts["api_keys"] += 1

    # Assets first and keys last: no record points at an asset not yet there, no key works before its data.
    # Each phase ends (every request answered) before the next starts.
    s3_threads = min(threads, _pool_size(s3_client))
    written, written_bytes, missing = _put_assets(
        s3_client, settings.assets_bucket, fixture, assets, s3_threads
    )
    dynamodb_threads = min(threads, _pool_size(dynamodb_client))
    _batch_put(dynamodb_client, settings.org_data_table, record_items, dynamodb_threads)
    _batch_put(dynamodb_client, settings.api_keys_table, key_items, dynamodb_threads)
    return SeedSummary(
        organization_ids=tuple(organization.id for organization in fixture.organizations),
        records=counts,
        assets=written,
        asset_bytes=written_bytes,
        missing_assets=missing,
    )


def seeding_config() -> Config:
    """botocore config for the seeder's clients: a connection for each of its threads, AWS's retries."""
    from botocore.config import Config

    return Config(
        max_pool_connections=SEED_THREADS, retries={"mode": "standard", "max_attempts": _BATCH_WRITE_ATTEMPTS}
    )


def seeding_clients(endpoint_url: str | None = None) -> dict[str, Any]:
    """DynamoDB and S3 clients of the default session (locally: the admin) sized for the seeder's threads."""
    import boto3

    return {
        service: boto3.client(service, endpoint_url=endpoint_url, config=seeding_config())
        for service in ("dynamodb", "s3")
    }


def _pool_size(client: Any) -> int:
    size = getattr(getattr(getattr(client, "meta", None), "config", None), "max_pool_connections", None)
    return size if isinstance(size, int) and size > 0 else 1


def _in_parallel(tasks: Sequence[Callable[[], _T]], threads: int) -> list[_T]:
    """Run the tasks, ``threads`` at a time; the first exception cancels what has not started, then rises."""
    if threads <= 1 or len(tasks) <= 1:
        return [task() for task in tasks]
    pool = ThreadPoolExecutor(max_workers=min(threads, len(tasks)), thread_name_prefix="seed")
    try:
        futures = [pool.submit(task) for task in tasks]
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _stored_record(
    fixture: Fixture, organization_id: str, section: str, record: Record
) -> tuple[dict[str, Any], list[tuple[str, Binary]]]:
    """The record as stored (binaries replaced by asset references) and its (asset key, binary) pairs."""
    stored = record.as_typed()
    assets: list[tuple[str, Binary]] = []
    for field, is_list in BINARY_FIELDS.get(section, {}).items():
        value: Binary | list[Binary] | None = getattr(record, field)
        if value is None:
            continue
        refs = []
        for index, binary in enumerate(value if isinstance(value, list) else [value]):
            key = asset_key(organization_id, section, record.id, field, index)
            refs.append(asset_ref(binary.filename, binary.content_type, key, fixture.binary_size(binary)))
            assets.append((key, binary))
        stored[field] = refs if is_list else refs[0]
    return stored, assets


def _api_key_item(organization_id: str, api_key: ApiKey) -> dict[str, AttributeValueTypeDef]:
    record = api_key.as_typed()
    del record["key"]  # the raw key exists only in the fixture
    record["is_active"] = api_key.is_active
    item: dict[str, AttributeValueTypeDef] = {
        "key_hash": {"S": hashlib.sha256(api_key.key.encode()).hexdigest()},
        "organization_id": {"S": organization_id},
        "key_id": {"S": api_key.id},
        "prefix": {"S": api_key.prefix},
        "is_active": {"BOOL": api_key.is_active},
        "record": {"S": _json(record)},
    }
    if api_key.member_id is not None:
        item["member_id"] = {"S": api_key.member_id}
    if api_key.expires_at is not None:
        item["expires_at"] = {"S": api_key.expires_at}
    return item


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _put_assets(
    s3_client: S3Client, bucket: str, fixture: Fixture, assets: Sequence[tuple[str, Binary]], threads: int
) -> tuple[int, int, int]:
    def put_slice(piece: Sequence[tuple[str, Binary]]) -> tuple[int, int, int]:
        written = written_bytes = missing = 0
        for key, binary in piece:
            body = fixture.binary_bytes(binary)
            if body is None:
                # Deleting makes "missing" true even where an earlier seed of another fixture left an object.
                s3_client.delete_object(Bucket=bucket, Key=key)
                missing += 1
                continue
            s3_client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=binary.content_type)
            written += 1
            written_bytes += len(body)
        return written, written_bytes, missing

    # Slices, not one task per asset: a future per asset would cost more than many small puts.
    slices = [assets[start : start + _ASSETS_PER_TASK] for start in range(0, len(assets), _ASSETS_PER_TASK)]
    results = _in_parallel([functools.partial(put_slice, piece) for piece in slices], threads)
    return (
        sum(result[0] for result in results),
        sum(result[1] for result in results),
        sum(result[2] for result in results),
    )


def _batch_put(
    client: DynamoDBClient, table: str, items: Sequence[dict[str, AttributeValueTypeDef]], threads: int = 1
) -> None:
    batches = [
        items[start : start + _BATCH_WRITE_LIMIT] for start in range(0, len(items), _BATCH_WRITE_LIMIT)
    ]
    _in_parallel([functools.partial(_write_batch, client, table, batch) for batch in batches], threads)


def _write_batch(
    client: DynamoDBClient, table: str, batch: Sequence[dict[str, AttributeValueTypeDef]]
) -> None:
    """One BatchWriteItem of at most 25 puts, its UnprocessedItems retried with backoff until written."""
    pending: Mapping[str, Sequence[WriteRequestUnionTypeDef]] = {
        table: [{"PutRequest": {"Item": item}} for item in batch]
    }
    for attempt in range(_BATCH_WRITE_ATTEMPTS):
        if attempt:
            time.sleep(min(0.05 * 2**attempt, 2.0))  # throttled: back off before retrying the rest
        pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
        if not pending:
            return
    left = sum(len(requests) for requests in pending.values())
    raise RuntimeError(f"DynamoDB left {left} items unprocessed in {table} after retries")


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
