"""The plan never makes more units than one execution's history can carry (plan.MAX_UNITS): past it, the
neighbouring units of a section are merged, so units grow instead; ranges stay contiguous and complete."""

from __future__ import annotations

from typing import Any

import pytest
from data_export.export.plan import MAX_UNITS, WorkUnit, merge_factor, plan_units
from data_export.models import SECTION_KEYS


def records(prefix: str, count: int, size: int = 0) -> list[dict[str, Any]]:
    images = [{"filename": "a.jpg", "content_type": "image/jpeg", "size_bytes": size}] if size else []
    return [{"id": f"{prefix}{i:06d}", "images": images} for i in range(count)]


def sections(**counts: int) -> dict[str, list[dict[str, Any]]]:
    data = {section: [] for section in SECTION_KEYS}
    data["organization"] = [{"id": "org"}]
    for section, count in counts.items():
        data[section] = records(section[0], count)
    return data


def covered_ids(units: list[WorkUnit], data: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """Each section's record ids as the units' ranges select them (None bounds: the whole section)."""
    covered: dict[str, list[str]] = {}
    for unit in units:
        ids = [str(r["id"]) for r in data[unit.section]]
        chosen = [
            i
            for i in ids
            if (unit.first is None or i >= unit.first) and (unit.last is None or i <= unit.last)
        ]
        assert len(chosen) == unit.records, unit
        covered.setdefault(unit.section, []).extend(chosen)
    return covered


def test_a_plan_under_the_bound_is_unchanged() -> None:
    data = sections(members=25, products=40)
    units = plan_units(data, target_bytes=2**40, max_records=10)
    assert [u.unit_id for u in units][:1] == ["00-organization-00000"]
    assert sum(1 for u in units if u.section == "products") == 4
    assert sum(1 for u in units if u.section == "members") == 3


@pytest.mark.parametrize("max_units", [7, 8, 10, 13, 50])
def test_units_merge_to_stay_within_the_bound_and_cover_every_record_once(max_units: int) -> None:
    data = sections(members=95, products=403, offers=11, locations=2)
    units = plan_units(data, target_bytes=2**40, max_records=2, max_units=max_units)
    assert len(units) <= max_units
    covered = covered_ids(units, data)
    for section, section_records in data.items():
        assert covered.get(section, []) == [str(r["id"]) for r in section_records], section
    ids = [u.unit_id for u in units]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)  # still in archive order, named afresh
    assert sum(u.records for u in units) == sum(len(v) for v in data.values())


def test_collision_names_follow_their_records_into_merged_units() -> None:
    data = sections()
    data["products"] = [{"id": i} for i in ("AB", "Ab", "C", "D", "E", "aB", "ab", "z")]
    units = plan_units(data, target_bytes=2**40, max_records=1, max_units=4)
    names = {rid: stem for u in units for rid, stem in u.names.items()}
    assert set(names) == {"Ab", "aB", "ab"}  # "AB" keeps its name, the later ones are renamed
    for unit in units:
        for rid in unit.names:
            assert (unit.first or "") <= rid <= (unit.last or "\uffff")


def test_merge_factor_is_the_smallest_that_fits() -> None:
    assert merge_factor([1, 0, 10], 11) == 1
    assert merge_factor([1, 0, 10], 10) == 2  # 1 + 5
    assert merge_factor([1, 1, 1000], 10) == 125  # 1 + 1 + 8
    assert merge_factor([1] * 7, 7) == 1
    with pytest.raises(ValueError, match="sections"):
        merge_factor([1] * 7, 6)


def test_the_bound_leaves_room_for_a_real_organization() -> None:
    # 100 GB of images at 2 GiB per unit is ~50 units; the bound only bites past ~900 GB.
    assert MAX_UNITS * 2 * 1024**3 > 900 * 10**9
