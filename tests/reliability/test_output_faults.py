"""Disk full and read-only output folders: a clear error naming the path and the cause, raised as early
as possible, with nothing half-written left behind.

Real faults where the machine allows: a small tmpfs (``mount -t tmpfs``, root with mount rights: this
machine and CI) for a full disk, remounted read-only for a read-only folder. Without mount rights those
tests skip with the reason, and :func:`test_a_write_over_the_file_size_limit_fails_cleanly` (``ulimit -f``:
the kernel refuses the write) still runs everywhere.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from factories import tiny_run_config
from tabxfer.io import write_error
from tabxfer.train import run
from tabxfer.training import checkpoint


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 24 MB tmpfs mounted at ``tmp_path/mnt``; unmounted after the test."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.decode().strip()}): no real disk-full fault")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(f"*{checkpoint.TMP_MARK}*"))


def test_checkpoint_save_on_a_full_disk_keeps_the_old_file(tmpfs: Path) -> None:
    target = tmpfs / "last.ckpt"
    checkpoint.save({"w": torch.zeros(1000)}, target)
    checkpoint.save({"w": torch.zeros(1000), "v": 2}, target)
    with pytest.raises(OSError, match=rf"cannot write checkpoint {target}: the disk is full") as e:
        checkpoint.save({"w": torch.zeros(10_000_000)}, target)  # 40 MB > 24 MB
    assert e.value.errno == errno.ENOSPC
    assert "the previous last.ckpt is intact, nothing half-written is left" in str(e.value)
    assert checkpoint.read(target)["v"] == 2
    assert leftovers(tmpfs) == []


def test_a_run_on_a_disk_too_small_stops_before_training(tmpfs: Path, tmp_path: Path) -> None:
    (tmpfs / "ballast").write_bytes(b"\0" * (16 << 20))  # leaves ~8 MB: less than 2 checkpoints + margin
    cfg = tiny_run_config(tmp_path, "run", "model=mlp", f"paths.output_dir={tmpfs / 'run'}")
    with pytest.raises(OSError, match=r"MB free, but this model's checkpoints need about .* MB") as e:
        run(cfg)
    assert e.value.errno == errno.ENOSPC and str(tmpfs / "run") in str(e.value)
    assert not (tmpfs / "run" / "checkpoints").exists()


def test_disk_filling_up_mid_run_fails_at_the_checkpoint_cleanly(tmpfs: Path, tmp_path: Path) -> None:
    out = tmpfs / "run"
    cfg = tiny_run_config(
        tmp_path,
        "run",
        "model=mlp",
        f"paths.output_dir={out}",
        "+callbacks.fill._target_=faults.FillDisk",
        f"+callbacks.fill.path={tmpfs / 'filler'}",
        "trainer.max_epochs=2",
    )
    with pytest.raises(
        OSError, match=rf"cannot write checkpoint {out}/checkpoints/\w+\.ckpt: the disk is full"
    ):
        run(cfg)
    assert leftovers(tmpfs) == []
    assert list((out / "checkpoints").glob("*.ckpt")) == []  # the first save failed: no partial file
    assert not (out / "metrics.json").exists()


def test_a_read_only_run_folder_fails_before_any_data_is_prepared(tmpfs: Path, tmp_path: Path) -> None:
    (tmpfs / "run").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    cfg = tiny_run_config(tmp_path, "run", "model=mlp", f"paths.output_dir={tmpfs / 'run'}")
    with pytest.raises(
        OSError, match=rf"cannot write to the run folder {tmpfs / 'run'}: .*read-only file system"
    ):
        run(cfg)
    assert not (tmp_path / "cache").exists()  # failed first, before preparing the data


def test_a_read_only_cache_folder_names_it(tmpfs: Path, tmp_path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    cfg = tiny_run_config(tmp_path, "run", "model=mlp", f"paths.cache_dir={tmpfs / 'cache'}")
    with pytest.raises(OSError, match=rf"cannot write the tensor cache to {tmpfs}.*read-only file system"):
        run(cfg)


def test_folder_turning_read_only_mid_run_fails_at_the_checkpoint_cleanly(
    tmpfs: Path, tmp_path: Path
) -> None:
    out = tmpfs / "run"
    cfg = tiny_run_config(
        tmp_path,
        "run",
        "model=mlp",
        f"paths.output_dir={out}",
        "+callbacks.ro._target_=faults.MakeReadOnly",
        f"+callbacks.ro.mount={tmpfs}",
        "trainer.max_epochs=2",
    )
    with pytest.raises(
        OSError, match=r"cannot write checkpoint .*: the folder is on a read-only file system"
    ):
        run(cfg)
    assert leftovers(tmpfs) == [] and not (out / "metrics.json").exists()


LIMITED_WRITER = textwrap.dedent(
    """
    import resource, signal, sys, torch
    from tabxfer.training import checkpoint
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the kernel then fails the write with EFBIG
    checkpoint.save({"w": torch.zeros(100)}, sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    try:
        checkpoint.save({"w": torch.zeros(1_000_000)}, sys.argv[1])  # 4 MB > 1 MB
    except OSError as e:
        print(e)
        sys.exit(3)
    """
)


def test_a_write_over_the_file_size_limit_fails_cleanly(tmp_path: Path) -> None:
    """No privileges needed: ``RLIMIT_FSIZE`` makes the kernel refuse the write mid-file."""
    target = tmp_path / "last.ckpt"
    proc = subprocess.run([sys.executable, "-c", LIMITED_WRITER, str(target)], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    assert f"cannot write checkpoint {target}: the file is larger than" in proc.stdout
    assert "the previous last.ckpt is intact" in proc.stdout
    assert checkpoint.read(target)["w"].shape == (100,)
    assert leftovers(tmp_path) == []


def test_write_error_names_path_and_cause() -> None:
    e = write_error(OSError(errno.EROFS, os.strerror(errno.EROFS)), Path("/x/best.ckpt"))
    assert e.errno == errno.EROFS
    assert str(e.strerror).startswith(
        "cannot write checkpoint /x/best.ckpt: the folder is on a read-only file"
    )
    assert str(e.strerror).endswith("no best.ckpt was written, nothing half-written is left")
