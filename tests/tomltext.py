"""Writing TOML text for generated test inputs (the standard library only reads TOML)."""

from __future__ import annotations

import re

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_string(text: str) -> str:
    """Return ``text`` as a TOML basic string (escapes, control characters, surrogates)."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        elif 0xD800 <= code <= 0xDFFF:  # a lone surrogate cannot be written as UTF-8
            out.append("\\uFFFD")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def toml_key(key: str) -> str:
    """Return ``key`` bare when TOML allows it, else quoted."""
    return key if _BARE.match(key) else toml_string(key)
