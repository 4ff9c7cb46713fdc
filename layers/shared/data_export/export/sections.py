"""What goes into each section folder: records as YAML, and their binaries as files beside them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from data_export.export.entries import ArchiveEntries
from data_export.export.plan import record_stem
from data_export.export.prefetch import READ_AHEAD, AssetPrefetcher
from data_export.models import SectionReport
from data_export.naming import UniqueNames
from data_export.storage.layout import BINARY_FIELDS
from data_export.storage.objects import Asset
from data_export.yaml_emit import dump_record


@dataclass
class MissingAsset:
    section: str
    record_id: str
    field: str
    filename: str


@dataclass
class SectionFolder:
    """Allocates safe, unique archive paths inside one section's folder."""

    key: str
    # Stems settled by the plan for records whose default name collides with another's (see export.plan).
    renamed: dict[str, str] = field(default_factory=dict)
    names: UniqueNames = field(default_factory=UniqueNames)
    subfolders: dict[str, UniqueNames] = field(default_factory=dict)

    def _stem(self, record_id: str) -> str:
        return self.renamed.get(record_id) or record_stem(record_id)

    def record_file(self, record_id: str) -> str:
        if self.key == "organization":
            return f"{self.key}/{self.names.allocate('organization.yaml')}"
        return f"{self.key}/{self.names.allocate(self._stem(record_id) + '.yaml')}"

    def binary_folder(self, record_id: str) -> str:
        return f"{self.key}/{self.names.allocate(self._stem(record_id))}"

    def binary_file(self, folder: str, filename: str) -> str:
        names = self.subfolders.setdefault(folder, UniqueNames())
        return f"{folder}/{names.allocate(filename)}"


AssetOpener = Callable[[str], Asset | None]
AssetSink = Callable[[str, Asset], None]


def export_record(
    folder: SectionFolder,
    record: dict[str, Any],
    open_asset: AssetOpener,
    write_asset: AssetSink,
    missing: list[MissingAsset],
) -> tuple[dict[str, Any], int]:
    """The record as exported, with each binary reference pointing at its file in the archive.

    Writes the binaries through ``write_asset`` and returns the exported record and the binary count."""
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
            exported_ref = {k: v for k, v in ref.items() if k not in ("asset_key", "size_bytes")}
            asset = open_asset(str(ref["asset_key"]))
            if asset is None:
                exported_ref["missing"] = True
                missing.append(MissingAsset(folder.key, record_id, name, str(ref.get("filename", ""))))
            else:
                path = folder.binary_file(f"{binary_folder}/{name}", str(ref.get("filename", "")))
                write_asset(path, asset)
                exported_ref["size_bytes"] = asset.size
                exported_ref["file"] = path
                written += 1
            out.append(exported_ref)
        exported[name] = out if is_list else out[0]
    return exported, written


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
    read_ahead: int = READ_AHEAD,
) -> None:
    """Write records (YAML) and their binaries under ``top/``, counting them in ``report``; ``on_record``
    is told of each record once it is written. Up to ``read_ahead`` asset reads are kept in flight ahead of
    the writer (export.prefetch); 0 reads each asset when its turn comes."""

    def write_asset(path: str, asset: Asset) -> None:
        entries.add_asset(f"{top}/{path}", asset)

    def write(records: Iterable[dict[str, Any]], open_asset: AssetOpener) -> None:
        for record in records:
            exported, binaries = export_record(folder, record, open_asset, write_asset, missing)
            entries.add_file(f"{top}/{folder.record_file(str(record.get('id', '')))}", dump_record(exported))
            report.record_count += 1
            report.binary_count += binaries
            on_record(record)

    fields = BINARY_FIELDS.get(folder.key, {})
    if read_ahead <= 0 or not fields:
        write(records, open_asset)
        return
    with AssetPrefetcher(open_asset, fields, max_in_flight=read_ahead) as prefetcher:
        write(prefetcher.records(records), prefetcher.open)


def missing_summary(missing: Sequence[MissingAsset]) -> str | None:
    """A section's error line for the assets it could not include (None when there are none)."""
    if not missing:
        return None
    names = ", ".join(f"{m.record_id}/{m.field}/{m.filename}" for m in missing)
    return f"{len(missing)} missing asset(s) not in the archive: {names}"
