"""Atomic writes: a reader (or a crash) never sees a half-written file or artifact directory."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

WRITE_HINTS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EFBIG: "the file is larger than this process may write (ulimit -f) or the file system allows",
    errno.EROFS: "the folder is on a read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def write_error(e: OSError, path: Path, what: str = "checkpoint") -> OSError:
    """``e`` restated for a person: which file, what happened, and (for a file replaced atomically) that
    the previous version is intact."""
    why = WRITE_HINTS.get(e.errno or 0, e.strerror or str(e))
    msg = f"cannot write {what} {path}: {why} ({e.strerror or e})"
    if what == "checkpoint":
        kept = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
        msg += f"; {kept}, nothing half-written is left"
    return OSError(e.errno, msg)


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
