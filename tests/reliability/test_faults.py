"""Faults: a run SIGKILLed at random points resumes to the same final metrics; checkpoint writes are
atomic under SIGKILL; a truncated or corrupt checkpoint is refused, never loaded."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from faults import differences, run_to_end, run_with_step_kills, train_command

import tabxfer
from tabxfer.training import checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")  # shared: the data is prepared once for every run here


# About 19 steps per epoch (2400 training rows / 128), 4 epochs; one validation batch and one or two
# checkpoint saves (best.ckpt when it improved, last.ckpt) per epoch. One model here (CI time); every
# model is killed at 3 points by scripts/fault_campaign.py, which runs the same harness.
@pytest.mark.parametrize("model", ["mlp"])
def test_killed_run_resumes_to_the_same_metrics(model: str, cache_dir: Path, tmp_path: Path) -> None:
    _, ref = run_to_end(train_command(tmp_path / "ref", cache_dir, model))
    rng = random.Random(f"kills-{model}")
    # each attempt gets past the last one's checkpoint: mid-epoch 1 or 2, then in the validation of the
    # 1st or 2nd epoch it runs, then while saving its 2nd to 3rd checkpoint (after its first epoch)
    points = [(rng.randint(21, 55), "train"), (rng.randint(1, 2), "val"), (rng.randint(2, 3), "save")]
    killed = run_with_step_kills(train_command(tmp_path / "killed", cache_dir, model), points)
    assert len(killed.kills) == 3 and killed.attempts == 4
    assert all(k.checkpoints_whole for k in killed.kills), killed.kills
    assert any(k.last_epoch is not None for k in killed.kills)  # at least one resume from a checkpoint
    assert differences(ref, killed.metrics) == {}, (points, killed.kills)  # CPU: bit for bit


WRITER = textwrap.dedent(
    """
    import sys, torch
    from tabxfer.training import checkpoint
    big = {"w": torch.arange(4_000_000, dtype=torch.float32), "tag": 0}
    print("ready", flush=True)
    for i in range(1_000_000):
        big["tag"] = i
        checkpoint.save(big, sys.argv[1])
    """
)


def test_checkpoint_writes_are_atomic_under_sigkill(tmp_path: Path) -> None:
    """A writer saving a 16 MB checkpoint in a loop, SIGKILLed at random times: the file is always a
    whole checkpoint (the last one finished), and the temporaries that kills leave are cleaned up."""
    target = tmp_path / "ckpt" / "last.ckpt"
    rng = random.Random(0)
    mid_write, seen_tags = 0, []
    for _ in range(12):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        temporaries = list(target.parent.glob(f".*{checkpoint.TMP_MARK}*"))
        mid_write += bool(temporaries)
        if target.exists():
            ck = checkpoint.read(target)  # never raises: the file is whole
            assert ck["w"].shape == (4_000_000,)
            seen_tags.append(ck["tag"])
        removed = checkpoint.remove_stale_temporaries(target.parent)
        assert sorted(removed) == sorted(temporaries)
        assert not list(target.parent.glob(".*"))
    assert mid_write >= 1, "no kill landed during a write: the test did not test atomicity"
    assert seen_tags, "no checkpoint was ever completed"


@pytest.fixture(scope="module")
def trained(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    _, metrics = run_to_end(train_command(out / "run", cache_dir, "mlp", "trainer.max_epochs=1"))
    return Path(metrics["best_checkpoint"])


def _damaged(src: Path, dst: Path, how: str) -> Path:
    data = bytearray(src.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "tail-cut":
        data = data[:-10]
    elif how == "empty":
        data = bytearray()
    elif how == "bit-flip":
        data[len(data) // 3] ^= 0xFF
    elif how == "not-a-zip":
        data = bytearray(b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n")
    dst.write_bytes(bytes(data))
    return dst


DAMAGE = {
    "truncated": r"truncated or not a checkpoint",
    "tail-cut": r"truncated or not a checkpoint",
    "empty": r"empty file \(0 bytes\)",
    "bit-flip": r"corrupt: archive member .* fails its CRC check|truncated or not a checkpoint",
    "not-a-zip": r"truncated or not a checkpoint",
}


@pytest.mark.parametrize("how", DAMAGE)
def test_damaged_checkpoints_are_refused_everywhere(how: str, trained: Path, tmp_path: Path) -> None:
    bad = _damaged(trained, tmp_path / f"{how}.ckpt", how)
    with pytest.raises(checkpoint.CheckpointError, match=DAMAGE[how]) as e:
        tabxfer.load(bad)
    assert str(bad) in str(e.value)
    from tabxfer.training.transfer import load_pretrained

    with pytest.raises(checkpoint.CheckpointError, match=rf"init_from={bad}"):
        load_pretrained(bad)
    with pytest.raises(checkpoint.CheckpointError, match=DAMAGE[how]):
        checkpoint.SafeCheckpointIO().load_checkpoint(bad)  # what Trainer(ckpt_path=...) goes through


def test_resuming_from_a_truncated_checkpoint_fails_with_the_file_named(
    trained: Path, cache_dir: Path, tmp_path: Path
) -> None:
    bad = _damaged(trained, tmp_path / "last.ckpt", "truncated")
    cmd = train_command(tmp_path / "run", cache_dir, "mlp", "trainer.max_epochs=1")
    cmd = [a if a != "ckpt_path=auto" else f"ckpt_path={bad}" for a in cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parents[2], timeout=300)
    assert proc.returncode != 0
    assert f"{bad}: truncated or not a checkpoint" in proc.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_whole_checkpoint_still_loads(trained: Path) -> None:
    """The control for the refusals above: the undamaged file loads and predicts."""
    module = tabxfer.load(trained).eval()
    n_num, n_cat = len(module.hparams.spec["numeric"]), len(module.hparams.spec["categorical"])
    with torch.no_grad():
        out = module(torch.zeros(2, n_num), torch.zeros(2, n_cat, dtype=torch.long))
    assert out.shape == (2,) and bool(torch.isfinite(out).all())
