"""Hostile record values, end to end: YAML injection attempts, YAML 1.1 and 1.2 look-alikes, invisible and
control characters, a very long value and deep nesting are exported over HTTP and must read back from the
archive with ``yaml.safe_load`` (YAML 1.1) and ruamel.yaml (YAML 1.2) as exactly the values stored: strings
stay strings and nothing becomes structure."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from data_export.ids import new_id
from ruamel.yaml import YAML

from tests.security.helpers import CREATED_AT, export, new_key, organization, seed

INJECTIONS = [
    "fine\nid: forged\n---\nrole: owner",  # a new key, a new document
    "!!python/object/apply:os.system ['touch /tmp/pwned']",  # a tag PyYAML's unsafe loader would run
    "!!binary aGVsbG8=",
    "&anchor [a, *anchor]",
    "*alias",
    "%YAML 1.1",
    "? complex key",
    "- not a list",
    "[not, a, list]",
    "{not: a mapping}",
    "# not a comment",
    "key: value",
    "yes",
    "No",
    "off",
    "null",
    "~",
    "",
    "0x1F",
    "0o17",
    "1e3",
    "1_000",
    "12:30",
    "2024-01-01",
    ".inf",
    "-.NaN",
    "'single'",
    '"double"',
    " leading and trailing ",
    "tab\tinside",
    "line\rbreak",
    "\u2028line separator\u2029paragraph separator",
    "\ufeffbyte order mark",
    "\x85next line",
    "\x00nul\x07bell\x1bescape",
    "\u202eright-to-left override",
    "{{ template }} ${env} $(cmd) `cmd`",
    "<script>alert(1)</script>",
    '=HYPERLINK("http://evil.example")',
    "\U0001f600 emoji and 𝕏 astral",
    "|\n  literal block",
    ">\n  folded block",
]
# Signs, dots, underscores and digits: numbers to YAML 1.2 readers ("._0" is 0.0, "+_1" is 1; "._" and "+_"
# make ruamel.yaml fail on the whole file) or to YAML 1.1's float pattern ("." and "+.").
YAML_12_LOOKALIKES = ["._0", "+_1", "._", "+_", ".", "+.", "._e+1", "+._1", "0x_1", "1_000.5", ".0_1"]
LONG_VALUE = "long " * 40_000  # 200 kB: well past any line length, under DynamoDB's 400 KB item limit


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"bottom": "reached"}
    for level in range(depth):
        value = {f"level {level}": value}
    return value


@pytest.fixture(scope="module")
def exported(stack: Any, api_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    key = new_key()
    product = {
        "id": new_id(),
        "name": INJECTIONS[1],
        "gtin": "00012345678905",
        "created_at": CREATED_AT,
        "description": LONG_VALUE,
        "tags": INJECTIONS + YAML_12_LOOKALIKES,
        "attributes": {
            **{value: value for value in INJECTIONS + YAML_12_LOOKALIKES},  # every injection as a key too
            "nested": nested(60),
            "numbers": [0, -1, 2**63, 1.5, 1e-300, True, False, None],
        },
    }
    data = organization("Values", key, products=[product])
    data["organization"]["name"] = INJECTIONS[0]
    data["organization"]["description"] = INJECTIONS[0]
    seed(stack, tmp_path_factory.mktemp("values"), data)
    job, body = export(api_url, data["organization"]["id"], key, "zip")
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    top = job["output_filename"].removesuffix(".zip")
    return {"files": files, "top": top, "product": product, "organization": data["organization"]}


def load(document: bytes) -> Any:
    # SafeLoader: no tags run, and YAML 1.1 look-alikes must already be quoted by the emitter.
    return yaml.safe_load(document.decode("utf-8"))


def test_product_reads_back_exactly(exported: dict[str, Any]) -> None:
    record = load(exported["files"][f"{exported['top']}/products/{exported['product']['id']}.yaml"])
    assert record == exported["product"]
    assert all(type(value) is str for value in record["tags"])
    assert list(record["attributes"]) == list(exported["product"]["attributes"])  # key order kept


def test_yaml_1_2_readers_read_every_file_the_same(exported: dict[str, Any]) -> None:
    product = f"{exported['top']}/products/{exported['product']['id']}.yaml"
    for name, document in exported["files"].items():
        if name.endswith(".yaml"):
            # A new loader per file: ruamel.yaml's keep state between loads.
            assert YAML(typ="safe", pure=True).load(document) == load(document), name
    assert YAML(typ="safe", pure=True).load(exported["files"][product]) == exported["product"]


def test_organization_and_manifest_read_back_exactly(exported: dict[str, Any]) -> None:
    organization = load(exported["files"][f"{exported['top']}/organization/organization.yaml"])
    assert organization == exported["organization"]
    manifest = load(exported["files"][f"{exported['top']}/manifest.yaml"])
    assert manifest["organization"]["name"] == exported["organization"]["name"]


def test_every_document_is_a_single_mapping_without_tags_or_aliases(exported: dict[str, Any]) -> None:
    for name, document in exported["files"].items():
        if not name.endswith(".yaml"):
            continue
        events = list(yaml.parse(document.decode("utf-8"), Loader=yaml.SafeLoader))
        starts = [event for event in events if isinstance(event, yaml.DocumentStartEvent)]
        assert len(starts) == 1, name
        tagged = [
            event
            for event in events
            if isinstance(event, yaml.NodeEvent) and (getattr(event, "tag", None) or event.anchor)
        ]
        assert not tagged, (name, tagged[:3])
        aliases = [event for event in events if isinstance(event, yaml.AliasEvent)]
        assert not aliases, name


def test_nothing_ran_while_reading(tmp_path: Path) -> None:
    # The strings above name /tmp/pwned; neither the service nor safe_load may have created it.
    assert not Path("/tmp/pwned").exists()
