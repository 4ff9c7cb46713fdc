"""Fast, safe, readable block-style YAML for JSON-like records.

PyYAML's emitter is the bottleneck of an export (CSafeDumper ~3k records/s), so
this module writes YAML directly. The output is meant for people (block style,
plain scalars where unambiguous, literal blocks for multi-line text) and
``yaml.safe_load`` gives back exactly the input: same types, values and key order.

Supported values are what JSON produces: ``str``, ``int``, ``float`` (incl.
inf/nan), ``bool``, ``None``, ``list`` and ``dict`` with ``str`` keys. Anything
else raises ``TypeError``; a lone surrogate (not encodable) raises ``ValueError``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import yaml

__all__ = ["dump_document", "dump_record"]

# A plain scalar must not start with an indicator or whitespace.
_BAD_FIRST = frozenset("-?:,[]{}#&*!|>'\"%@` ")

# The resolvers PyYAML applies to plain scalars (bool, int, float, null,
# timestamp, merge "<<", value "=", ...), straight from the library so we agree
# with the version that loads the archive. On top of that, stay conservative
# for other YAML 1.1/1.2 readers: y/n, "..." (a document-end marker at column
# 0) and anything that, after an optional sign, starts with a digit, a dot or
# an underscore and goes on only with characters that numbers and timestamps
# use in any schema ("1e3", "0o17", "2024-03-02 10:00:00Z", and "._0", "+_1",
# "._", "." or "+.", which YAML 1.2 readers such as ruamel.yaml take for numbers
# or fail on, and YAML 1.1's float pattern matches) is quoted too, while text
# such as "340 g", ".hidden" or an id like "9rmGWTfn73qS" stays plain.
_RESOLVERS = yaml.SafeLoader.yaml_implicit_resolvers
_AMBIGUOUS = re.compile(
    "|".join(f"(?:{p})" for p in sorted({regexp.pattern for rs in _RESOLVERS.values() for _, regexp in rs}))
    + r"| ^[-+]?[0-9._][0-9a-fA-FoOxXtTzZ_:.+\-\ ]*$ | ^(?:y|Y|n|N)$ | ^\.\.\.",
    re.VERBOSE,
)
# PyYAML picks resolvers by first character, so other strings need no regex at all.
_AMBIGUOUS_FIRST = frozenset(first for first in _RESOLVERS if first) | frozenset("-+.0123456789yYnN")

# Characters a double-quoted scalar must escape: quote, backslash, and every
# non-ASCII candidate (the callback keeps printable ones as they are).
_DQ_SPECIAL = re.compile(r'[\\"]|[^\x20-\x7e]')
_NAMED_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    "\x00": "\\0",
    "\x07": "\\a",
    "\x08": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\x0b": "\\v",
    "\x0c": "\\f",
    "\r": "\\r",
    "\x1b": "\\e",
}

# YAML limits an implicit (simple) key to 1024 characters, which PyYAML counts
# in code points and JavaScript readers in UTF-16 code units: rendered keys are
# measured in UTF-16 units, with a margin.
_MAX_SIMPLE_KEY = 1000
# Keys and short values repeat across records, so their rendering is cached;
# bounded so that a long-lived worker cannot grow the caches forever.
_CACHE_LIMIT = 16384
_CACHED_STR_MAX_LEN = 64
_key_cache: dict[str, str] = {}
_str_cache: dict[str, str] = {}


def dump_record(record: Mapping[str, Any]) -> bytes:
    """One record (a mapping) as a UTF-8 YAML document."""
    if not isinstance(record, Mapping):
        raise TypeError(f"a record must be a mapping, not {type(record).__name__}")
    return dump_document(record)


def dump_document(obj: Any) -> bytes:
    """Any supported value (normally a mapping or a list) as a UTF-8 YAML document."""
    out: list[str] = []
    if isinstance(obj, Mapping):
        if obj:
            _emit_mapping(obj, "", "", out)
        else:
            out.append("{}\n")
    elif isinstance(obj, list):
        if obj:
            _emit_sequence(obj, "", "", out)
        else:
            out.append("[]\n")
    else:
        # A top-level scalar never uses a literal block: its content would sit at column 0.
        out.append(_inline_scalar(obj) + "\n")
    return "".join(out).encode("utf-8")


def _emit_mapping(mapping: Mapping[Any, Any], indent: str, first_prefix: str, out: list[str]) -> None:
    """Append a non-empty block mapping whose keys sit at column ``len(indent)``.

    ``first_prefix`` starts the first line (``indent`` itself, or ``"- "`` for a
    mapping inside a sequence item); later lines start with ``indent``.
    """
    prefix = first_prefix
    child = indent + "  "
    key_get = _key_cache.get
    str_get = _str_cache.get
    scalar_get = _SCALARS.get
    for key, value in mapping.items():
        head = key_get(key)
        if head is None:
            head = _key_head(key, indent)
        kind = type(value)
        if kind is str:
            rendered = str_get(value)
            if rendered is None:
                literal = _literal_block(value, child) if "\n" in value else None
                if literal is not None:
                    out.append(f"{prefix}{head} {literal}")
                    prefix = indent
                    continue
                rendered = _str_value(value)
            out.append(f"{prefix}{head} {rendered}\n")
        elif (render := scalar_get(kind)) is not None:
            out.append(f"{prefix}{head} {render(value)}\n")
        elif isinstance(value, list):
            if value:
                out.append(f"{prefix}{head}\n")
                _emit_sequence(value, child, child, out)
            else:
                out.append(f"{prefix}{head} []\n")
        elif isinstance(value, dict) or isinstance(value, Mapping):  # noqa: SIM101 - dict first: fast
            if value:
                out.append(f"{prefix}{head}\n")
                _emit_mapping(value, child, child, out)
            else:
                out.append(f"{prefix}{head} {{}}\n")
        else:
            out.append(f"{prefix}{head} {_inline_scalar(value)}\n")
        prefix = indent


def _emit_sequence(sequence: list[Any], indent: str, first_prefix: str, out: list[str]) -> None:
    """Append a non-empty block sequence whose dashes sit at column ``len(indent)``."""
    prefix = first_prefix
    child = indent + "  "
    str_get = _str_cache.get
    scalar_get = _SCALARS.get
    for item in sequence:
        kind = type(item)
        if kind is str:
            rendered = str_get(item)
            if rendered is None:
                literal = _literal_block(item, child) if "\n" in item else None
                if literal is not None:
                    out.append(f"{prefix}- {literal}")
                    prefix = indent
                    continue
                rendered = _str_value(item)
            out.append(f"{prefix}- {rendered}\n")
        elif (render := scalar_get(kind)) is not None:
            out.append(f"{prefix}- {render(item)}\n")
        elif isinstance(item, list):
            if item:
                _emit_sequence(item, child, prefix + "- ", out)
            else:
                out.append(f"{prefix}- []\n")
        elif isinstance(item, dict) or isinstance(item, Mapping):  # noqa: SIM101 - dict first: fast
            if item:
                # Compact form "- key: value": the mapping's column is the child indent.
                _emit_mapping(item, child, prefix + "- ", out)
            else:
                out.append(f"{prefix}- {{}}\n")
        else:
            out.append(f"{prefix}- {_inline_scalar(item)}\n")
        prefix = indent


def _key_head(key: Any, indent: str) -> str:
    """``key:`` (cached) or, for keys too long for an implicit key, ``? key`` then ``:``."""
    if not isinstance(key, str):
        raise TypeError(f"mapping keys must be str, not {type(key).__name__}")
    text = str.__str__(key)
    rendered = _str_scalar(text) or _quoted(text)
    if _too_long_for_simple_key(rendered):
        return f"? {rendered}\n{indent}:"
    if len(_key_cache) >= _CACHE_LIMIT:
        _key_cache.clear()
    _key_cache[text] = rendered + ":"
    return rendered + ":"


def _too_long_for_simple_key(rendered: str) -> bool:
    """Whether ``rendered`` is over _MAX_SIMPLE_KEY UTF-16 code units (an astral character counts 2)."""
    if len(rendered) * 2 <= _MAX_SIMPLE_KEY:  # nearly every key: short enough whatever its characters
        return False
    return len(rendered.encode("utf-16-le")) // 2 > _MAX_SIMPLE_KEY


def _str_value(text: str) -> str:
    """A string value on one line; short ones (ids, enums, currencies, timestamps...) are cached."""
    rendered = _str_scalar(text) or _quoted(text)
    if len(text) <= _CACHED_STR_MAX_LEN:
        if len(_str_cache) >= _CACHE_LIMIT:
            _str_cache.clear()
        _str_cache[text] = rendered
    return rendered


def _str_scalar(text: str) -> str | None:
    """``text`` itself when it is safe as a plain scalar that loads back as this string, else None."""
    if (
        text
        and text.isprintable()
        and text[0] not in _BAD_FIRST
        and text[-1] not in " :"
        and ": " not in text
        and " #" not in text
        and (text[0] not in _AMBIGUOUS_FIRST or _AMBIGUOUS.match(text) is None)
    ):
        return text
    return None


def _quoted(text: str) -> str:
    if text.isprintable():
        # Single quotes need no escapes besides doubling the quote: the most readable form.
        return "'" + text.replace("'", "''") + "'"
    return '"' + _DQ_SPECIAL.sub(_dq_escape, text) + '"'


def _dq_escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    if char.isprintable():
        return char  # readable non-ASCII text (é, 漢字, emoji) stays as it is
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:
        raise ValueError(f"lone surrogate U+{code:04X} cannot be encoded as UTF-8")
    if code <= 0xFF:
        return f"\\x{code:02X}"
    if code <= 0xFFFF:
        return f"\\u{code:04X}"
    return f"\\U{code:08X}"


def _literal_block(text: str, content_indent: str) -> str | None:
    """``text`` as a literal block (header line and content), or None when that is not provably safe.

    Safe means every line is printable (no tabs, CR, NEL, U+2028/2029, BOM or
    other invisible characters), no line ends with a space, and at least one line
    is not empty. The content is indented two columns past the parent
    collection, which is what the indentation indicator ``2`` says when the
    first line starts with a space (or with an empty line) and auto-detection
    would get it wrong.
    """
    if text.endswith("\n\n"):
        chomp, body = "+", text[:-1]
    elif text.endswith("\n"):
        chomp, body = "", text[:-1]
    else:
        chomp, body = "-", text
    lines = body.split("\n")
    if not body.strip("\n"):
        return None
    for line in lines:
        if line and (not line.isprintable() or line[-1] == " "):
            return None
    indicator = "2" if text[0] in " \n" or body.lstrip("\n")[0] == " " else ""
    content = "\n".join([content_indent + line if line else "" for line in lines])
    return "|" + indicator + chomp + "\n" + content + "\n"


def _float_scalar(value: float) -> str:
    if math.isfinite(value):
        text = float.__repr__(value)
        # PyYAML's YAML 1.1 float resolver needs a dot: "1e+20" would load as a string.
        if "." not in text:
            mantissa, _, exponent = text.partition("e")
            text = mantissa + ".0" + ("e" + exponent if exponent else "")
        return text
    if math.isnan(value):
        return ".nan"
    return ".inf" if value > 0 else "-.inf"


def _int_scalar(value: int) -> str:
    try:
        return int.__repr__(value)
    except ValueError:
        # Beyond Python's int<->decimal-string limit (4300 digits) neither side can
        # use decimal; hexadecimal has no limit and PyYAML reads "0x..." as int.
        return hex(value)


def _none_scalar(_: None) -> str:
    return "null"


def _bool_scalar(value: bool) -> str:
    return "true" if value else "false"


def _str_inline(value: str) -> str:
    text = str.__str__(value)
    return _str_scalar(text) or _quoted(text)


_SCALARS: dict[type, Callable[[Any], str]] = {
    str: _str_inline,
    bool: _bool_scalar,
    int: _int_scalar,
    float: _float_scalar,
    type(None): _none_scalar,
}


def _inline_scalar(value: Any) -> str:
    """A scalar on one line (no literal block)."""
    render = _SCALARS.get(type(value))
    if render is not None:
        return render(value)
    if isinstance(value, Mapping):
        if value:
            raise TypeError("a non-empty mapping has no inline form here")
        return "{}"
    if isinstance(value, list):
        if value:
            raise TypeError("a non-empty list has no inline form here")
        return "[]"
    # Subclasses of the JSON types (e.g. str/int enums) render as their base value.
    for base in (bool, str, int, float):
        if isinstance(value, base):
            return _SCALARS[base](value)
    raise TypeError(f"cannot emit a value of type {type(value).__name__} as YAML")
