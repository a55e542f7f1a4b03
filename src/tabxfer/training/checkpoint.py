"""Checkpoints that are never half-written and never run code when read.

* :func:`save` writes a temporary file in the checkpoint's own folder, ``fsync``\\ s it, renames it over the
  target and ``fsync``\\ s the folder: a reader (or a crash, a SIGKILL, a full disk) sees the old file or the
  new one, never a mix. Lightning's own writer stages the file in the system temp folder and copies it
  across file systems, which is not atomic.
* :func:`read` checks that the file is a complete archive (every member's CRC) before unpickling it with
  ``torch.load(weights_only=True)``: a truncated or corrupt file is refused with a clear
  :class:`CheckpointError`, and a file that carries pickled code (a malicious "checkpoint") is refused
  without running it.
* :class:`SafeCheckpointIO` makes Lightning use both (``Trainer(plugins=[SafeCheckpointIO()])``), so
  resuming (``ckpt_path``), testing the best checkpoint and :func:`tabxfer.load` go through the same checks.

Write errors (disk full, read-only folder, no permission) become an :class:`OSError` that names the file,
says what happened and that the previous file is intact; the temporary file is removed.
"""

from __future__ import annotations

import functools
import io
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tabxfer.io import write_error

TMP_MARK = ".tmp-"  # temporary files are ``.<name>.tmp-<pid>`` beside the target


class CheckpointError(ValueError):
    """A checkpoint file that cannot be trusted: truncated, corrupt, not a checkpoint, or unsafe."""


def save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save(obj, path)``, atomically and durably (see the module docstring)."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}{TMP_MARK}{os.getpid()}")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
        _fsync_dir(p.parent)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        # torch's zip writer turns a failed write (disk full) into a RuntimeError on closing the archive
        cause = e if isinstance(e, OSError) else e.__context__
        if isinstance(cause, OSError):
            raise write_error(cause, p) from e  # names the file, says the old one is intact
        raise


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:  # some file systems do not open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _check_archive(data: bytes, p: Path) -> None:
    """Raise :class:`CheckpointError` unless ``data`` (the bytes of ``p``) is a whole ``torch.save``
    archive, CRCs included."""
    if not data:
        raise CheckpointError(f"{p}: empty file (0 bytes): an interrupted copy or write; not loaded")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise CheckpointError(
            f"{p}: truncated or not a checkpoint ({len(data):,} bytes; {e}); not loaded. "
            "Use another checkpoint (e.g. checkpoints/best.ckpt or last.ckpt) or retrain"
        ) from None
    if bad is not None:
        raise CheckpointError(f"{p}: corrupt: archive member {bad!r} fails its CRC check; not loaded")


def read(
    path: str | os.PathLike[str],
    map_location: str | torch.device | Callable[..., Any] | None = "cpu",
) -> dict[str, Any]:
    """A checkpoint's contents, loaded without executing pickled code (see the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such checkpoint file")
    # Read once: the bytes that pass the check are the bytes unpickled (no second read, no window in
    # which the file can change between the two).
    data = p.read_bytes()
    _check_archive(data, p)
    try:
        obj = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
        first = next((ln for ln in lines if "global" in ln.lower()), lines[0])  # names the pickled callable
        raise CheckpointError(
            f"{p}: refused: the file holds pickled objects other than tensors and plain containers "
            f"({first[:200]}). tabxfer never unpickles code from a checkpoint; a file from an untrusted "
            "source may be an attack. Re-export it from the training run that made it"
        ) from None
    except (RuntimeError, ValueError, EOFError) as e:
        raise CheckpointError(f"{p}: cannot read it as a checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{p}: not a checkpoint (holds a {type(obj).__name__}, expected a dict)")
    return obj


def hyper_parameters(ckpt: dict[str, Any], path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint's module arguments (``model_cfg``, ``spec``, ...), or :class:`CheckpointError`."""
    hp = ckpt.get("hyper_parameters")
    if not isinstance(hp, dict) or "model_cfg" not in hp or "spec" not in hp or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: not a tabxfer checkpoint (no model_cfg/spec hyper-parameters)")
    return dict(hp)


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary files left in ``folder`` by writers that are no longer running (a killed run)."""
    removed: list[Path] = []
    d = Path(folder)
    if not d.is_dir():
        return removed
    for f in d.glob(f".*{TMP_MARK}*"):
        pid = f.name.rsplit(TMP_MARK, 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            f.unlink(missing_ok=True)
            removed.append(f)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@functools.cache
def _safe_checkpoint_io() -> type:
    from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

    class SafeCheckpointIO(TorchCheckpointIO):
        """Lightning's checkpoint I/O through :func:`save` and :func:`read` (atomic writes, checked reads,
        ``weights_only`` always)."""

        def save_checkpoint(
            self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
        ) -> None:
            if storage_options is not None:
                raise TypeError(f"{type(self).__name__} takes no storage_options")
            save(checkpoint, path)

        def load_checkpoint(
            self,
            path: Any,
            map_location: Any = lambda storage, loc: storage,
            weights_only: bool | None = None,
        ) -> dict[str, Any]:
            if weights_only is False:
                raise CheckpointError(f"{path}: tabxfer loads checkpoints with weights_only=True only")
            return read(path, map_location=map_location)

    return SafeCheckpointIO


def __getattr__(name: str) -> Any:
    """``SafeCheckpointIO`` is built on first use (PEP 562), so that saving and reading checkpoints does
    not import Lightning (seconds per process)."""
    if name == "SafeCheckpointIO":
        return _safe_checkpoint_io()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
