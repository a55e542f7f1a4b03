"""Cheap, stable fingerprints of input files and settings (for cache keys and provenance)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

_EDGE = 1 << 20  # bytes hashed at each end of a file


def file_signature(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Name, size and a SHA-256 of the first and last MiB of a file.

    Reading whole multi-GB files on every run would cost more than the featurization it guards; size plus
    both ends catches appends, truncation, re-exports and edits near either end. Edits in the middle of a
    large file that keep its size are not seen: delete the cache (``tabxfer data clean``) after such edits.
    """
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.sha256()
    with open(p, "rb") as f:
        h.update(f.read(_EDGE))
        if size > 2 * _EDGE:
            f.seek(size - _EDGE)
            h.update(f.read(_EDGE))
        elif size > _EDGE:
            h.update(f.read())
    return {"name": p.name, "size": size, "sha256_edges": h.hexdigest()}


def fingerprint(obj: Any, n: int = 16) -> str:
    """Hex digest of a JSON-serializable description (keys sorted, so dict order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]
