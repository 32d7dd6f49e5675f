"""One hash of a model folder, so an export made from other weights or settings is seen as stale."""

from __future__ import annotations

import hashlib
from pathlib import Path


def folder_digest(folder: Path) -> str:
    """SHA-256 over the name and bytes of each file directly in `folder`; model cards (*.md) do not count."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix != ".md"):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
