"""Round-trip and readability tests of data_export.yaml_emit against real readers of YAML 1.1 (PyYAML) and
YAML 1.2 (ruamel.yaml): every string emitted must load back as the identical string in both."""

from __future__ import annotations

import importlib.util
import math
import textwrap
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from data_export.yaml_emit import dump_document, dump_record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

LOADERS: list[type[Any]] = [yaml.SafeLoader]
if getattr(yaml, "__with_libyaml__", False):
    LOADERS.append(yaml.CSafeLoader)


def _pyyaml_reader(loader: type[Any]) -> Callable[[bytes], Any]:
    return lambda document: yaml.load(document, Loader=loader)


def _ruamel_reader(pure: bool) -> Callable[[bytes], Any]:
    # A new instance per document: ruamel.yaml's loaders keep state between loads.
    return lambda document: YAML(typ="safe", pure=pure).load(document)


# Readers of both YAML versions: PyYAML reads YAML 1.1, ruamel.yaml YAML 1.2 (its C loader too, if installed).
READERS: list[tuple[str, Callable[[bytes], Any]]] = [
    *((loader.__name__, _pyyaml_reader(loader)) for loader in LOADERS),
    ("ruamel.yaml", _ruamel_reader(pure=True)),
]
if importlib.util.find_spec("_ruamel_yaml") is not None:  # ruamel.yaml.clib
    READERS.append(("ruamel.yaml (C)", _ruamel_reader(pure=False)))

TRICKY_STRINGS = [
    "yes", "no", "on", "off", "y", "n", "Y", "N", "YES", "No", "True", "true", "FALSE", "null",
    "Null", "NULL", "~", "0777", "0x1F", "0o17", "0b101", "1e3", "1E3", "12:30", "190:20:30",
    "1_000", "+1", "-1", "1.5", ".5", "5.", "-.5", ".inf", "-.inf", "+.INF", ".nan", ".NaN", "._",
    "2024-03-02", "2024-03-02T09:15:00+00:00", "2001-12-14 21:59:43.10 -5", "-", "--", "---",
    "--- x", "...", "... x", "- a", "-a", "? x", "?", ":", ":x", "x:", "@x", "`x", "%x", "!x",
    "!!str", "&x", "*x", "|", ">", "|-", ">+", "<<", "=", ",", "[", "]", "{", "}", "[a]", "{a: 1}",
    "'", '"', "''", "'a'", '"a"', " ", "  ", " a", "a ", " a ", "#", " #", "a #b", "a#b", "a: b",
    "a:b", "http://x.example/a?b=c#d", "", "00628176543215", "\t", "a\tb", "\n", "\n\n", "a\n",
    "a\n\n", "\na", " a\nb", "a \nb", "a\n b", "a\r\nb", "a\rb", "\x00", "\x07", "\x1b", "\x7f",
    "\x80", "\x85", "\x9f", "\xa0", "\ufeff", "\ufeffa", "\u2028", "\u2029", "a\u2028b", "\u200b",
    "\u202e", "\ufffe", "\uffff", "é", "漢字", "😀", "👨\u200d👩\u200d👧",
    "Café de Colombia — Huila 1 kg", 'Grinder 2000 "Pro"', "\\", "C:\\dir", "a\\nb",
    "# comment\nnext", "line\n# not a comment\n", "a\n---\nb\n", "a\n...\nb", "key: |\n  x",
    # Signs, dots, underscores and digits: YAML 1.2 readers (ruamel.yaml) take "._0" for 0.0 and "+_1" for 1,
    # fail on "._" and "+_"; "." and "+." match YAML 1.1's float pattern.
    "._0", "+_1", "+_", ".", "+.", "+._", "._e+1", "+._1", "._1_", "__1", "_.", ".0e1", "+._e-1",
]

# Strings made of what numbers, timestamps and their look-alikes use: where YAML 1.1 and 1.2 readers disagree.
number_like = st.from_regex(r"[-+]?[._0-9][-+._0-9eExXoObB:Tt Z]{0,8}", fullmatch=True)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
    | st.sampled_from(TRICKY_STRINGS)
    | number_like
)
keys = st.text() | st.sampled_from(TRICKY_STRINGS) | number_like
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5),
    max_leaves=30,
)


def assert_same(loaded: Any, expected: Any, path: str = "$") -> None:
    """Deep equality that also checks exact types, key order, nan and the sign of zero."""
    assert type(loaded) is type(expected), f"{path}: {type(loaded).__name__} != {type(expected).__name__}"
    if isinstance(expected, dict):
        assert list(loaded) == list(expected), f"{path}: keys {list(loaded)!r} != {list(expected)!r}"
        for key, value in expected.items():
            assert_same(loaded[key], value, f"{path}[{key!r}]")
    elif isinstance(expected, list):
        assert len(loaded) == len(expected), f"{path}: length {len(loaded)} != {len(expected)}"
        for index, (got, want) in enumerate(zip(loaded, expected, strict=True)):
            assert_same(got, want, f"{path}[{index}]")
    elif isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(loaded), f"{path}: {loaded!r} is not nan"
    elif isinstance(expected, float):
        assert loaded == expected and math.copysign(1, loaded) == math.copysign(1, expected), (
            f"{path}: {loaded!r} != {expected!r}"
        )
    else:
        assert loaded == expected, f"{path}: {loaded!r} != {expected!r}"


def assert_round_trips(document: bytes, expected: Any) -> None:
    for name, load in READERS:
        try:
            loaded = load(document)
        except Exception as error:
            raise AssertionError(f"{name} cannot read {document[:200]!r}: {error}") from error
        try:
            assert_same(loaded, expected)
        except AssertionError as error:
            raise AssertionError(f"{name}: {error}") from error


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, json_values, max_size=8))
def test_records_round_trip(record: dict[str, Any]) -> None:
    assert_round_trips(dump_record(record), record)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_documents_of_any_shape_round_trip(value: Any) -> None:
    assert_round_trips(dump_document(value), value)


@pytest.mark.parametrize("text", TRICKY_STRINGS)
def test_tricky_string_stays_a_string_as_value_key_and_list_item(text: str) -> None:
    record = {"v": text, text: 1, "items": [text, [text], {text: text}]}
    assert_round_trips(dump_record(record), record)


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ("yes", "v: 'yes'"),
        ("00628176543215", "v: '00628176543215'"),
        ("2024-03-02T09:15:00+00:00", "v: '2024-03-02T09:15:00+00:00'"),
        ("a: b", "v: 'a: b'"),
        ("it's", "v: it's"),
        (" it's", "v: ' it''s'"),
        ("", "v: ''"),
        ("a\tb", 'v: "a\\tb"'),
        ("\x00\x7f\x85\u2028\ufeff", 'v: "\\0\\x7F\\x85\\u2028\\uFEFF"'),
        ("x\U000e0001", 'v: "x\\U000E0001"'),
        ('say "hi"\t\\', 'v: "say \\"hi\\"\\t\\\\"'),
        ("café 漢字 😀", "v: café 漢字 😀"),
        ("9rmGWTfn73qSm2TjFwu33Y", "v: 9rmGWTfn73qSm2TjFwu33Y"),
        ("340 g", "v: 340 g"),
        ("1 000", "v: '1 000'"),
        ("0o17", "v: '0o17'"),
        ("._0", "v: '._0'"),
        ("+_1", "v: '+_1'"),
        ("._", "v: '._'"),
        ("+_", "v: '+_'"),
        (".", "v: '.'"),
        ("+.", "v: '+.'"),
        ("_1", "v: _1"),
        (".hidden", "v: .hidden"),
        ("+ more", "v: + more"),
        ("http://x.example/a?b=c#d", "v: http://x.example/a?b=c#d"),
        (1.0, "v: 1.0"),
        (1e20, "v: 1.0e+20"),
        (-5e-324, "v: -5.0e-324"),
        (1.5e-07, "v: 1.5e-07"),
        (-0.0, "v: -0.0"),
        (float("inf"), "v: .inf"),
        (float("-inf"), "v: -.inf"),
        (float("nan"), "v: .nan"),
        (10**30, "v: 1000000000000000000000000000000"),
        (True, "v: true"),
        (None, "v: null"),
        ([], "v: []"),
        ({}, "v: {}"),
    ],
)
def test_scalar_rendering(value: Any, line: str) -> None:
    document = dump_record({"v": value})
    assert document.decode() == line + "\n"
    assert_round_trips(document, {"v": value})


@pytest.mark.parametrize(
    ("text", "header", "lines"),
    [
        ("a\nb", "|-", ["a", "b"]),
        ("a\nb\n", "|", ["a", "b"]),
        ("a\nb\n\n", "|+", ["a", "b", ""]),
        (" a\nb", "|2-", [" a", "b"]),
        ("\na", "|2-", ["", "a"]),
        ("a\n\n  b # c\n- d", "|-", ["a", "", "  b # c", "- d"]),
    ],
)
def test_multiline_text_uses_literal_blocks(text: str, header: str, lines: list[str]) -> None:
    def block(indent: str) -> str:
        return header + "\n" + "".join(indent + line + "\n" if line else "\n" for line in lines)

    cases: list[tuple[dict[str, Any], str]] = [
        ({"v": text}, "v: " + block("  ")),
        ({"l": [text]}, "l:\n  - " + block("    ")),
        ({"l": [{"v": text}]}, "l:\n  - v: " + block("      ")),
    ]
    for record, expected in cases:
        document = dump_record(record)
        assert document.decode() == expected
        assert_round_trips(document, record)


@pytest.mark.parametrize(
    "text", ["a \nb", "a\tb\nc", "a\r\nb", "a\n\u2028b", "\ufeffa\nb", "\n", "\n\n", "a\x85\nb"]
)
def test_multiline_text_that_is_unsafe_as_a_block_is_double_quoted(text: str) -> None:
    document = dump_record({"v": text})
    assert document.startswith(b'v: "')
    assert document.count(b"\n") == 1
    assert_round_trips(document, {"v": text})


def test_huge_int_and_long_key_round_trip() -> None:
    huge = -(7**9000)  # over Python's 4300-digit str() limit
    record = {"k" * 5000: huge, "a": {"x" * 2000: [1]}}
    assert_round_trips(dump_record(record), record)


@pytest.mark.parametrize(
    ("key", "simple"),
    [
        ("k" * 1000, True),
        ("k" * 1001, False),
        ("é" * 1000, True),  # one UTF-16 unit each
        ("😀" * 500, True),  # two UTF-16 units each: 1,000
        ("😀" * 501, False),  # 501 code points, but 1,002 UTF-16 units, as JavaScript readers count
        ("x😀" * 334, False),
    ],
)
def test_long_keys_are_measured_in_utf16_units(key: str, simple: bool) -> None:
    record = {key: 1, "next": [{key: key}]}
    document = dump_record(record)
    assert document.startswith(b"? ") is not simple
    assert (b"  - ? " in document) is not simple  # inside a list item's mapping too
    assert_round_trips(document, record)


def test_lone_surrogate_is_rejected() -> None:
    with pytest.raises(ValueError, match="surrogate"):
        dump_record({"v": "a\udc80"})
    with pytest.raises(ValueError, match="surrogate"):
        dump_record({"\ud800": 1})


@pytest.mark.parametrize(
    "record",
    [{"v": (1, 2)}, {"v": {1, 2}}, {"v": b"x"}, {1: "x"}, {"v": [object()]}, {"v": {"w": 1j}}],
)
def test_values_that_json_cannot_produce_are_rejected(record: dict[Any, Any]) -> None:
    with pytest.raises(TypeError):
        dump_record(record)


def test_a_record_must_be_a_mapping() -> None:
    with pytest.raises(TypeError):
        dump_record([1])  # type: ignore[arg-type]


def test_top_level_documents() -> None:
    assert dump_document([]) == b"[]\n"
    assert dump_document({}) == b"{}\n"
    assert dump_document(["a", {"b": 1, "c": [1]}]) == b"- a\n- b: 1\n  c:\n    - 1\n"
    assert dump_document("...") == b"'...'\n"
    assert_round_trips(dump_document("a\nb"), "a\nb")


# A product of /work/shared/spec/example-org.yaml, copied: the test must not depend on files outside the repo.
EXAMPLE_PRODUCT_YAML = """\
id: Hk4tWm8Ns2vQeRaJc5LpXy
brand_id: JwCCvmAqZ583VxRmfiUTdq
name: "Grinder 2000 \\"Pro\\""
gtin: "00628176543246"
created_at: "2025-01-05T10:00:00+00:00"
description: |
  Conical burr grinder.
  Multi-line description with: colons, - dashes, and # hashes.
attributes: {origin: Ethiopia, process: washed, roast: light, weight_g: 340, capacity_l: 1.0}
tags: [single-origin, light]
price: {amount: "21.50", currency: CAD}
images:
  - {filename: front.jpg, content_type: image/jpeg, generate: {size_bytes: 734003, seed: 10}}
  - {filename: kettle-side.png, content_type: image/png, missing: true}
documents: []
"""


def test_example_product_is_readable_block_yaml() -> None:
    product = yaml.safe_load(EXAMPLE_PRODUCT_YAML)
    document = dump_record(product)
    assert document.decode() == textwrap.dedent(
        """\
        id: Hk4tWm8Ns2vQeRaJc5LpXy
        brand_id: JwCCvmAqZ583VxRmfiUTdq
        name: Grinder 2000 "Pro"
        gtin: '00628176543246'
        created_at: '2025-01-05T10:00:00+00:00'
        description: |
          Conical burr grinder.
          Multi-line description with: colons, - dashes, and # hashes.
        attributes:
          origin: Ethiopia
          process: washed
          roast: light
          weight_g: 340
          capacity_l: 1.0
        tags:
          - single-origin
          - light
        price:
          amount: '21.50'
          currency: CAD
        images:
          - filename: front.jpg
            content_type: image/jpeg
            generate:
              size_bytes: 734003
              seed: 10
          - filename: kettle-side.png
            content_type: image/png
            missing: true
        documents: []
        """
    )
    assert_round_trips(document, product)
