"""What goes into each section folder: records as YAML, and their binaries as files beside them.

Only the organization's own binaries: a record names each binary by its object key in the assets bucket, and
the export's roles may read the whole bucket, so IAM cannot keep one organization's export from another's
objects. A reference is read only if its key lies under the organization's ``asset_prefix`` and cannot climb
out of it however it is read (``asset_refusal``); any other is *refused*: never read, reported like a missing
binary and marked ``refused: true``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from data_export.export.entries import ArchiveEntries
from data_export.export.plan import record_stem
from data_export.export.prefetch import READ_AHEAD, AssetPrefetcher
from data_export.models import SectionReport
from data_export.naming import MAX_PATH_UNITS, UniqueNames, tagged_stem, utf16_units
from data_export.storage.layout import BINARY_FIELDS, asset_prefix
from data_export.storage.objects import Asset
from data_export.yaml_emit import dump_record

# Why a reference is refused (the manifest's ``reason``): its key is not under the organization's prefix, or
# it is not a plain key (``..``, ``.`` or empty segments, backslashes, control characters, or any of those
# once Unicode-compatibility-normalised or percent-decoded), which some layer could resolve elsewhere.
OUTSIDE_ORGANIZATION = "outside_organization"
UNSAFE_KEY = "unsafe_key"
# Keys of a stored reference that the export sets itself: a record cannot pass them off as the export's.
_EXPORT_SET_KEYS = frozenset({"asset_key", "size_bytes", "file", "missing", "refused"})


@dataclass
class MissingAsset:
    """A binary that is not in the archive: absent from storage or, with a ``reason``, refused."""

    section: str
    record_id: str
    field: str
    filename: str
    reason: str | None = None  # OUTSIDE_ORGANIZATION or UNSAFE_KEY when refused

    @property
    def refused(self) -> bool:
        return self.reason is not None

    def manifest_entry(self) -> dict[str, Any]:
        """The manifest's ``missing_assets`` item (docs/archive-format.md): never the key it referenced."""
        entry: dict[str, Any] = {
            "section": self.section,
            "record_id": self.record_id,
            "field": self.field,
            "filename": self.filename,
        }
        if self.reason is not None:
            entry["refused"] = True
            entry["reason"] = self.reason
        return entry


def asset_refusal(key: str, organization_id: str) -> str | None:
    """Why the organization's export must not read ``key`` (OUTSIDE_ORGANIZATION, UNSAFE_KEY), or None."""
    if not _is_plain_key(key):
        return UNSAFE_KEY
    if not _is_plain_key(organization_id) or "/" in organization_id:
        return OUTSIDE_ORGANIZATION  # no prefix to confine the reads to: nothing is read
    prefix = asset_prefix(organization_id)
    if not key.startswith(prefix) or len(key) == len(prefix):
        return OUTSIDE_ORGANIZATION
    return None


def _is_plain_key(key: str) -> bool:
    """Segments that are names, however a layer reads the key: as is, NFKC-normalised, percent-decoded."""
    forms = {key}
    if not key.isascii():
        forms.add(unicodedata.normalize("NFKC", key))  # fullwidth "．．／" is "../" to some
    for form in list(forms):
        if "%" in form:
            forms.add(unquote(form))
    for form in forms:
        if "\\" in form or not form.isprintable():
            return False
        if any(segment in ("", ".", "..") for segment in form.split("/")):
            return False
    return True


# Room kept for a binary's file name in the longest of a section's binary folders (UTF-16 code units): record
# stems are shortened so that it is left, and a readable name with its extension fits in it.
MIN_FILE_UNITS = 40
# Record stems at most this many bytes, so that "<stem>.yaml" fits the 200 bytes of one component.
_MAX_STEM_BYTES = 200 - len(".yaml")
# Numbered names in the section folder (" (2)") may pass the stems' limit by this much.
_NUMBER_UNITS = 5


@dataclass
class SectionFolder:
    """Allocates safe, unique archive paths inside one section's folder.

    Every path, with the archive's top folder before it (``place_under``), is at most MAX_PATH_UNITS UTF-16
    code units: long file names are shortened keeping their extension (``UniqueNames``), and a record whose
    id is too long gets a shortened stem tagged with a hash of its id (``naming.tagged_stem``), the same in
    every unit of a chunked build, so that no unit needs to know the others' names."""

    key: str
    # Stems settled by the plan for records whose default name collides with another's (see export.plan).
    renamed: dict[str, str] = field(default_factory=dict)
    # UTF-16 code units for a path below the archive's top folder ("<section>/...").
    room: int = MAX_PATH_UNITS
    names: UniqueNames = field(init=False)
    subfolders: dict[str, UniqueNames] = field(init=False, default_factory=dict)
    stem_units: int = field(init=False)
    _allocated: bool = field(init=False, default=False)
    _last_stem: tuple[str | None, str] = field(init=False, default=(None, ""))

    def __post_init__(self) -> None:
        self._lay_out()

    def place_under(self, top: str) -> None:
        """Fit the paths below ``top/``, the archive's top folder; before any name is allocated."""
        if self._allocated:
            raise RuntimeError("place_under must come before any name is allocated")
        self.room = MAX_PATH_UNITS - utf16_units(top) - 1
        self._lay_out()

    def _lay_out(self) -> None:
        below = self.room - utf16_units(self.key) - 1  # after "<section>/"
        stem_units = below - len(".yaml") - _NUMBER_UNITS
        fields = BINARY_FIELDS.get(self.key, {})
        if fields:
            longest = max(utf16_units(name) for name in fields)
            # "<stem>/<field>/<file>", the stem possibly numbered, and a file name of MIN_FILE_UNITS.
            stem_units = min(stem_units, below - _NUMBER_UNITS - 1 - longest - 1 - MIN_FILE_UNITS)
        if stem_units < 2 * _NUMBER_UNITS + 16:
            raise ValueError(f"no room for the paths of section {self.key!r} within {self.room} units")
        self.stem_units = stem_units
        self.names = UniqueNames(max_units=stem_units + _NUMBER_UNITS)

    def _stem(self, record_id: str) -> str:
        self._allocated = True
        if self._last_stem[0] == record_id:  # a record's binaries' folder, then its YAML file
            return self._last_stem[1]
        stem = self.renamed.get(record_id) or record_stem(record_id)
        stem = tagged_stem(
            stem, record_id, max_units=self.stem_units, max_bytes=_MAX_STEM_BYTES, avoid_suffix=".yaml"
        )
        self._last_stem = (record_id, stem)
        return stem

    def record_file(self, record_id: str) -> str:
        if self.key == "organization":
            self._allocated = True
            return f"{self.key}/{self.names.allocate('organization.yaml')}"
        return f"{self.key}/{self.names.allocate(self._stem(record_id) + '.yaml')}"

    def binary_folder(self, record_id: str) -> str:
        return f"{self.key}/{self.names.allocate(self._stem(record_id))}"

    def binary_file(self, folder: str, filename: str) -> str:
        names = self.subfolders.get(folder)
        if names is None:
            names = self.subfolders[folder] = UniqueNames(max_units=self.room - utf16_units(folder) - 1)
        return f"{folder}/{names.allocate(filename)}"


AssetOpener = Callable[[str], Asset | None]
AssetSink = Callable[[str, Asset], None]


def export_record(
    folder: SectionFolder,
    record: dict[str, Any],
    open_asset: AssetOpener,
    write_asset: AssetSink,
    missing: list[MissingAsset],
    organization_id: str,
) -> tuple[dict[str, Any], int]:
    """The record as exported, with each binary reference pointing at its file in the archive.

    Writes the binaries through ``write_asset`` and returns the exported record and the binary count. Every
    reference is asked of ``open_asset`` in turn (read-ahead hands assets out in the order records name
    them), so ``open_asset`` must itself refuse keys outside the organization: ``owned_assets(...)``. A
    refused reference is reported and nothing it opens is written."""
    fields = BINARY_FIELDS.get(folder.key, {})
    if not any(record.get(name) for name in fields):
        return record, 0
    record_id = str(record.get("id", ""))
    exported = dict(record)
    binary_folder = folder.binary_folder(record_id)
    written = 0
    for name, is_list in fields.items():
        value = record.get(name)
        if not value:
            continue
        refs: list[dict[str, Any]] = value if is_list else [value]
        out: list[dict[str, Any]] = []
        for ref in refs:
            exported_ref = {k: v for k, v in ref.items() if k not in _EXPORT_SET_KEYS}
            key = str(ref["asset_key"])
            refusal = asset_refusal(key, organization_id)
            asset = open_asset(key)
            if refusal is not None and asset is not None:
                asset.close()  # an unguarded opener: still, not one byte of it goes into the archive
                asset = None
            if asset is None:
                exported_ref["missing"] = True
                if refusal is not None:
                    exported_ref["refused"] = True
                missing.append(
                    MissingAsset(folder.key, record_id, name, str(ref.get("filename", "")), refusal)
                )
            else:
                path = folder.binary_file(f"{binary_folder}/{name}", str(ref.get("filename", "")))
                write_asset(path, asset)
                exported_ref["size_bytes"] = asset.size
                exported_ref["file"] = path
                written += 1
            out.append(exported_ref)
        exported[name] = out if is_list else out[0]
    return exported, written


def owned_assets(open_asset: AssetOpener, organization_id: str) -> AssetOpener:
    """``open_asset`` confined to the organization's assets: a refused key is never sent to the store."""

    def open_owned(key: str) -> Asset | None:
        if asset_refusal(key, organization_id) is not None:
            return None
        return open_asset(key)

    return open_owned


def write_section(
    entries: ArchiveEntries,
    top: str,
    folder: SectionFolder,
    records: Iterable[dict[str, Any]],
    open_asset: AssetOpener,
    report: SectionReport,
    missing: list[MissingAsset],
    on_record: Callable[[dict[str, Any]], None] = lambda record: None,
    *,
    organization_id: str,
    read_ahead: int = READ_AHEAD,
) -> None:
    """Write records (YAML) and their binaries under ``top/`` (every path within MAX_PATH_UNITS UTF-16
    units), counting them in ``report``; ``on_record`` is told of each record once it is written. Binaries
    are read only under ``organization_id``'s prefix (the others are refused, see ``asset_refusal``). Up to
    ``read_ahead`` asset reads are kept in flight ahead of the writer (export.prefetch); 0 reads each asset
    when its turn comes."""
    open_owned = owned_assets(open_asset, organization_id)
    folder.place_under(top)

    def write_asset(path: str, asset: Asset) -> None:
        entries.add_asset(f"{top}/{path}", asset)

    def write(records: Iterable[dict[str, Any]], open_asset: AssetOpener) -> None:
        for record in records:
            exported, binaries = export_record(
                folder, record, open_asset, write_asset, missing, organization_id
            )
            entries.add_file(f"{top}/{folder.record_file(str(record.get('id', '')))}", dump_record(exported))
            report.record_count += 1
            report.binary_count += binaries
            on_record(record)

    fields = BINARY_FIELDS.get(folder.key, {})
    if read_ahead <= 0 or not fields:
        write(records, open_owned)
        return
    # The read-ahead reads through the guard too: a refused key is not even read ahead.
    with AssetPrefetcher(open_owned, fields, max_in_flight=read_ahead) as prefetcher:
        write(prefetcher.records(records), prefetcher.open)


def missing_summary(missing: Sequence[MissingAsset]) -> str | None:
    """A section's error line for the assets it could not include (None when there are none): the missing
    ones, then the refused ones."""
    absent = [m for m in missing if not m.refused]
    refused = [m for m in missing if m.refused]
    parts = []
    if absent:
        parts.append(f"{len(absent)} missing asset(s) not in the archive: {_names(absent)}")
    if refused:
        parts.append(
            f"{len(refused)} asset reference(s) refused, outside the organization's assets, not read: "
            f"{_names(refused)}"
        )
    return "; ".join(parts) or None


def _names(missing: Sequence[MissingAsset]) -> str:
    return ", ".join(f"{m.record_id}/{m.field}/{m.filename}" for m in missing)
