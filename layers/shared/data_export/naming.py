"""Safe, unique names for archive entries built from user data (file names users typed).

An archive is extracted on Linux, macOS and Windows by tools that trust its
names, so a name from user data must never climb out of the target folder,
hide its real extension behind bidi controls, hit a Windows device name,
collide with another entry on a case-insensitive, normalising file system, or
make a path too long for Windows once extracted into some folder.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

__all__ = [
    "MAX_PATH_UNITS",
    "UniqueNames",
    "is_safe_archive_path",
    "safe_component",
    "safe_slug",
    "tagged_stem",
    "utf16_units",
]

# Most file systems limit one name to 255 bytes.
MAX_COMPONENT_BYTES = 255
# Windows limits a whole path to 260 UTF-16 code units (MAX_PATH, with the drive
# and a NUL): a path of the archive, top folder included, stays under 200 so
# that it still fits after a destination folder of up to 60.
MAX_PATH_UNITS = 199
# An extension longer than this is more likely part of the name than a type.
_MAX_EXTENSION_CHARS = 16

# Unicode categories that are invisible or move text around: control, format
# (bidi overrides such as U+202E, zero-width characters, BOM), line and
# paragraph separators, and surrogates (not encodable as UTF-8).
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
# Path separators and what Windows forbids in a name.
_FORBIDDEN = frozenset('/\\<>:"|?*')
_WHITESPACE_RUN = re.compile(r"\s+")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Reserved with any extension, in any case: COM0-COM9 and LPT0-LPT9, and the
# superscript digits Windows also takes for ports (COM¹, LPT³).
_WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{port}{n}" for port in ("COM", "LPT") for n in [*"0123456789", "¹", "²", "³"]]
)
_SLUG_SEPARATORS = re.compile(r"[^a-z0-9]+")
_SLUG_FALLBACK = "organization"
_MIN_UNIQUE_BYTES = 32
# A shortened stem ends with "~" and this many hex digits of its identity's SHA-256.
_TAG_DIGITS = 12
_TAG = re.compile(rf"~[0-9a-f]{{{_TAG_DIGITS}}}$")


def utf16_units(text: str) -> int:
    """Length in UTF-16 code units, as Windows (and JavaScript) count: a character beyond U+FFFF counts 2."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def safe_component(
    name: str, *, fallback: str = "file", max_bytes: int = 200, max_units: int | None = None
) -> str:
    """One safe path component (a file or folder name) made from ``name``.

    The result is NFC, valid UTF-8, at most ``max_bytes`` bytes (and
    ``max_units`` UTF-16 code units, if given), never ``.`` or ``..``, has no
    separators, control or format characters, or characters Windows forbids,
    does not start or end with a space or dot, is not a Windows device name, and
    keeps the extension of a long name when it can.
    """
    if max_bytes > MAX_COMPONENT_BYTES:
        raise ValueError(f"max_bytes must be at most {MAX_COMPONENT_BYTES}")
    units = max_bytes if max_units is None else max_units
    if (
        _clean(fallback) != fallback
        or not _is_safe_component(fallback)
        or len(fallback.encode()) > max_bytes
        or utf16_units(fallback) > units
    ):
        raise ValueError(f"fallback {fallback!r} is not a safe name of at most {max_bytes} bytes")
    text = _fit(_clean(name), max_bytes, units)
    if _is_windows_device(text):
        text = _fit("_" + text, max_bytes, units)
    return text or fallback


def _clean(name: str) -> str:
    text = unicodedata.normalize("NFC", _SURROGATE.sub("\ufffd", name))
    text = "".join("_" if _is_unsafe_char(char) else char for char in text)
    return _WHITESPACE_RUN.sub(" ", text).strip(" .")


def _fit(text: str, max_bytes: int, max_units: int) -> str:
    """``text`` cut to ``max_bytes`` UTF-8 bytes and ``max_units`` UTF-16 units, keeping its extension when
    possible."""
    if len(text.encode()) <= max_bytes and utf16_units(text) <= max_units:
        return text
    stem, extension = split_extension(text)
    extension_bytes, extension_units = len(extension.encode()), utf16_units(extension)
    if extension and extension_bytes < max_bytes and extension_units < max_units:
        kept = _cut(stem, max_bytes - extension_bytes, max_units - extension_units)
        if kept:
            return kept + extension
    return _cut(text, max_bytes, max_units)


def _cut(text: str, max_bytes: int, max_units: int | None = None) -> str:
    """The longest prefix of ``text`` within ``max_bytes`` bytes (and ``max_units`` UTF-16 units), never
    splitting a character, without trailing spaces or dots."""
    # A prefix of an NFC string is NFC: composition only looks back.
    text = text.encode()[:max_bytes].decode(errors="ignore")
    if max_units is not None and utf16_units(text) > max_units:
        # Half a surrogate pair at the end is dropped, as half a UTF-8 sequence is above.
        text = text.encode("utf-16-le")[: 2 * max_units].decode("utf-16-le", errors="ignore")
    return text.rstrip(" .")


def tagged_stem(stem: str, identity: str, *, max_units: int, max_bytes: int, avoid_suffix: str = "") -> str:
    """``stem`` if it fits ``max_units`` UTF-16 units and ``max_bytes`` bytes, else as much of its start as
    fits followed by ``~`` and 12 hex digits of ``identity``'s SHA-256: readable, and unique without knowing
    the other names (different identities, different tags), which the parts of an export built apart need.

    A safe ``stem`` gives a safe name. So that a name kept as it is can never be taken for a shortened one, a
    stem that already ends like a tag (once case-folded), or with ``avoid_suffix`` (``".yaml"``: the name of
    a sibling file), is tagged too.
    """
    if max_units < _TAG_DIGITS + 2 or max_bytes < _TAG_DIGITS + 2:
        raise ValueError("no room for a tagged name")
    key = collision_key(stem)
    if (
        utf16_units(stem) <= max_units
        and len(stem.encode()) <= max_bytes
        and not _TAG.search(key)
        and not (avoid_suffix and key.endswith(collision_key(avoid_suffix)))
    ):
        return stem
    digest = hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:_TAG_DIGITS]
    tag = "~" + digest
    return _cut(stem, max_bytes - len(tag), max_units - len(tag)) + tag


def split_extension(name: str) -> tuple[str, str]:
    """``("photo", ".jpg")`` for ``"photo.jpg"``; no extension for ``".bashrc"``, ``"a."`` or ``"a.b c"``."""
    dot = name.rfind(".")
    extension = name[dot:]
    if dot <= 0 or not 1 < len(extension) <= _MAX_EXTENSION_CHARS or " " in extension:
        return name, ""
    return name[:dot], extension


def _is_windows_device(name: str) -> bool:
    # Windows ignores everything after the first dot, and spaces before it: "con .txt" is CON.
    return name.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_DEVICES


def collision_key(name: str) -> str:
    """What two names share when a file system would take them for the same file.

    Canonical caseless matching (Unicode's NFD(casefold(NFD(x)))): ``Front.JPG``
    and ``front.jpg`` collide, and so do ``é`` written as one or two code points.
    """
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", name).casefold())


class UniqueNames:
    """Allocates names that are unique within one folder of an archive.

    ``allocate("front.jpg")`` twice gives ``front.jpg`` then ``front (2).jpg``;
    a later real ``front (2).jpg`` gets ``front (2) (2).jpg``. Names are at most
    ``max_bytes`` UTF-8 bytes and ``max_units`` UTF-16 code units (default: no
    more units than bytes), long ones shortened keeping their extension.
    """

    def __init__(self, *, fallback: str = "file", max_bytes: int = 200, max_units: int | None = None) -> None:
        if max_bytes < _MIN_UNIQUE_BYTES or (max_units is not None and max_units < _MIN_UNIQUE_BYTES):
            # Below this, numbered names could be cut until they collide again.
            raise ValueError(f"max_bytes and max_units must be at least {_MIN_UNIQUE_BYTES}")
        self._fallback = fallback
        self._max_bytes = max_bytes
        self._max_units = max_bytes if max_units is None else max_units
        self._safe(fallback)  # validates the fallback
        self._taken: set[str] = set()
        # Next counter to try per base name, so n copies of one name cost O(n), not O(n²).
        self._next_counter: dict[str, int] = {}

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and collision_key(name) in self._taken

    def reserve(self, name: str) -> None:
        """Take ``name`` exactly as given (a name the caller writes itself, e.g. ``<id>.yaml``).

        Raises ValueError when the name is not safe as it is, or is already taken.
        """
        if self._safe(name) != name:
            raise ValueError(f"{name!r} is not a safe name")
        key = collision_key(name)
        if key in self._taken:
            raise ValueError(f"{name!r} is already taken")
        self._taken.add(key)

    def allocate(self, name: str) -> str:
        """A safe name for ``name`` that collides with no name allocated or reserved before."""
        base = self._safe(name)
        base_key = collision_key(base)
        if base_key not in self._taken:
            self._taken.add(base_key)
            return base
        counter = self._next_counter.get(base_key, 2)
        while True:
            candidate = self._numbered(base, counter)
            counter += 1
            key = collision_key(candidate)
            if key not in self._taken:
                self._taken.add(key)
                self._next_counter[base_key] = counter
                return candidate

    def _safe(self, name: str) -> str:
        return safe_component(
            name, fallback=self._fallback, max_bytes=self._max_bytes, max_units=self._max_units
        )

    def _numbered(self, base: str, counter: int) -> str:
        """``stem (counter).ext``, the stem shortened to fit; without the extension if that does not fit."""
        stem, extension = split_extension(base)
        for name, kept_extension in ((stem, extension), (base, "")):
            suffix = f" ({counter}){kept_extension}"
            budget = self._max_bytes - len(suffix.encode())
            units = self._max_units - utf16_units(suffix)
            if budget > 0 and units > 0:
                return (_cut(name, budget, units) or "_") + suffix
        raise ValueError(f"no room for a numbered name within {self._max_bytes} bytes")


def safe_slug(text: str, *, max_len: int = 60) -> str:
    """An ASCII ``[a-z0-9-]`` slug (for the archive's top folder and download name)."""
    if max_len < len(_SLUG_FALLBACK):
        raise ValueError(f"max_len must be at least {len(_SLUG_FALLBACK)}")
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", errors="ignore").decode("ascii")
    slug = _SLUG_SEPARATORS.sub("-", ascii_text.lower()).strip("-")
    return slug[:max_len].rstrip("-") or _SLUG_FALLBACK


def is_safe_archive_path(path: str) -> bool:
    """Whether an archive writer may use ``path`` as an entry name.

    Relative, ``/``-separated, valid UTF-8, not ending in ``/``; every component
    non-empty, at most 255 bytes, not ``.``/``..``, not ending in a space or dot
    (Windows strips those, so ``".. "`` would become ``..``), not a Windows
    device name, and free of backslashes, characters Windows forbids, and
    control, format or separator characters.
    """
    if not isinstance(path, str) or not path or path.startswith("/") or path.endswith("/"):
        return False
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return all(_is_safe_component(component) for component in path.split("/"))


def _is_safe_component(component: str) -> bool:
    return (
        bool(component)
        and component[-1] not in " ."
        and len(component.encode()) <= MAX_COMPONENT_BYTES
        and not _is_windows_device(component)
        and not any(_is_unsafe_char(char) for char in component)
    )


def _is_unsafe_char(char: str) -> bool:
    return char in _FORBIDDEN or unicodedata.category(char) in _UNSAFE_CATEGORIES
