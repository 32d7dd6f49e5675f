"""Hashes that name what was built from what: exports, feature caches, checkpoint manifests."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK_BYTES = 1 << 20


def file_digest(path: Path) -> str:
    """SHA-256 of one file's bytes, read in chunks (checkpoints are hundreds of megabytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def folder_digest(folder: Path) -> str:
    """SHA-256 over the name and bytes of each file directly in `folder`; model cards (*.md) do not count."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix != ".md"):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
