"""Untrusted files and credentials: a malicious pickle posing as a checkpoint is refused without running
it, wherever a checkpoint is read; no credential reaches anything a run writes."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tabxfer
import wandb_log
from tabxfer import security
from tabxfer.training import checkpoint
from tabxfer.training.transfer import load_pretrained

REPO = Path(__file__).resolve().parents[2]


class Payload:
    """Unpickling this runs ``touch <marker>``: what an attacker's "checkpoint" would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def malicious(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "PWNED"
    ckpt = tmp_path / "best.ckpt"
    # looks like a tabxfer checkpoint, with the payload where the weights should be
    torch.save({"hyper_parameters": {"model_cfg": {}, "spec": {}}, "state_dict": Payload(marker)}, ckpt)
    return ckpt, marker


def test_the_payload_is_real(malicious: tuple[Path, Path]) -> None:
    """The control: unpickled the unsafe way, the file does run code."""
    ckpt, marker = malicious
    torch.load(ckpt, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize(
    "reader",
    [
        pytest.param(tabxfer.load, id="tabxfer.load"),
        pytest.param(load_pretrained, id="init_from"),
        pytest.param(checkpoint.SafeCheckpointIO().load_checkpoint, id="trainer-resume"),
        pytest.param(checkpoint.read, id="checkpoint.read"),
    ],
)
def test_a_malicious_pickle_is_refused_without_running(reader, malicious: tuple[Path, Path]) -> None:
    ckpt, marker = malicious
    with pytest.raises(checkpoint.CheckpointError, match=r"refused: .*pickled objects.*posix.system|refused"):
        reader(ckpt)
    assert not marker.exists()


def test_exporting_a_malicious_checkpoint_is_refused(malicious: tuple[Path, Path], tmp_path: Path) -> None:
    from tabxfer.export.artifact import export_checkpoint

    ckpt, marker = malicious
    with pytest.raises(checkpoint.CheckpointError, match="refused"):
        export_checkpoint(ckpt, tmp_path / "onnx")
    assert not marker.exists() and not (tmp_path / "onnx").exists()


def test_weights_only_false_is_not_an_option(malicious: tuple[Path, Path]) -> None:
    with pytest.raises(checkpoint.CheckpointError, match="weights_only=True only"):
        checkpoint.SafeCheckpointIO().load_checkpoint(malicious[0], weights_only=False)


def test_redaction_masks_url_passwords_and_credential_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    key = secrets.token_hex(20)
    monkeypatch.setenv("WANDB_API_KEY", key)
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-" + key[:12])
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")  # short flag values are left alone
    text = f"key={key} tok=tok-{key[:12]} url=postgresql://me:p4ss@db/x sqlite:///a.db false"
    assert security.redact(text) == "key=*** tok=*** url=postgresql://me:***@db/x sqlite:///a.db false"


def _files_holding(root: Path, needles: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for f in root.rglob("*"):
        if f.is_file():
            data = wandb_log.searchable(f)
            hits = [n for n in needles if n.encode() in data]
            if hits:
                found[str(f.relative_to(root))] = hits
    return found


@pytest.mark.slow
def test_no_credential_in_anything_a_run_writes(tmp_path: Path) -> None:
    """A real run (W&B offline, run report, ONNX artifact) with a W&B key in the environment and a
    password-bearing URL on the command line: no byte of either in any file written, nor in its output."""
    api_key, password = secrets.token_hex(20), "pw" + secrets.token_hex(8)
    url = f"postgresql://tabxfer:{password}@db/o"  # short enough for a W&B tag (64 characters)
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "train.py",
        "model=mlp",
        f"hydra.run.dir={run_dir}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "logger=wandb",
        "data.sources.nyc.n=2000",
        "trainer.max_epochs=1",
        "report.export_onnx=none",
        "report.max_rows=500",
        "report.importance_rows=200",
        f"tags=[dev,'{url}']",  # a URL with a password in the config itself
    ]
    env = {**os.environ, "WANDB_API_KEY": api_key, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file())
    for expected in (".hydra/overrides.yaml", "checkpoints/best.ckpt", "onnx/model_card.md", "metrics.json"):
        assert any(w.startswith(expected) for w in written), (expected, written)  # the sinks were written
    assert any(w.endswith(".wandb") for w in written) and any("report/" in w for w in written)
    for wb in run_dir.rglob("run-*.wandb"):
        wandb_log.closed(wb)  # W&B's service may still be writing the log's last records
    assert _files_holding(run_dir, [api_key, password]) == {}
    assert api_key not in proc.stdout + proc.stderr and password not in proc.stdout + proc.stderr
    assert "tabxfer:***@db/o" in (run_dir / ".hydra" / "overrides.yaml").read_text()  # masked, kept
