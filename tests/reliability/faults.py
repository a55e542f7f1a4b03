"""Fault injection for whole training runs: ``python train.py`` in a subprocess, SIGKILLed at random points
and restarted with ``ckpt_path=auto`` until it finishes. Used by ``test_faults.py`` and by
``scripts/fault_campaign.py`` (every deep model, several kills each, a JSON table).

Two kinds of kill, both SIGKILL (no clean-up runs):

* at a random training step, validation batch or checkpoint save: the :class:`KillAt` callback, added to
  that attempt only with a Hydra override, kills its own process there (exact, reproducible points);
* after a random wall-clock delay (:func:`run_with_timed_kills`): wherever the run happens to be, start-up,
  data preparation, an epoch, a checkpoint write or the final test included.

After every kill the harness records where the run was (the epoch of ``last.ckpt``, or none), whether a
temporary checkpoint file was left by an interrupted write, and checks that every ``*.ckpt`` present is
whole (:func:`tabxfer.training.checkpoint.read`).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as L

from tabxfer.training import checkpoint

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


class KillAt(L.Callback):
    """SIGKILL this process at global training step ``step`` (``where=train``), at validation batch
    ``step`` of the run (``where=val``), or when the ``step``-th checkpoint is being saved (``where=save``)."""

    def __init__(self, step: int, where: str = "train"):
        self.step, self.where, self.val_batches, self.saves = step, where, 0, 0

    def _die(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.where == "train" and trainer.global_step >= self.step:
            self._die()

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.where == "val" and not trainer.sanity_checking:
            self.val_batches += 1
            if self.val_batches >= self.step:
                self._die()

    def on_save_checkpoint(self, *args: Any) -> None:
        self.saves += 1
        if self.where == "save" and self.saves >= self.step:
            self._die()


def kill_overrides(step: int, where: str) -> list[str]:
    return [
        "+callbacks.fault._target_=faults.KillAt",
        f"+callbacks.fault.step={step}",
        f"+callbacks.fault.where={where}",
    ]


def train_command(run_dir: Path, cache_dir: Path, model: str, *overrides: str) -> list[str]:
    return [
        sys.executable,
        str(REPO / "train.py"),
        f"model={model}",
        f"hydra.run.dir={run_dir}",
        f"paths.cache_dir={cache_dir}",
        "ckpt_path=auto",
        "logger=csv",
        "report.enabled=false",
        "data.sources.nyc.n=3000",
        "datamodule.batch_size=128",
        "trainer.max_epochs=4",
        "callbacks.early_stopping.patience=100",
        *overrides,
    ]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # the same kernels in every process: bitwise-equal results
    env["WANDB_MODE"] = "offline"
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])  # for faults.KillAt
    return env


def run_to_end(cmd: list[str], timeout: float = 600) -> tuple[float, dict[str, Any]]:
    """Run ``cmd`` uninterrupted; (wall seconds, its metrics.json)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0, json.loads((run_dir_of(cmd) / "metrics.json").read_text())


def run_dir_of(cmd: list[str]) -> Path:
    return Path(next(a for a in cmd if a.startswith("hydra.run.dir=")).split("=", 1)[1])


@dataclass
class Kill:
    after_s: float  # seconds after the start of that attempt
    last_epoch: int | None  # epoch of last.ckpt after the kill (None: no checkpoint yet)
    temporaries: list[str]  # temporary checkpoint files found (a write that the kill interrupted)
    checkpoints_whole: bool  # every *.ckpt present loads (atomic writes)
    point: str = "timed"  # where the kill was aimed: "train <step>", "val <batch>", "save <n>", "timed"


@dataclass
class KilledRun:
    kills: list[Kill] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0


def inspect_after_kill(run_dir: Path, after_s: float) -> Kill:
    ckdir = run_dir / "checkpoints"
    temps = sorted(p.name for p in ckdir.glob(f".*{checkpoint.TMP_MARK}*")) if ckdir.is_dir() else []
    whole, last_epoch = True, None
    for f in sorted(ckdir.glob("*.ckpt")) if ckdir.is_dir() else []:
        try:
            ck = checkpoint.read(f)
        except checkpoint.CheckpointError:
            whole = False
            continue
        if f.name == "last.ckpt":
            last_epoch = int(ck["epoch"])
    return Kill(after_s=round(after_s, 2), last_epoch=last_epoch, temporaries=temps, checkpoints_whole=whole)


def run_with_timed_kills(
    cmd: list[str], kill_windows: list[tuple[float, float]], *, seed: int, timeout: float = 600
) -> KilledRun:
    """Start ``cmd``; for each ``(lo, hi)`` window, SIGKILL it after a uniform random time in the window
    and restart it (same command: ``ckpt_path=auto`` resumes). Then let the last attempt finish."""
    rng = random.Random(seed)
    run_dir = run_dir_of(cmd)
    out = KilledRun()
    for lo, hi in kill_windows:
        delay = rng.uniform(lo, hi)
        out.attempts += 1
        proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            proc.wait(timeout=delay)
            finished = True
        except subprocess.TimeoutExpired:
            finished = False
        if finished:  # it beat the clock: nothing to kill, and nothing left to resume
            if proc.returncode != 0:
                raise RuntimeError(f"attempt {out.attempts} failed: {proc.stderr.read().decode()[-3000:]}")
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]
        out.kills.append(inspect_after_kill(run_dir, delay))
    else:
        out.attempts += 1
        _, out.metrics = run_to_end(cmd, timeout)
        return out
    out.metrics = json.loads((run_dir / "metrics.json").read_text())
    return out


def run_with_step_kills(cmd: list[str], points: list[tuple[int, str]], timeout: float = 600) -> KilledRun:
    """Run ``cmd`` once per ``(step, where)`` point with a :class:`KillAt` there (each attempt resumes the
    last one's checkpoint), then once more to the end. An attempt that finishes before reaching its point
    ends the sequence (its metrics are the run's)."""
    run_dir = run_dir_of(cmd)
    out = KilledRun()
    for step, where in points:
        out.attempts += 1
        t0 = time.perf_counter()
        proc = subprocess.run(
            cmd + kill_overrides(step, where),
            cwd=REPO,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode == 0:  # finished before the kill point
            out.metrics = json.loads((run_dir / "metrics.json").read_text())
            return out
        if proc.returncode != -signal.SIGKILL:
            raise RuntimeError(
                f"attempt {out.attempts} (kill at {where} {step}) exited {proc.returncode}, not by SIGKILL:\n"
                f"{proc.stderr[-3000:]}"
            )
        kill = inspect_after_kill(run_dir, time.perf_counter() - t0)
        kill.point = f"{where} {step}"
        out.kills.append(kill)
    out.attempts += 1
    _, out.metrics = run_to_end(cmd, timeout)
    return out


COMPARED = ("val/rmsle", "val/rmsle_best", "test/rmsle", "train/loss_epoch", "train/rmsle", "val/loss")


def differences(ref: dict[str, Any], got: dict[str, Any], rel: float = 0.0) -> dict[str, tuple[Any, Any]]:
    """Metrics that differ (beyond ``rel``) between two metrics.json files, plus the epoch count."""
    diff: dict[str, tuple[Any, Any]] = {}
    for k in COMPARED:
        a, b = ref["metrics"].get(k), got["metrics"].get(k)
        if a is None and b is None:
            continue
        if a is None or b is None or abs(a - b) > rel * max(abs(a), abs(b)):
            diff[k] = (a, b)
    if ref.get("epochs") != got.get("epochs"):
        diff["epochs"] = (ref.get("epochs"), got.get("epochs"))
    return diff


class PoisonBatches(L.Callback):
    """Put a non-finite ``value`` into numeric feature ``column`` of training batches ``batches`` (global
    batch numbers across epochs, counted from 0), in the batch tensors only (the cache stays clean)."""

    def __init__(self, batches: list[int], value: float = float("nan"), column: int = 0):
        self.batches, self.value, self.column, self.seen = set(batches), value, column, 0

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, *a: Any
    ) -> None:
        if self.seen in self.batches:
            batch[0][:, self.column] = self.value  # x_num: a gathered copy, not a view of the cache
        self.seen += 1


class FillDisk(L.Callback):
    """At the end of training epoch ``epoch`` (before that epoch's checkpoints are written), fill the file
    system holding ``path`` (a file of that name, as large as the free space)."""

    def __init__(self, path: str, epoch: int = 0):
        self.path, self.epoch = path, epoch

    def on_train_epoch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.current_epoch == self.epoch:
            fill(Path(self.path))


def fill(path: Path) -> None:
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 16))
                f.flush()
        except OSError:
            pass


class MakeReadOnly(L.Callback):
    """At the end of training epoch ``epoch``, remount the tmpfs at ``mount`` read-only."""

    def __init__(self, mount: str, epoch: int = 0):
        self.mount, self.epoch = mount, epoch

    def on_train_epoch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.current_epoch == self.epoch:
            subprocess.run(["mount", "-o", "remount,ro", self.mount], check=True)
