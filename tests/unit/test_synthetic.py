"""The synthetic organization generator (`data-export local make-fixture`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_export_cli.main import main
from data_export_cli.seed import load_fixture, parse_fixture
from data_export_cli.synthetic import Shape, fixture_data, write_fixture


def test_the_file_is_a_valid_fixture_that_reads_back_as_the_data(tmp_path: Path) -> None:
    shape = Shape(products=50, images=3, offers=10, image_bytes=1000)
    path = write_fixture(tmp_path / "org.yaml", shape)

    assert parse_fixture(path.read_bytes()) == fixture_data(shape)
    fixture = load_fixture(path)  # validates: ids, gtins, keys' checksums, references
    [organization] = fixture.organizations
    assert organization.id == shape.organization_id
    assert len(organization.products) == 50
    images = [image for product in organization.products for image in product.images or []]
    assert len(images) == 150
    assert sum(fixture.binary_size(image) or 0 for image in images) == shape.image_total_bytes
    assert all(500 <= (fixture.binary_size(image) or 0) <= 1500 for image in images)
    assert len({image.generate.seed for image in images if image.generate}) == 150
    assert shape.archive_entries == 1 + 3 + 2 + 10 + 50 + 10 + 3 + 150 + 1
    owner = next(member for member in organization.members if member.role == "owner")
    [owner_key] = [key for key in organization.api_keys if key.member_id == owner.id]
    assert owner_key.key == shape.owner_key and owner_key.prefix == "csu"
    # Strings that YAML 1.1 would read as something else stay strings.
    assert {"yes", "0777"} <= {tag for product in organization.products for tag in product.tags or []}


def test_the_same_shape_gives_the_same_bytes_and_another_label_other_ids(tmp_path: Path) -> None:
    first = write_fixture(tmp_path / "a.yaml", Shape(products=20)).read_bytes()
    again = write_fixture(tmp_path / "b.yaml", Shape(products=20)).read_bytes()
    other = Shape(products=20, label="other")

    assert first == again
    assert other.organization_id != Shape(products=20).organization_id
    assert other.organization_id not in first.decode()


def test_shapes_parse_from_the_command_line_form() -> None:
    assert Shape.parse("products=22000,images=3") == Shape(products=22_000, images=3)
    assert Shape.parse("") == Shape()
    assert Shape.parse(" image-bytes = 100 , label=big ") == Shape(image_bytes=100, label="big")
    for bad in ("products", "pixels=3", "images=three", "images=-1", "label="):
        with pytest.raises(ValueError):
            Shape.parse(bad)


def test_make_fixture_writes_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "big.yaml"

    assert main(["local", "make-fixture", str(target), "--shape", "products=30,images=2"]) == 0

    assert load_fixture(target).organizations[0].id == Shape(products=30, images=2).organization_id
    assert "30 products with 2 images each" in capsys.readouterr().out
    assert main(["local", "make-fixture", str(target), "--shape", "products=x"]) == 2
