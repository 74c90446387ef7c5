"""Identifiers of catalogs, products, datasets, series members and formats.

Every identifier ends up as a path segment, on the server's disk and in users' local
mirrors, so it must be a *safe path segment*: not empty, not ``.`` or ``..``, no ``/``,
``\\`` or NUL, no control characters, at most 255 bytes in UTF-8.
"""

from __future__ import annotations

import re
import unicodedata

MAX_SEGMENT_BYTES = 255
_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f]")


class InvalidIdentifier(ValueError):
    """An identifier that is not a safe path segment."""


def identifier_problem(value: object) -> str | None:
    """Why ``value`` is not a safe identifier, or None when it is."""
    if not isinstance(value, str):
        return "must be a string"
    if plain_text(value) and value not in ("", ".", ".."):  # the common case, decided in one scan
        return None
    if not value:
        return "must not be empty"
    if value in (".", ".."):
        return f"must not be {value!r}"
    if "/" in value or "\\" in value:
        return "must not contain '/' or '\\'"
    if _FORBIDDEN.search(value):
        return "must not contain NUL or control characters"
    if len(value.encode("utf-8", errors="surrogatepass")) > MAX_SEGMENT_BYTES:
        return f"must be at most {MAX_SEGMENT_BYTES} bytes long"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid unicode"
    return None


def catalog_identifier_problem(value: object) -> str | None:
    """Why ``value`` may not name something in a catalog: an unsafe identifier, or one holding invisible
    characters (Unicode controls and format characters such as a zero-width space or a bidi override, which
    make two names look alike), or one not in Unicode NFC (two spellings of one name); None when it may."""
    problem = identifier_problem(value)
    if problem is not None or not isinstance(value, str) or value.isascii():
        return problem
    for char in value:
        if unicodedata.category(char) in INVISIBLE:
            return f"must not contain invisible or control characters (U+{ord(char):04X})"
    if not unicodedata.is_normalized("NFC", value):
        return "must be in Unicode normal form NFC"
    return None


INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def plain_text(value: str) -> bool:
    """True when ``value`` is ASCII, at most 255 bytes long and free of ``/``, ``\\``, NUL and control
    characters: then every piece of it is a safe identifier unless empty, ``.`` or ``..``."""
    return value.isascii() and len(value) <= MAX_SEGMENT_BYTES and _FORBIDDEN.search(value) is None


def check_identifier(value: object, kind: str = "identifier") -> str:
    """Return ``value`` when it is a safe identifier, else raise :class:`InvalidIdentifier`."""
    problem = identifier_problem(value)
    if problem is not None:
        raise InvalidIdentifier(f"{kind} {value!r} {problem}")
    assert isinstance(value, str)
    return value
