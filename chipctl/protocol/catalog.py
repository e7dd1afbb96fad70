"""Find protocols by path or by built-in name.

The built-in protocols live in the project's ``protocols/`` folder. A wheel installs them as
``chipctl/builtin_protocols/``; an editable install (or a source checkout) does not follow
that mapping, so the folder beside the package is used instead.
"""

from __future__ import annotations

from pathlib import Path

import chipctl
from chipctl.errors import ProtocolError

__all__ = ["builtin_dir", "builtin_names", "resolve_protocol"]


def builtin_dir() -> Path:
    """Return the folder holding the built-in protocol files."""
    package_dir = Path(chipctl.__file__).resolve().parent
    installed = package_dir / "builtin_protocols"
    if installed.is_dir():
        return installed
    return package_dir.parent / "protocols"


def builtin_names() -> list[str]:
    """Return the names of the built-in protocols, sorted."""
    folder = builtin_dir()
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []


def resolve_protocol(ref: str) -> tuple[str, str]:
    """Return ``(text, source)`` for a protocol path or built-in name.

    A path that exists wins over a built-in of the same name.

    Raises:
        ProtocolError: neither a readable file nor a built-in name.
    """
    path = Path(ref)
    if path.is_file():
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ProtocolError(str(path), f"cannot read: {exc}") from None
    name = ref[:-5] if ref.endswith(".toml") else ref
    builtin = builtin_dir() / f"{name}.toml"
    if "/" not in name and "\\" not in name and builtin.is_file():
        return builtin.read_text(encoding="utf-8"), f"{name} (built-in)"
    if path.exists():
        raise ProtocolError(str(path), "not a file")
    names = ", ".join(builtin_names()) or "none"
    raise ProtocolError(
        ref, f"no such file, and no built-in protocol of that name (built-ins: {names})"
    )
