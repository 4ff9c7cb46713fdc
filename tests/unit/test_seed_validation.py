"""Validation of seed fixtures: the example is valid, each kind of mistake is reported at its exact path."""

from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from data_export_cli.seed import (
    FixtureError,
    api_key_checksum,
    generate_bytes,
    gs1_check_digit_ok,
    load_fixture,
    parse_fixture,
    validate_fixture_data,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXAMPLE = FIXTURES / "example-org.yaml"
SHARED_EXAMPLE = Path(__file__).resolve().parents[3] / "shared" / "spec" / "example-org.yaml"

@pytest.fixture(scope="module")
def example_data() -> dict[str, Any]:
    data: dict[str, Any] = parse_fixture(EXAMPLE.read_bytes())
    return data


@pytest.fixture
def data(example_data: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(example_data)


@pytest.fixture
def base_dir(tmp_path: Path) -> Path:
    """A fixture folder with a file beside it and one outside it."""
    folder = tmp_path / "fixture"
    folder.mkdir()
    (folder / "logo.png").write_bytes(b"\x89PNG logo")
    (tmp_path / "outside.png").write_bytes(b"secret")
    return folder


DELETE = object()  # as a case's value: remove the key


def change(data: dict[str, Any], path: str, value: Any) -> None:
    """Set (or with DELETE remove) the value at a problem path like ``organizations[0].products[3].gtin``."""
    tokens = re.findall(r"[^.\[\]]+|\[\d+\]", path)
    parts = [int(token[1:-1]) if token.startswith("[") else token for token in tokens]
    parent: Any = data
    for part in parts[:-1]:
        parent = parent[part]
    if value is DELETE:
        del parent[parts[-1]]
    else:
        parent[parts[-1]] = value


def problem_paths(error: pytest.ExceptionInfo[FixtureError]) -> list[str]:
    return [problem.path for problem in error.value.problems]


ACME_KEY = "csb_uUFH9C2jfqBbHIJKFd8BgEs09C8twYBo_b5b88299"
ACME_BRAND, ACME_PRODUCT = "PozSCfVhrBvHG4uL7NW5hT", "ZUF6rFErzk2LMU4DvbtjDA"
ACME_OWNER, OTHER_PRODUCT = "Djk5VzZQSmFWwcnyTKemEV", "Wd2Nq7Hs4KcX9mTb6VpRgL"
PNG = {"filename": "a.png", "content_type": "image/png"}


def case(name: str, path: str, value: Any, reported: str | None = None) -> Any:
    """An invalid variant: the example with ``path`` changed, reported at ``reported`` (default: ``path``)."""
    return pytest.param(path, value, reported or path, id=name)


INVALID = [
    case("bad gtin check digit", "organizations[0].products[3].gtin", "00628176543247"),
    case("gtin as a number", "organizations[0].products[3].gtin", 628176543246),
    case("gtin of 7 digits", "organizations[0].products[3].gtin", "1234565"),
    case("bad key checksum", "organizations[0].api_keys[0].key", ACME_KEY[:-1] + "8"),
    case("unknown key prefix", "organizations[0].api_keys[0].key", "csx" + ACME_KEY[3:]),
    case("csu key without member_id", "organizations[0].api_keys[2].member_id", DELETE),
    case("brand_id of the other organization", "organizations[1].products[0].brand_id", ACME_BRAND),
    case("product_id of the other organization", "organizations[0].offers[0].product_id", OTHER_PRODUCT),
    case("location_id naming no record", "organizations[0].offers[1].location_id", "Rb5Gm2XwT8kLpQ3nVc7YsF"),
    case("location_id naming a product", "organizations[0].offers[2].location_id", ACME_PRODUCT),
    case("duplicate id across organizations", "organizations[1].members[0].id", ACME_OWNER),
    case("same raw key twice", "organizations[1].api_keys[0].key", ACME_KEY),
    case("id outside the shortuuid alphabet", "organizations[1].members[0].id", "Gf4Hs8Qm2WcT6kVb9NpXr0"),
    case("missing required field", "organizations[0].products[0].name", DELETE),
    case("missing organization profile", "organizations[1].organization", DELETE),
    case("bad role", "organizations[0].members[1].role", "admin"),
    case("bad stock_status", "organizations[0].offers[0].stock_status", "plenty"),
    case("bad location kind", "organizations[0].locations[0].kind", "kiosk"),
    case("timestamp without offset", "organizations[0].brands[0].created_at", "2024-03-03T10:00:00"),
    case("impossible date", "organizations[0].members[0].joined_at", "2024-02-30T09:15:00+00:00"),
    case("two binary sources", "organizations[0].products[0].images[1].missing", True,
         reported="organizations[0].products[0].images[1]"),
    case("binary without a source", "organizations[0].brands[0].logo.generate", DELETE,
         reported="organizations[0].brands[0].logo"),
    case("unknown key on a binary", "organizations[0].brands[0].logo.url", "https://x.example/a.svg"),
    case("negative generated size", "organizations[0].products[0].images[0].generate.size_bytes", -1),
    case("file escaping with ../", "organizations[0].organization.logo", {**PNG, "file": "../outside.png"},
         reported="organizations[0].organization.logo.file"),
    case("absolute file path", "organizations[0].products[1].images[0]", {**PNG, "file": "/etc/hostname"},
         reported="organizations[0].products[1].images[0].file"),
    case("file not beside the fixture", "organizations[0].organization.logo", {**PNG, "file": "nope.png"},
         reported="organizations[0].organization.logo.file"),
    case("unknown format", "format", 2),
    case("format true", "format", True),
    case("misspelt section", "organizations[0].product", []),
    case("extra value that is not JSON", "organizations[0].products[0].rating", float("nan")),
]


@pytest.mark.parametrize(("path", "value", "reported"), INVALID)
def test_each_mistake_is_reported_at_its_path(
    data: dict[str, Any], base_dir: Path, path: str, value: Any, reported: str
) -> None:
    change(data, path, value)
    with pytest.raises(FixtureError) as error:
        validate_fixture_data(data, base_dir)
    assert problem_paths(error) == [reported]
    assert str(error.value).startswith(f"{reported}: ")


def test_example_fixture_validates() -> None:
    fixture = load_fixture(EXAMPLE)
    acme, other = fixture.organizations
    assert (acme.id, other.id) == ("eHcFM2wk4RdyYG8yMrTGbQ", "TpR7vWk3Qx9mHc2NbY5sLe")
    sections = ("members", "brands", "products", "offers", "locations")
    assert [len(acme.records(section)) for section in sections] == [3, 2, 4, 3, 2]
    assert [key.prefix for key in acme.api_keys] == ["csb", "csb", "csu", "cpk"]
    assert [key.is_active for key in acme.api_keys] == [True, False, True, True]
    assert other.products[0].brand_id is None
    assert fixture.base_dir == EXAMPLE.parent


@pytest.mark.skipif(not SHARED_EXAMPLE.exists(), reason="shared/spec is not beside this checkout")
def test_example_copy_matches_the_spec() -> None:
    assert EXAMPLE.read_bytes() == SHARED_EXAMPLE.read_bytes()


def test_several_problems_are_reported_at_once(data: dict[str, Any], base_dir: Path) -> None:
    change(data, "organizations[0].products[3].gtin", "00628176543247")
    change(data, "organizations[0].api_keys[2].member_id", DELETE)
    change(data, "organizations[1].products[0].brand_id", ACME_BRAND)
    change(data, "format", 3)
    with pytest.raises(FixtureError) as error:
        validate_fixture_data(data, base_dir)
    expected = {
        "format",
        "organizations[0].products[3].gtin",
        "organizations[0].api_keys[2].member_id",
        "organizations[1].products[0].brand_id",
    }
    assert set(problem_paths(error)) == expected
    assert len(str(error.value).splitlines()) == 4


def test_messages_never_repeat_a_raw_key(data: dict[str, Any], base_dir: Path) -> None:
    change(data, "organizations[0].api_keys[0].key", ACME_KEY[:-1] + "8")
    change(data, "organizations[0].api_keys[1].key", ACME_KEY)
    change(data, "organizations[1].api_keys[0].key", ACME_KEY)
    with pytest.raises(FixtureError) as error:
        validate_fixture_data(data, base_dir)
    assert len(error.value.problems) == 2
    assert ACME_KEY[4:36] not in str(error.value)


def test_unknown_extra_keys_are_kept_verbatim(data: dict[str, Any], base_dir: Path) -> None:
    story = {"farm": "Konga", "since": 1999, "notes": ["washed", None]}
    change(data, "organizations[0].products[0].origin_story", story)
    change(data, "organizations[0].members[0].pronouns", "she/her")
    fixture = validate_fixture_data(data, base_dir)
    acme = fixture.organizations[0]
    assert acme.products[0].as_typed()["origin_story"] == story
    assert acme.members[0].as_typed()["pronouns"] == "she/her"
    assert acme.products[0].as_typed() == data["organizations"][0]["products"][0]


def test_file_beside_the_fixture_is_read(data: dict[str, Any], base_dir: Path) -> None:
    logo = {"filename": "logo.png", "content_type": "image/png", "file": "logo.png"}
    change(data, "organizations[0].organization.logo", logo)
    fixture = validate_fixture_data(data, base_dir)
    binary = fixture.organizations[0].organization.logo
    assert binary is not None
    assert fixture.binary_bytes(binary) == b"\x89PNG logo"
    assert fixture.binary_size(binary) == len(b"\x89PNG logo")


def test_symlink_out_of_the_fixture_folder_escapes(data: dict[str, Any], base_dir: Path) -> None:
    (base_dir / "link.png").symlink_to(base_dir.parent / "outside.png")
    logo = {"filename": "logo.png", "content_type": "image/png", "file": "link.png"}
    change(data, "organizations[0].organization.logo", logo)
    with pytest.raises(FixtureError) as error:
        validate_fixture_data(data, base_dir)
    assert problem_paths(error) == ["organizations[0].organization.logo.file"]
    assert "escapes" in str(error.value)


def test_timestamps_stay_strings_exactly_as_typed() -> None:
    typed = {"at": "2024-03-02T09:15:00+00:00", "day": "2024-03-02", "spaced": "2024-03-02 09:15:00Z"}
    assert parse_fixture("".join(f"{key}: {value}\n" for key, value in typed.items())) == typed


def test_unquoted_timestamps_load_as_strings(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        'created_at: "2024-03-02T09:15:00+00:00"', "created_at: 2024-03-02T09:15:00+00:00"
    )
    (tmp_path / "fixture.yaml").write_text(text, encoding="utf-8")
    profile = load_fixture(tmp_path / "fixture.yaml").organizations[0].organization
    assert profile.created_at == "2024-03-02T09:15:00+00:00"
    assert profile.as_typed()["created_at"] == "2024-03-02T09:15:00+00:00"


def test_duplicate_yaml_keys_are_rejected() -> None:
    with pytest.raises(FixtureError) as error:
        parse_fixture("format: 1\norganizations: []\nformat: 2\n")
    assert str(error.value) == "line 3, column 1: found duplicate key 'format'"


def test_yaml_merge_keys_still_work() -> None:
    assert parse_fixture("base: &b {a: 1, b: 2}\nderived: {<<: *b, b: 3}\n")["derived"] == {"a": 1, "b": 3}


def test_broken_yaml_is_a_fixture_error() -> None:
    with pytest.raises(FixtureError, match=r"^line 2, column 17: "):
        parse_fixture("format: 1\norganizations: [}\n")


@pytest.mark.parametrize("document", ["", "- format: 1\n", "just text\n"])
def test_a_document_that_is_not_a_mapping_is_rejected(document: str, tmp_path: Path) -> None:
    with pytest.raises(FixtureError) as error:
        validate_fixture_data(parse_fixture(document), tmp_path)
    assert problem_paths(error) == [""]


def test_validation_does_not_change_the_callers_data(data: dict[str, Any], base_dir: Path) -> None:
    fixture = validate_fixture_data(data, base_dir)
    data["organizations"][0]["products"][0]["name"] = "changed"
    assert fixture.organizations[0].products[0].as_typed()["name"] == "Ethiopia Yirgacheffe 340 g"


@pytest.mark.parametrize("gtin", ["96385074", "036000291452", "4006381333931", "00012345678905"])
def test_gs1_check_digit_of_real_gtins(gtin: str) -> None:
    assert gs1_check_digit_ok(gtin)
    wrong = gtin[:-1] + str((int(gtin[-1]) + 1) % 10)
    assert not gs1_check_digit_ok(wrong)


def test_api_key_checksum_is_crc32_hex_of_the_body() -> None:
    assert api_key_checksum("uUFH9C2jfqBbHIJKFd8BgEs09C8twYBo") == "b5b88299"


def test_generated_bytes_are_shake256_of_the_seed() -> None:
    assert generate_bytes(8, 1).hex() == "2f169f9b4e6a1024"
    assert generate_bytes(8, 20).hex() == "56ed42d09d2b99b6"
    assert generate_bytes(1000, 7) == hashlib.shake_256(b"7").digest(1000)
    assert generate_bytes(0, 1) == b""
