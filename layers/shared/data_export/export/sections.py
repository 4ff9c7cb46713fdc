"""What goes into each section folder: records as YAML, and their binaries as files beside them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from data_export.naming import UniqueNames, safe_component
from data_export.storage.layout import BINARY_FIELDS
from data_export.storage.objects import Asset


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
    names: UniqueNames = field(default_factory=UniqueNames)
    subfolders: dict[str, UniqueNames] = field(default_factory=dict)

    def record_file(self, record_id: str) -> str:
        if self.key == "organization":
            return f"{self.key}/{self.names.allocate('organization.yaml')}"
        return f"{self.key}/{self.names.allocate(safe_component(record_id, fallback='record') + '.yaml')}"

    def binary_folder(self, record_id: str) -> str:
        return f"{self.key}/{self.names.allocate(safe_component(record_id, fallback='record'))}"

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
