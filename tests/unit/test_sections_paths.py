"""Whole archive paths (export.sections.SectionFolder under the top folder): each one under 200 UTF-16 code
units, so that it still fits Windows' 260 after a destination folder; unique once case-folded, across the
units of a chunked build too; every file name keeping its extension; no component a Windows reserved name."""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest
from data_export.export.builder import output_filename
from data_export.export.plan import colliding_names, record_stem
from data_export.export.sections import SectionFolder, export_record
from data_export.naming import safe_component, split_extension
from data_export.storage.layout import BINARY_FIELDS
from data_export.storage.objects import Asset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {
    f"{port}{digit}" for port in ("COM", "LPT") for digit in "0123456789¹²³"
}
JOB_ID = "S8yfMT73Q29pRJaQ7Y3QM9"
SECTIONS = ["organization", "members", "api_keys", "brands", "products", "offers", "locations"]
HOSTILE = [
    "COM0", "lpt0.txt", "COM¹.jpg", "lpt³", "CON", "a" * 300 + ".jpeg", "é" * 200 + ".pdf",
    "😀" * 120 + ".png", "漢" * 90, "x.yaml", "X.YAML", "a~0123456789ab", "front.jpg", "Front.JPG",
    "name." + "e" * 15, "..", "", " ", "a/b.png",
]
texts = st.text(st.characters(codec="utf-8"), max_size=250) | st.sampled_from(HOSTILE)
# Slugs up to safe_slug's 60 characters: the top folder is at most 90.
slugs = st.text(string.ascii_letters + string.digits + " -", max_size=80)


def windows_units(path: str) -> int:
    return len(path.encode("utf-16-le")) // 2


def folded(path: str) -> str:
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", path).casefold())


def asset() -> Asset:
    return Asset(size=1, chunks=iter([b"x"]))


def export_paths(
    top: str, section: str, records: list[dict[str, Any]], units: int
) -> Iterator[tuple[str, str | None]]:
    """Every path written for ``records`` (in ``units`` parts built apart, as a chunked build does), with the
    file name a binary was asked under (None for a record's YAML)."""
    renamed = colliding_names(str(record["id"]) for record in records)
    size = max(1, -(-len(records) // units))
    for start in range(0, len(records), size):
        folder = SectionFolder(section, renamed=renamed)
        folder.place_under(top)
        for record in records[start : start + size]:
            exported, _ = export_record(folder, record, lambda key: asset(), lambda path, a: None, [], "org")
            for name in BINARY_FIELDS.get(section, {}):
                value = exported.get(name)
                for ref in (value if isinstance(value, list) else [value]) if value else []:
                    yield f"{top}/{ref['file']}", ref["filename"]
            yield f"{top}/{folder.record_file(str(record['id']))}", None


def make_records(section: str, ids: list[str], filenames: list[str]) -> list[dict[str, Any]]:
    fields = BINARY_FIELDS.get(section, {})
    records = []
    for index, record_id in enumerate(sorted(ids)):
        record: dict[str, Any] = {"id": record_id}
        for name, is_list in fields.items():
            key = f"org/{section}/{index}/{name}/0"
            refs = [{"filename": name_, "content_type": "image/png", "asset_key": key} for name_ in filenames]
            record[name] = refs if is_list else refs[0]
        records.append(record)
    return records


def check(paths: list[tuple[str, str | None]]) -> None:
    assert all(windows_units(path) < 200 for path, _ in paths), max(paths, key=lambda p: windows_units(p[0]))
    keys = [folded(path) for path, _ in paths]
    assert len(set(keys)) == len(keys), sorted(key for key in keys if keys.count(key) > 1)[:4]
    # Nor a file where another path needs a folder.
    folders = {key.rsplit("/", i)[0] for key in keys for i in range(1, key.count("/") + 1)}
    assert not folders & set(keys)
    for path, asked in paths:
        for component in path.split("/"):
            assert component.split(".", 1)[0].rstrip(" ").upper() not in WINDOWS_RESERVED, path
        if asked is not None:
            _, extension = split_extension(safe_component(asked))
            assert path.endswith(extension), (path, asked)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(
    slug=slugs,
    section=st.sampled_from(SECTIONS),
    ids=st.lists(texts, min_size=1, max_size=6, unique=True),
    filenames=st.lists(texts, min_size=1, max_size=5),
    units=st.integers(min_value=1, max_value=3),
)
def test_every_archive_path_is_short_unique_and_safe(
    slug: str, section: str, ids: list[str], filenames: list[str], units: int
) -> None:
    top = output_filename(slug, JOB_ID, "zip").removesuffix(".zip")
    if section == "organization":
        ids = ids[:1]
    check(list(export_paths(top, section, make_records(section, ids, filenames), units)))


def test_the_longest_top_folder_leaves_readable_names() -> None:
    top = output_filename("x" * 100, JOB_ID, "tar.gz").removesuffix(".tar.gz")
    assert len(top) == 90
    long_id = "r" * 250
    ids = [long_id, long_id[:-1] + "R", "ZUF6rFErzk2LMU4DvbtjDA", "CON", "x.yaml"]
    names = ["spec sheet (2024) " + "long " * 60 + ".pdf", "front.jpg", "Front.JPG", "COM0.png", "lpt².jpg"]
    paths = list(export_paths(top, "products", make_records("products", ids, names), 3))
    check(paths)
    by_name = {path.rsplit("/", 1)[1] for path, _ in paths}
    # Ids that fit are kept, long ones cut and tagged with a hash of the id; names keep their start.
    assert "ZUF6rFErzk2LMU4DvbtjDA.yaml" in by_name and "_CON.yaml" in by_name
    assert {"front.jpg", "Front (2).JPG", "_COM0.png", "_lpt².jpg"} <= by_name
    tagged = sorted(name for name in by_name if name.startswith("rrr") and name.endswith(".yaml"))
    assert len(tagged) == 2 and all("~" in name for name in tagged)
    assert any(name.startswith("spec sheet (2024) long") and name.endswith(".pdf") for name in by_name)


def test_record_stems_that_fit_are_unchanged() -> None:
    folder = SectionFolder("products")
    folder.place_under(output_filename("acme-coffee", JOB_ID, "zip").removesuffix(".zip"))
    for record_id in ("ZUF6rFErzk2LMU4DvbtjDA", "huila café", "a" * 40):
        assert folder.record_file(record_id) == f"products/{record_stem(record_id)}.yaml"


def test_a_top_folder_too_long_for_any_path_is_refused() -> None:
    with pytest.raises(ValueError, match="no room"):
        SectionFolder("products").place_under("t" * 150)
