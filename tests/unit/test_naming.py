"""Tests of data_export.naming: safe path components, unique names, slugs and the archive-path check."""

from __future__ import annotations

import unicodedata

import pytest
from data_export.naming import (
    UniqueNames,
    collision_key,
    is_safe_archive_path,
    safe_component,
    safe_slug,
    split_extension,
    tagged_stem,
    utf16_units,
)
from hypothesis import given, settings
from hypothesis import strategies as st

HOSTILE_NAMES = [
    "", ".", "..", "...", " ", " . ", "../../etc/passwd", "..\\..\\boot.ini", "/etc/passwd", "C:\\x",
    "a/b", "CON", "con.txt", "Con .txt", "NUL.tar.gz", "COM1", "lpt9.log", "COM¹", "CONOUT$", "a\x00b",
    "a\u202eexe.jpg", "\ufefffile", "a\u2028b", "x\ud800y", "\udfff", "<a>:b|c?d*e\"f",
    "  lots   of \t space  ", "trailing. . .", "e\u0301.txt", "é.txt", "Front.JPG", "front.jpg",
    "x" * 400 + ".jpg", "漢" * 300 + ".pdf", "😀" * 80, "name." + "x" * 300, "a (2).txt",
]
names = st.text(st.characters(codec=None), max_size=300) | st.sampled_from(HOSTILE_NAMES)

FORBIDDEN = set('/\\<>:"|?*')
UNSAFE_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs"}
# Windows' reserved names (with any extension, in any case), written out independently of naming.py.
WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {
    f"{port}{digit}" for port in ("COM", "LPT") for digit in "0123456789¹²³"
}


def is_reserved(component: str) -> bool:
    return component.split(".", 1)[0].rstrip(" ").upper() in WINDOWS_RESERVED


def assert_safe(name: str, max_bytes: int, max_units: int | None = None) -> None:
    assert name
    assert is_safe_archive_path(name), repr(name)
    assert not is_reserved(name), repr(name)
    assert len(name.encode("utf-16-le")) // 2 <= (max_bytes if max_units is None else max_units)
    assert len(name.encode("utf-8")) <= max_bytes
    assert unicodedata.is_normalized("NFC", name)
    assert not any(char in FORBIDDEN or unicodedata.category(char) in UNSAFE_CATEGORIES for char in name)
    assert name == name.strip(" .")
    assert "  " not in name


@settings(max_examples=500)
@given(names, st.integers(min_value=8, max_value=255))
def test_safe_component_is_always_safe(name: str, max_bytes: int) -> None:
    result = safe_component(name, max_bytes=max_bytes)
    assert_safe(result, max_bytes)
    assert safe_component(result, max_bytes=max_bytes) == result


@settings(max_examples=300)
@given(names, st.integers(min_value=8, max_value=200))
def test_safe_component_fits_utf16_units(name: str, max_units: int) -> None:
    result = safe_component(name, max_units=max_units)
    assert_safe(result, 200, max_units)
    assert safe_component(result, max_units=max_units) == result
    _, extension = split_extension(safe_component(name))
    if extension and utf16_units(extension) < max_units // 2:
        assert result.endswith(extension)  # shortened, never at the cost of its extension


@pytest.mark.parametrize(
    "name",
    [
        "COM0", "com0.txt", "LPT0.tar.gz", "lpt0 .log", "COM\u00b9", "com\u00b2.jpg", "LPT\u00b3.png",
        "lpt\u00b9", "Com\u00b3 .x", "CONIN$.txt", "conout$",
    ],
)
def test_every_windows_reserved_name_is_avoided(name: str) -> None:
    assert is_reserved(name)
    safe = safe_component(name)
    assert safe == "_" + name and not is_reserved(safe)
    assert not is_safe_archive_path(f"a/{name}")
    names = UniqueNames()
    assert not is_reserved(names.allocate(name)) and not is_reserved(names.allocate(name))


def test_names_fit_utf16_units_keeping_the_extension() -> None:
    # An astral character is 2 UTF-16 units (Windows counts them so), a BMP one 1.
    assert utf16_units("a\u00e9\u6f22") == 3 and utf16_units("\U0001f600") == 2
    assert safe_component("\U0001f600" * 80 + ".png", max_units=40) == "\U0001f600" * 18 + ".png"
    assert safe_component("\U0001f600" * 80, max_units=41) == "\U0001f600" * 20  # never half a character
    assert safe_component("x" * 300 + ".jpeg", max_units=50) == "x" * 45 + ".jpeg"
    names = UniqueNames(max_units=40)
    long_name = "\u00e9" * 100 + ".pdf"
    assert names.allocate(long_name) == "\u00e9" * 36 + ".pdf"
    assert names.allocate(long_name) == "\u00e9" * 32 + " (2).pdf"
    with pytest.raises(ValueError, match="max_units"):
        UniqueNames(max_units=31)


def test_tagged_stems_are_short_readable_and_tell_their_identities_apart() -> None:
    assert tagged_stem("ZUF6rFErzk2LMU4DvbtjDA", "ZUF6rFErzk2LMU4DvbtjDA", max_units=40, max_bytes=195) == (
        "ZUF6rFErzk2LMU4DvbtjDA"
    )
    long_a, long_b = "a" * 100 + "1", "a" * 100 + "2"
    tagged_a = tagged_stem(long_a, long_a, max_units=40, max_bytes=195)
    tagged_b = tagged_stem(long_b, long_b, max_units=40, max_bytes=195)
    assert tagged_a.startswith("a" * 27 + "~") and len(tagged_a) == 40 and tagged_a != tagged_b
    assert tagged_stem(long_a, long_a, max_units=40, max_bytes=195) == tagged_a  # the same in every unit
    assert len(tagged_stem("\u6f22" * 100, "x", max_units=190, max_bytes=60).encode()) <= 60
    # A name kept as it is can never be taken for a tagged one, nor for a sibling ".yaml" file.
    looks_tagged = "abc~0123456789AB"
    assert tagged_stem(looks_tagged, looks_tagged, max_units=40, max_bytes=195) != looks_tagged
    assert tagged_stem("x.YAML", "x.YAML", max_units=40, max_bytes=195, avoid_suffix=".yaml") != "x.YAML"
    assert tagged_stem("x.yml", "x.yml", max_units=40, max_bytes=195, avoid_suffix=".yaml") == "x.yml"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("spec sheet (2024).pdf", "spec sheet (2024).pdf"),
        ("huila café.jpg", "huila café.jpg"),
        ("huila cafe\u0301.jpg", "huila café.jpg"),
        ("../../etc/passwd", "_.._etc_passwd"),
        ("..\\..\\boot.ini", "_.._boot.ini"),
        ("CON.txt", "_CON.txt"),
        ("con .txt", "_con .txt"),
        ("nul", "_nul"),
        ("COM1.tar.gz", "_COM1.tar.gz"),
        ("CONSOLE.txt", "CONSOLE.txt"),
        ("a\u202eexe.jpg", "a_exe.jpg"),
        ("a\x00b\tc\nd", "a_b_c_d"),
        ('<a>:b|c?d*e"f', "_a__b_c_d_e_f"),
        ("  many \u3000\u00a0 spaces  ", "many spaces"),
        ("..hidden.", "hidden"),
        ("", "file"),
        ("..", "file"),
        (" . . ", "file"),
        ("x\ud800", "x\ufffd"),
    ],
)
def test_safe_component_table(name: str, expected: str) -> None:
    assert safe_component(name) == expected


def test_safe_component_keeps_the_extension_when_truncating() -> None:
    assert safe_component("x" * 300 + ".jpg") == "x" * 196 + ".jpg"
    # 99 two-byte characters (198 bytes) + ".pdf" would be 202 bytes: one character less, none split.
    assert safe_component("é" * 150 + ".pdf") == "é" * 98 + ".pdf"
    assert safe_component("a" * 20, max_bytes=10) == "a" * 10
    # An "extension" as long as the budget cannot be kept.
    assert safe_component("a." + "b" * 15, max_bytes=12) == "a." + "b" * 10


def test_truncation_cannot_produce_a_device_name() -> None:
    assert safe_component("CON" + "x" * 20 + ".txt", max_bytes=7) == "_CO.txt"
    assert safe_component("AUX   and more", max_bytes=4) == "_AUX"


def test_fallback_must_itself_be_safe_and_fit() -> None:
    assert safe_component("///", fallback="asset") == "___"
    assert safe_component("...", fallback="asset") == "asset"
    for fallback in ["", "..", "a/b", "CON", " x"]:
        with pytest.raises(ValueError, match="fallback"):
            safe_component("x", fallback=fallback)
    with pytest.raises(ValueError, match="fallback"):
        safe_component("x", max_bytes=3)
    with pytest.raises(ValueError, match="max_bytes"):
        safe_component("x", max_bytes=256)


def test_split_extension() -> None:
    assert split_extension("photo.jpg") == ("photo", ".jpg")
    assert split_extension("a.tar.gz") == ("a.tar", ".gz")
    assert split_extension(".bashrc") == (".bashrc", "")
    assert split_extension("a.") == ("a.", "")
    assert split_extension("v1.2 final") == ("v1.2 final", "")
    assert split_extension("a." + "x" * 17) == ("a." + "x" * 17, "")


def test_collision_key_folds_case_and_normalisation() -> None:
    assert collision_key("Front.JPG") == collision_key("front.jpg")
    assert collision_key("é") == collision_key("e\u0301")
    assert collision_key("Straße") == collision_key("STRASSE")
    assert collision_key("a.txt") != collision_key("a.txt ")


def test_unique_names_numbers_collisions() -> None:
    names = UniqueNames()
    inputs = ["a.txt", "A.TXT", "a (2).txt", "a.txt", "front.jpg", "Front.JPG"]
    allocated = [names.allocate(name) for name in inputs]
    assert allocated == ["a.txt", "A (2).TXT", "a (2) (2).txt", "a (3).txt", "front.jpg", "Front (2).JPG"]
    assert names.allocate("e\u0301") == "é"
    assert names.allocate("É") == "É (2)"
    assert names.allocate("") == "file"
    assert names.allocate("..") == "file (2)"
    assert "FRONT.jpg" in names
    assert "back.jpg" not in names


def test_reserve_takes_exact_names_first() -> None:
    names = UniqueNames()
    names.reserve("ZUF6rFErzk2LMU4DvbtjDA.yaml")
    assert names.allocate("zuf6rferzk2lmu4dvbtjda.YAML") == "zuf6rferzk2lmu4dvbtjda (2).YAML"
    with pytest.raises(ValueError, match="already taken"):
        names.reserve("zuf6rferzk2lmu4dvbtjda.yaml")
    with pytest.raises(ValueError, match="not a safe name"):
        names.reserve("../x.yaml")


def test_numbered_names_fit_max_bytes() -> None:
    names = UniqueNames(max_bytes=40)
    long_name = "x" * 100 + ".jpeg"
    first, second = names.allocate(long_name), names.allocate(long_name)
    assert first == "x" * 35 + ".jpeg"
    assert second == "x" * 31 + " (2).jpeg"
    tight = UniqueNames(max_bytes=32)
    ext_heavy = "a." + "é" * 15  # a 31-byte extension leaves no room for " (2)": the numbered name drops it
    assert tight.allocate(ext_heavy) == ext_heavy
    assert tight.allocate(ext_heavy) == "a." + "é" * 13 + " (2)"
    with pytest.raises(ValueError, match="max_bytes"):
        UniqueNames(max_bytes=31)


colliding_names = st.sampled_from(["a.txt", "A.TXT", "a (2).txt", "a (3).TXT", "É", "e\u0301", "", ".."])


@settings(max_examples=300)
@given(
    st.lists(names | colliding_names, max_size=40),
    st.integers(min_value=32, max_value=255),
    st.none() | st.integers(min_value=32, max_value=200),
)
def test_unique_names_never_collide(inputs: list[str], max_bytes: int, max_units: int | None) -> None:
    names = UniqueNames(max_bytes=max_bytes, max_units=max_units)
    allocated = [names.allocate(name) for name in inputs]
    keys = [collision_key(unicodedata.normalize("NFC", name).casefold()) for name in allocated]
    assert len(set(keys)) == len(keys)
    # The brief's definition too: NFC + casefold.
    assert len({unicodedata.normalize("NFC", name).casefold() for name in allocated}) == len(allocated)
    for name in allocated:
        assert_safe(name, max_bytes, max_units)


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("Acme Coffee Roasters", "acme-coffee-roasters"),
        ("Café de Colombia — Huila 1 kg", "cafe-de-colombia-huila-1-kg"),
        ("  --Other Org Ltd.--  ", "other-org-ltd"),
        ("漢字", "organization"),
        ("", "organization"),
        ("ｆｕｌｌｗｉｄｔｈ", "fullwidth"),
        ("a" * 59 + " b", "a" * 59),
    ],
)
def test_safe_slug(text: str, slug: str) -> None:
    assert safe_slug(text) == slug


@given(st.text(st.characters(codec=None)), st.integers(min_value=12, max_value=100))
def test_safe_slug_is_always_a_slug(text: str, max_len: int) -> None:
    slug = safe_slug(text, max_len=max_len)
    assert 0 < len(slug) <= max_len
    assert all(char in "abcdefghijklmnopqrstuvwxyz0123456789-" for char in slug)
    assert not slug.startswith("-")
    assert not slug.endswith("-")


@pytest.mark.parametrize(
    "path",
    ["a", "acme-coffee/products/ZUF6rFErzk2LMU4DvbtjDA.yaml", "a/b c/é 漢字.jpg", "a/.hidden", "a/_CON.txt"],
)
def test_safe_archive_paths(path: str) -> None:
    assert is_safe_archive_path(path)


@pytest.mark.parametrize(
    "path",
    [
        "", "/", "/etc/passwd", "a/", "a//b", "./a", "a/./b", "a/../b", "..", "a/..", "a\\b", "C:x",
        "a/b\x00", "a/\x1f", "a/b\u202e", "a/\u2028", "a/x\ud800", "a/.. ", "a/b.", "a/b ", "CON",
        "a/nul.txt", "a?", "x" * 256, "a/COM0", "a/lpt0.txt", "a/COM\u00b9.log", "LPT\u00b3",
    ],
)
def test_unsafe_archive_paths(path: str) -> None:
    assert not is_safe_archive_path(path)
