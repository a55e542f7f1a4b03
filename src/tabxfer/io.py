"""Atomic writes: a reader (or a crash) never sees a half-written file or artifact directory."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, p)


def publish_dir(tmp: Path, out: Path) -> None:
    """Put the finished directory ``tmp`` (made beside ``out``) in place of ``out``: the old one, if any,
    is moved aside first and removed after, so ``out`` is always either the old or the new whole."""
    tmp.chmod(0o755)  # mkdtemp makes it private
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    os.replace(out, old / out.name)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
