"""What an import writes: the archive's records read back into the stores' form, checked, and compared with
the target organization (docs/archive-format.md, "Importing an archive").

``plan_import`` turns the verified archive's YAML files into an ``ImportPlan``: the records to write (in an
order where every reference is written before what refers to it), the binaries to copy into the assets
bucket, and per section what would be created, what already exists, and what is invalid and why. It writes
nothing: the dry run is the plan; the apply (restore.runner) carries it out.

Ids. ``restore`` keeps the archive's ids (it loads an archive back into the organization it came from).
``copy`` gives every record a new id derived from (target, source, section, old id): the same archive copied
again into the same organization maps to the same ids, which is what makes the apply idempotent and a failed
apply resumable: a record already there is skipped, never duplicated. References (brand_id, product_id,
location_id) are mapped with the ids.

Members and API keys are never imported: people and secrets are not data to copy.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import shortuuid
import yaml

from data_export.models import (
    ArchiveProblem,
    ImportMode,
    ImportSectionReport,
    InvalidRecord,
)
from data_export.storage.layout import BINARY_FIELDS, asset_key

try:  # libyaml reads big archives several times faster
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

# The archive's sections in archive order; the ones never imported, and why.
ARCHIVE_SECTIONS = ("organization", "members", "api_keys", "brands", "products", "offers", "locations")
NOT_IMPORTED = {
    "members": "never imported: people are invited to an organization, not copied into it",
    "api_keys": "never imported: keys are secrets, and an export holds only their metadata",
}
# Order of the writes: what a record refers to is written before it; the profile last (a copy merges it).
WRITE_ORDER = ("locations", "brands", "products", "offers", "organization")
# Fields a record must have (shared/spec/seed-fixture.md), and its references: field -> section.
REQUIRED = {
    "organization": ("id", "name", "slug", "created_at"),
    "brands": ("id", "name", "created_at"),
    "products": ("id", "name", "gtin", "created_at"),
    "offers": ("id", "product_id", "location_id", "price", "stock_status", "updated_at"),
    "locations": ("id", "name", "kind", "address", "created_at"),
}
REFERENCES = {
    "products": {"brand_id": "brands"},
    "offers": {"product_id": "products", "location_id": "locations"},
}
# Keys of an exported binary reference that the export set: not part of the stored reference.
_EXPORTED_REF_KEYS = frozenset({"file", "missing", "refused", "size_bytes", "asset_key"})
# A copy never replaces these fields of the target's profile, empty or not.
_PROFILE_KEPT = frozenset({"id", "slug", "created_at"})
MAX_INVALID_LISTED = 100
MAX_ID_BYTES = 1024


def copied_id(target_organization_id: str, source_organization_id: str, section: str, record_id: str) -> str:
    """The id a copy gives a record: stable, so that copying the same archive again finds it."""
    name = f"data-export-import:{target_organization_id}:{source_organization_id}:{section}:{record_id}"
    return str(shortuuid.uuid(name=name))


@dataclass
class PlannedRecord:
    section: str
    record_id: str  # in the target
    path: str  # its YAML file in the archive
    record: dict[str, Any]  # as the store keeps it
    replaces: bool = False  # overwrite=true of an existing record, or a profile merge


@dataclass
class PlannedBinary:
    entry_index: int
    path: str  # in the archive, below the top folder
    key: str  # in the assets bucket
    size: int
    section: str
    sha256: str


@dataclass
class ImportPlan:
    mode: ImportMode
    source_organization_id: str
    source_job_id: str | None
    format_version: str
    archive_etag: str = ""  # the uploaded archive the plan was made of
    archive_format: str = ""
    top: str = ""  # the archive's top folder
    records: list[PlannedRecord] = field(default_factory=list)
    binaries: list[PlannedBinary] = field(default_factory=list)
    sections: dict[str, ImportSectionReport] = field(default_factory=dict)
    problems: list[ArchiveProblem] = field(default_factory=list)

    @property
    def invalid_count(self) -> int:
        return sum(report.invalid_count for report in self.sections.values())

    @property
    def bytes_total(self) -> int:
        return sum(binary.size for binary in self.binaries)

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "mode": self.mode.value,
                "source_organization_id": self.source_organization_id,
                "source_job_id": self.source_job_id,
                "format_version": self.format_version,
                "archive_etag": self.archive_etag,
                "archive_format": self.archive_format,
                "top": self.top,
                "records": [asdict(record) for record in self.records],
                "binaries": [asdict(binary) for binary in self.binaries],
                "sections": [report.model_dump(mode="json") for report in self.sections.values()],
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ImportPlan:
        raw = json.loads(data)
        sections = [ImportSectionReport.model_validate(item) for item in raw["sections"]]
        return cls(
            mode=ImportMode(raw["mode"]),
            source_organization_id=raw["source_organization_id"],
            source_job_id=raw["source_job_id"],
            format_version=raw["format_version"],
            archive_etag=raw["archive_etag"],
            archive_format=raw["archive_format"],
            top=raw["top"],
            records=[PlannedRecord(**item) for item in raw["records"]],
            binaries=[PlannedBinary(**item) for item in raw["binaries"]],
            sections={report.key: report for report in sections},
        )


# What the plan asks of the target: its records of one section by id (absent ones left out), and which of
# some asset keys hold an object.
ExistingRecords = Callable[[str, Collection[str]], Mapping[str, dict[str, Any]]]
ExistingObjects = Callable[[Collection[str]], Collection[str]]


@dataclass
class _Parsed:
    section: str
    path: str
    record: dict[str, Any]
    source_id: str


class _Planner:
    def __init__(
        self,
        *,
        mode: ImportMode,
        overwrite: bool,
        target: str,
        manifest: Mapping[str, Any],
        entries: Mapping[str, tuple[int, int, str]],
        existing_records: ExistingRecords,
        existing_objects: ExistingObjects,
    ) -> None:
        self.mode = mode
        self.overwrite = overwrite
        self.target = target
        organization = manifest.get("organization")
        self.source = str(organization.get("id", "")) if isinstance(organization, Mapping) else ""
        self.entries = entries  # path -> (entry index, size, sha256) of every file of the archive
        self.existing_records = existing_records
        self.existing_objects = existing_objects
        self.plan = ImportPlan(
            mode=mode,
            source_organization_id=self.source,
            source_job_id=str(manifest["job_id"]) if manifest.get("job_id") else None,
            format_version=str(manifest.get("format_version", "")),
            sections={key: ImportSectionReport(key=key) for key in ARCHIVE_SECTIONS},
        )
        for key, reason in NOT_IMPORTED.items():
            self.plan.sections[key].skipped_reason = reason
        # section -> source id -> target id, of the archive's valid records
        self.ids: dict[str, dict[str, str]] = {key: {} for key in REQUIRED}
        self.files_used: set[str] = set()  # each binary file of the archive belongs to one reference

    def invalid(self, section: str, path: str, reason: str) -> None:
        report = self.plan.sections[section]
        report.invalid_count += 1
        if len(report.invalid) < MAX_INVALID_LISTED:
            report.invalid.append(InvalidRecord(path=path, reason=reason[:300]))

    def target_id(self, section: str, source_id: str) -> str:
        if self.mode is ImportMode.RESTORE:
            return source_id
        if section == "organization":
            return self.target
        return copied_id(self.target, self.source, section, source_id)

    # -- reading -----------------------------------------------------------------------------------------
    def parse(self, yaml_files: Mapping[str, bytes]) -> list[_Parsed]:
        parsed: list[_Parsed] = []
        seen: dict[tuple[str, str], str] = {}
        for path, data in yaml_files.items():
            section = path.split("/", 1)[0]
            if section not in self.plan.sections:
                self.plan.problems.append(
                    ArchiveProblem(
                        code="unknown_section",
                        path=path,
                        message=f"'{section}' is not a section of format 1.0; the file is not imported",
                    )
                )
                continue
            if path.count("/") != 1:
                continue  # a YAML binary (e.g. a document named *.yaml) inside a record's folder
            report = self.plan.sections[section]
            report.records += 1
            if section in NOT_IMPORTED:
                continue
            try:
                record = yaml.load(data, Loader=_Loader)
            except yaml.YAMLError as error:
                mark = getattr(error, "problem_mark", None)
                where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
                self.invalid(section, path, f"not valid YAML{where}")
                continue
            if not isinstance(record, dict):
                self.invalid(section, path, "not a mapping of fields")
                continue
            missing = [name for name in REQUIRED[section] if record.get(name) in (None, "")]
            if missing:
                self.invalid(section, path, f"missing required field(s): {', '.join(missing)}")
                continue
            source_id = record["id"]
            if not isinstance(source_id, str) or len(source_id.encode()) > MAX_ID_BYTES:
                self.invalid(section, path, "id is not a string of at most 1024 bytes")
                continue
            if section == "organization" and source_id != self.source:
                self.invalid(section, path, "the profile's id is not the manifest's organization id")
                continue
            if (section, source_id) in seen:
                self.invalid(section, path, f"id {source_id!r} already used by {seen[(section, source_id)]}")
                continue
            problem = self.binaries_problem(section, record)
            if problem is not None:
                self.invalid(section, path, problem)
                continue
            seen[(section, source_id)] = path
            self.ids[section][source_id] = self.target_id(section, source_id)
            parsed.append(_Parsed(section, path, record, source_id))
        return parsed

    def binaries_problem(self, section: str, record: dict[str, Any]) -> str | None:
        files = []
        for name, is_list in BINARY_FIELDS.get(section, {}).items():
            value = record.get(name)
            if value is None:
                continue
            refs = value if is_list else [value]
            if not isinstance(refs, list) or not all(isinstance(ref, dict) for ref in refs):
                return f"{name} is not {'a list of binary references' if is_list else 'a binary reference'}"
            for ref in refs:
                if not isinstance(ref.get("filename"), str):
                    return f"a binary of {name} has no filename"
                if ref.get("missing") is True:
                    continue
                file = ref.get("file")
                if not isinstance(file, str) or file not in self.entries:
                    return f"{name} refers to a file that is not in the archive: {str(file)[:120]!r}"
                if file.endswith(".yaml") and file.count("/") == 1:
                    return f"{name} refers to a record file, not a binary: {file!r}"
                if file in self.files_used or file in files:
                    return f"{name} refers to a file another binary reference already uses: {file!r}"
                files.append(file)
        self.files_used.update(files)
        return None

    def reference_problem(self, parsed: _Parsed, existing: Mapping[tuple[str, str], bool]) -> str | None:
        for name, section in REFERENCES.get(parsed.section, {}).items():
            value = parsed.record.get(name)
            if value is None and name == "brand_id":
                continue  # a product without a brand
            if not isinstance(value, str):
                return f"{name} is not an id"
            if value in self.ids[section]:
                continue
            if self.mode is ImportMode.RESTORE and existing.get((section, value)):
                continue  # restore: the target still has it
            return f"{name} {value!r} names no {section[:-1]} of the archive" + (
                " nor of the organization" if self.mode is ImportMode.RESTORE else ""
            )
        return None

    # -- the target form ---------------------------------------------------------------------------------
    def stored(self, parsed: _Parsed, target_id: str) -> tuple[dict[str, Any], list[PlannedBinary]]:
        record = dict(parsed.record)
        record["id"] = target_id
        for name, section in REFERENCES.get(parsed.section, {}).items():
            value = record.get(name)
            if isinstance(value, str):
                record[name] = self.ids[section].get(value, value)
        binaries: list[PlannedBinary] = []
        for name, is_list in BINARY_FIELDS.get(parsed.section, {}).items():
            value = record.get(name)
            if value is None:
                continue
            refs: list[dict[str, Any]] = value if is_list else [value]
            stored_refs = []
            for index, ref in enumerate(refs):
                key = asset_key(self.target, parsed.section, target_id, name, index)
                stored_ref = {k: v for k, v in ref.items() if k not in _EXPORTED_REF_KEYS}
                stored_ref["asset_key"] = key
                if ref.get("missing") is not True:
                    entry_index, size, sha256 = self.entries[ref["file"]]
                    stored_ref["size_bytes"] = size
                    binaries.append(
                        PlannedBinary(entry_index, ref["file"], key, size, parsed.section, sha256)
                    )
                stored_refs.append(stored_ref)
            record[name] = stored_refs if is_list else stored_refs[0]
        return record, binaries

    def run(self, yaml_files: Mapping[str, bytes]) -> ImportPlan:
        parsed = self.parse(yaml_files)
        # What the target has: the archive's records (by target id) and, for a restore, what they refer to.
        wanted: dict[str, set[str]] = {key: set() for key in REQUIRED}
        for item in parsed:
            wanted[item.section].add(self.ids[item.section][item.source_id])
            if self.mode is ImportMode.RESTORE:
                for name, section in REFERENCES.get(item.section, {}).items():
                    value = item.record.get(name)
                    if isinstance(value, str) and value not in self.ids[section]:
                        wanted[section].add(value)
        existing: dict[str, Mapping[str, dict[str, Any]]] = {
            section: self.existing_records(section, ids) if ids else {} for section, ids in wanted.items()
        }
        exists = {(section, rid): True for section, records in existing.items() for rid in records}
        # A record with a broken reference is invalid, and so is what refers to it, until nothing changes.
        valid = list(parsed)
        while True:
            kept = []
            for item in valid:
                problem = self.reference_problem(item, exists)
                if problem is None:
                    kept.append(item)
                else:
                    self.invalid(item.section, item.path, problem)
                    del self.ids[item.section][item.source_id]
            if len(kept) == len(valid):
                break
            valid = kept
        by_section: dict[str, list[_Parsed]] = {}
        for item in valid:
            by_section.setdefault(item.section, []).append(item)
        restorable: list[tuple[str, PlannedBinary]] = []  # binaries of existing records, maybe missing
        for section in WRITE_ORDER:
            report = self.plan.sections[section]
            for item in sorted(by_section.get(section, []), key=lambda parsed: parsed.source_id):
                target_id = self.ids[section][item.source_id]
                record, binaries = self.stored(item, target_id)
                report.binaries += len(binaries)
                current = existing[section].get(target_id)
                if current is None:
                    self.add(PlannedRecord(section, target_id, item.path, record), binaries)
                    report.would_create += 1
                elif section == "organization" and self.mode is ImportMode.COPY:
                    self.merge_profile(item, current, record, binaries)
                elif self.overwrite:
                    self.add(PlannedRecord(section, target_id, item.path, record, replaces=True), binaries)
                    report.overwritten += 1
                else:
                    report.skipped_existing += 1
                    if self.mode is ImportMode.RESTORE:
                        restorable += self.missing_binaries_of(item, current)
        if restorable:
            present = set(self.existing_objects([binary.key for _, binary in restorable]))
            for section, binary in restorable:
                if binary.key in present:
                    self.plan.sections[section].binaries_skipped_existing += 1
                else:
                    self.plan.binaries.append(binary)
                    self.plan.sections[section].binaries_would_restore += 1
        self.plan.binaries.sort(key=lambda binary: binary.entry_index)  # the order the archive is read in
        return self.plan

    def add(self, record: PlannedRecord, binaries: list[PlannedBinary]) -> None:
        self.plan.records.append(record)
        self.plan.binaries += binaries
        self.plan.sections[record.section].binaries_would_restore += len(binaries)

    def merge_profile(
        self, item: _Parsed, current: dict[str, Any], record: dict[str, Any], binaries: list[PlannedBinary]
    ) -> None:
        """copy: the target's profile keeps every field it has; empty ones are filled from the archive."""
        report = self.plan.sections["organization"]
        merged = dict(current)
        fields = []
        for name, value in record.items():
            if name in _PROFILE_KEPT or value in (None, "", [], {}):
                continue
            if current.get(name) in (None, "", [], {}):
                merged[name] = value
                fields.append(name)
        if not fields:
            report.skipped_existing += 1
            return
        report.merged_fields = sorted(fields)
        taken = [binary for binary in binaries if binary.key.split("/")[-2] in fields]
        self.add(PlannedRecord("organization", self.target, item.path, merged, replaces=True), taken)

    def missing_binaries_of(self, item: _Parsed, current: dict[str, Any]) -> list[tuple[str, PlannedBinary]]:
        """restore: binaries of a record the target still has, at the keys that record names, to restore if
        their objects are gone (only keys inside the organization's own assets)."""
        from data_export.export.sections import asset_refusal

        found = []
        for name, is_list in BINARY_FIELDS.get(item.section, {}).items():
            archived, stored = item.record.get(name), current.get(name)
            if archived is None or stored is None:
                continue
            archived_refs = archived if is_list else [archived]
            stored_refs = stored if is_list and isinstance(stored, list) else [stored]
            for ref, stored_ref in zip(archived_refs, stored_refs, strict=False):
                if ref.get("missing") is True or not isinstance(stored_ref, dict):
                    continue
                key = stored_ref.get("asset_key")
                if not isinstance(key, str) or asset_refusal(key, self.target) is not None:
                    continue
                if stored_ref.get("filename") != ref.get("filename"):
                    continue  # the record has changed since: its binaries are not the archive's
                entry_index, size, sha256 = self.entries[ref["file"]]
                binary = PlannedBinary(entry_index, ref["file"], key, size, item.section, sha256)
                found.append((item.section, binary))
                self.plan.sections[item.section].binaries += 1
        return found


def plan_import(
    *,
    mode: ImportMode,
    overwrite: bool,
    target_organization_id: str,
    manifest: Mapping[str, Any],
    entries: Mapping[str, tuple[int, int, str]],
    yaml_files: Mapping[str, bytes],
    existing_records: ExistingRecords,
    existing_objects: ExistingObjects,
) -> ImportPlan:
    """The plan of importing a verified archive (its manifest, its files' path -> (index, size, sha256),
    its YAML files) into ``target_organization_id``. Archive-level refusals (a restore into another
    organization) are the plan's ``problems``; per-record ones are each section's ``invalid``."""
    planner = _Planner(
        mode=mode,
        overwrite=overwrite,
        target=target_organization_id,
        manifest=manifest,
        entries=entries,
        existing_records=existing_records,
        existing_objects=existing_objects,
    )
    if mode is ImportMode.RESTORE and planner.source != target_organization_id:
        planner.plan.problems.append(
            ArchiveProblem(
                code="wrong_organization",
                path="manifest.yaml",
                message=f"the archive is an export of organization {planner.source!r}; a restore loads an "
                "archive back into the organization it came from (use mode=copy to load it into another)",
            )
        )
        return planner.plan
    return planner.run(yaml_files)
