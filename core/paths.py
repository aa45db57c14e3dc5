"""File names as the OS gives them, and the one rule for matching words against text.

On Linux a file name is bytes. Python hands them over as `str` decoded with the file system encoding and
the `surrogateescape` error handler (PEP 383), so bytes that are not valid UTF-8 survive as lone
surrogates (U+DC80..U+DCFF) and `os.fsencode` gives the original bytes back. Every path in this project
is such a str ("fs path"); these helpers turn it into display text and JSON and back, without loss.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import unicodedata

REPLACEMENT = "\ufffd"
_WORDS = re.compile(r'"([^"]*)"|(\S+)')


def is_text(path: str) -> bool:
    """True when the name is valid Unicode text (no undecodable bytes carried as surrogates)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def display_path(path: str) -> str:
    """The name as text for people: undecodable bytes become U+FFFD (the replacement character)."""
    if is_text(path):
        return path
    return os.fsencode(path).decode("utf-8", "replace")


def path_json(path: str) -> dict[str, str]:
    """`{"path": display text}`, plus `"path_bytes"` (the raw name in standard base64) only when the name
    is not valid UTF-8. This is the one JSON form of a path in the CLI's `--json` and the HTTP API."""
    if is_text(path):
        return {"path": path}
    return {"path": display_path(path), "path_bytes": base64.b64encode(os.fsencode(path)).decode("ascii")}


def path_from_json(path: str | None = None, path_bytes: str | None = None) -> str:
    """The fs path a client sent back: `path_bytes` (base64 of the raw name) wins over `path`.

    Raises ValueError when neither is given or `path_bytes` is not base64.
    """
    if path_bytes:
        try:
            return os.fsdecode(base64.b64decode(path_bytes, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"path_bytes is not base64: {exc}") from None
    if path:
        return path
    raise ValueError("give a path or path_bytes")


def fold(text: str) -> str:
    """Text in the form every word match compares: NFKC-normalised, then casefolded.

    So `café` written with a combining accent (NFD) matches `café` (NFC), `ZÜRICH` matches `zürich` and
    `STRASSE` matches `straße` (Unicode Standard Annex #15 for NFKC; `str.casefold` is full case folding,
    Unicode §3.13). Undecodable bytes in a file name fold as U+FFFD.
    """
    return unicodedata.normalize("NFKC", display_path(text)).casefold()


def query_words(text: str | None) -> list[str]:
    """The folded words of a text query; a "quoted phrase" is one word. Empty words are dropped."""
    if not text:
        return []
    words = (quoted or bare for quoted, bare in _WORDS.findall(fold(text)))
    return [w for w in (w.strip() for w in words) if w]


def words_match(words: list[str], folded_fields: list[str]) -> bool:
    """True when every (folded) word is a substring of at least one of the (folded) fields."""
    return all(any(w in field for field in folded_fields) for w in words)
