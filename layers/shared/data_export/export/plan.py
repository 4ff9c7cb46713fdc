"""Splitting an export into work units that each finish well inside one Lambda's 15 minutes.

A unit is a contiguous range of one section's records (in id order). The plan reads every record once to
estimate its weight (YAML plus the sizes of its binaries), so a section of 50,000 products with 250,000
images becomes units of about ``target_bytes`` each, built in parallel and retried alone. It also settles
the archive names of records whose ids would collide once case-folded, which no single unit could see."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from data_export.models import SECTION_KEYS
from data_export.naming import UniqueNames, collision_key, safe_component
from data_export.storage.layout import BINARY_FIELDS

UNSPLIT_SECTIONS = frozenset({"organization", "api_keys"})

# Units of one export at most. Step Functions keeps at most 25,000 events in an execution's history, and
# the Map runs INLINE: a unit costs 7 events, plus 3 for each failed attempt its Retry allows (10 throttled
# + 5 transient), so 52 at worst; 450 units make at most 23,400, and the rest of the execution (Plan,
# Assemble or Fail, each with its own retries) fits in what remains. A bigger export gets bigger units
# (docs/scaling.md, "Limits of one execution"; tests/limits/test_limits_plan_payload.py checks this
# arithmetic against the template and moto's engine).
MAX_UNITS = 450


@dataclass(frozen=True)
class WorkUnit:
    unit_id: str  # sorts in archive order: "<section index>-<section>-<unit index>"
    section: str
    first: str | None = None  # first and last record id of the range; None: the whole section
    last: str | None = None
    records: int = 0
    estimated_bytes: int = 0
    # Archive names for the few records whose default name collides with another record's.
    names: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkUnit:
        return cls(**data)


@dataclass(frozen=True)
class WorkTotals:
    """The work of a whole export, as the job's progress measures it."""

    records: int
    weight: int  # sum of record_weight


def measure(
    sections: Mapping[str, Iterable[dict[str, Any]]],
    *,
    max_weight: float = float("inf"),
    max_records: float = float("inf"),
) -> WorkTotals | None:
    """The totals of every section's records, or None as soon as they pass either limit."""
    weight = records = 0
    for section in SECTION_KEYS:
        for record in sections[section]:
            weight += record_weight(record, section)
            records += 1
            if weight > max_weight or records > max_records:
                return None
    return WorkTotals(records, weight)


def unit_totals(units: Iterable[WorkUnit]) -> WorkTotals:
    records = weight = 0
    for unit in units:
        records += unit.records
        weight += unit.estimated_bytes
    return WorkTotals(records, weight)


def unit_name(section_index: int, section: str, unit_index: int) -> str:
    return f"{section_index:02d}-{section}-{unit_index:05d}"


def record_weight(record: dict[str, Any], section: str) -> int:
    """Bytes a record adds to the archive, roughly: its YAML plus its binaries."""
    weight = len(json.dumps(record, separators=(",", ":")))
    for name, is_list in BINARY_FIELDS.get(section, {}).items():
        value = record.get(name)
        refs = (value if is_list else [value]) if value else []
        weight += sum(int(ref.get("size_bytes") or 0) for ref in refs if isinstance(ref, dict))
    return weight


def record_stem(record_id: str) -> str:
    return safe_component(record_id, fallback="record")


def colliding_names(record_ids: Iterable[str]) -> dict[str, str]:
    """The record ids whose archive stem must differ from the default, and the stem they get."""
    names = UniqueNames()
    renamed: dict[str, str] = {}
    for record_id in record_ids:
        stem = names.allocate(record_stem(record_id))
        if stem != record_stem(record_id):
            renamed[record_id] = stem
    return renamed


def plan_section(
    section: str, index: int, records: Iterable[dict[str, Any]], *, target_bytes: int, max_records: int
) -> Iterator[WorkUnit]:
    """Cut one section's records (in id order) into units of about target_bytes or max_records."""
    ids: list[str] = []
    first: str | None = None
    last = ""
    count = weight = unit_index = 0
    units: list[WorkUnit] = []  # with explicit bounds; the bounds are dropped below if there is only one
    for record in records:
        record_id = str(record.get("id", ""))
        ids.append(record_id)
        if first is None:
            first = record_id
        last = record_id
        count += 1
        weight += record_weight(record, section)
        if weight >= target_bytes or count >= max_records:
            units.append(WorkUnit(unit_name(index, section, unit_index), section, first, last, count, weight))
            unit_index += 1
            first, count, weight = None, 0, 0
    if first is not None:
        units.append(WorkUnit(unit_name(index, section, unit_index), section, first, last, count, weight))
    renamed = colliding_names(ids) if len({collision_key(record_stem(i)) for i in ids}) < len(ids) else {}
    whole_section = len(units) == 1
    for unit in units:
        names = {rid: stem for rid, stem in renamed.items() if (unit.first or "") <= rid <= (unit.last or "")}
        yield WorkUnit(
            unit.unit_id,
            section,
            None if whole_section else unit.first,
            None if whole_section else unit.last,
            unit.records,
            unit.estimated_bytes,
            names,
        )


def plan_units(
    sections: Mapping[str, Iterable[dict[str, Any]]],
    *,
    target_bytes: int,
    max_records: int,
    max_units: int = MAX_UNITS,
) -> list[WorkUnit]:
    """Units for every section, in archive order (a section without records has none); never more than
    ``max_units``: when the target size makes more, neighbouring units of a section are merged."""
    per_section: list[list[WorkUnit]] = []
    for index, section in enumerate(SECTION_KEYS):
        # API keys come from another table's index and the profile is one record: never split them.
        whole = section in UNSPLIT_SECTIONS
        per_section.append(
            list(
                plan_section(
                    section,
                    index,
                    sections[section],
                    target_bytes=2**62 if whole else target_bytes,
                    max_records=2**62 if whole else max_records,
                )
            )
        )
    factor = merge_factor([len(units) for units in per_section], max_units)
    return [unit for units in per_section for unit in merge_units(units, factor)]


def merge_factor(section_units: list[int], max_units: int) -> int:
    """The smallest k such that merging every k neighbouring units of each section leaves at most
    ``max_units`` units in all (1: no merging)."""
    sections = sum(1 for count in section_units if count)
    if sections > max_units:
        raise ValueError(f"{max_units} units cannot hold {sections} sections")
    total = sum(section_units)
    factor = max(1, -(-total // max_units))
    while sum(-(-count // factor) for count in section_units) > max_units:
        factor += 1
    return factor


def merge_units(units: list[WorkUnit], factor: int) -> list[WorkUnit]:
    """One section's units (in order), every ``factor`` neighbours merged into one contiguous range."""
    if factor <= 1 or len(units) <= 1:
        return units
    groups = [units[start : start + factor] for start in range(0, len(units), factor)]
    whole_section = len(groups) == 1
    section = units[0].section
    section_index = SECTION_KEYS.index(section)
    merged: list[WorkUnit] = []
    for index, group in enumerate(groups):
        names: dict[str, str] = {}
        for unit in group:
            names.update(unit.names)
        merged.append(
            WorkUnit(
                unit_name(section_index, section, index),
                section,
                None if whole_section else group[0].first,
                None if whole_section else group[-1].last,
                sum(unit.records for unit in group),
                sum(unit.estimated_bytes for unit in group),
                names,
            )
        )
    return merged
