"""``python train.py -m hparams_search=...`` end to end: trials are training runs, the study resumes,
pruning stops runs, W&B gets one run per trial, the best trial comes back as an experiment config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

import wandb_log

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def sweep_command(tmp: Path, *overrides: str) -> tuple[list[str], dict[str, str]]:
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "TABXFER_CACHE_DIR": str(tmp / "cache"),
    }
    cmd = [
        sys.executable,
        "train.py",
        "-m",
        "hparams_search=mlp",
        "hydra.sweeper.study_name=t",
        f"paths.log_dir={tmp}/logs",
        f"hydra.sweeper.export_best={tmp}/best_t.yaml",
        "data.sources.nyc.n=3000",
        "trainer.max_epochs=2",
        "datamodule.batch_size=512",
        "logger=wandb",
        *overrides,
    ]
    return cmd, env


def sweep(tmp: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    cmd, env = sweep_command(tmp, *overrides)
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def test_sweep_runs_trials_resumes_prunes_and_writes_the_best(tmp_path):
    sweep(tmp_path, "hydra.sweeper.n_trials=3")
    root = tmp_path / "logs" / "sweeps" / "t"
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{root}/optuna.db")
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 3  # the sampler moved
    for t in trials:
        run = Path(t.user_attrs["output_dir"])
        assert run == root / f"trial_{t.number}"
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["monitor_value"] == pytest.approx(t.value)  # the study optimizes what the run reports
        assert t.user_attrs["test/rmsle"] == pytest.approx(metrics["metrics"]["test/rmsle"])
        assert len(t.intermediate_values) == 2  # val/rmsle reported each epoch
        # one W&B run per trial, tagged with its own trial number only (multirun never merges runs)
        (wb,) = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
        record = wandb_log.run_record(wb)
        tags = set(record.tags)
        assert {f"trial-{t.number}", "study-t"} <= tags
        assert not tags & {f"trial-{o}" for o in range(3) if o != t.number}
        assert record.run_group == "t" and record.display_name == f"t-trial-{t.number}"
        overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
        assert any(o.startswith("model.d_block=") for o in overrides)

    best = study.best_trial
    for path in (root / "best.yaml", tmp_path / "best_t.yaml"):
        body = yaml.safe_load(path.read_text())
        assert {"override /model": "mlp"} in body["defaults"]
        assert body["model"]["d_block"] == best.params["model.d_block"]
        assert body["optimizer"]["lr"] == pytest.approx(best.params["optimizer.lr"])
        assert body["trainer"]["max_epochs"] == 2

    # rerunning resumes: one more trial to reach 4; a pruner that prunes everything stops it at epoch 0
    sweep(
        tmp_path,
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner",
        "~hydra.sweeper.pruner.n_startup_trials",
        "~hydra.sweeper.pruner.n_warmup_steps",
        "+hydra.sweeper.pruner.upper=0.0",
    )
    trials = optuna.load_study(study_name="t", storage=f"sqlite:///{root}/optuna.db").get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3 + [TrialState.PRUNED]
    pruned = json.loads((root / "trial_3" / "metrics.json").read_text())
    assert pruned["status"] == "pruned" and pruned["pruned_at_epoch"] == 0
    assert (
        not (root / "trial_3" / "checkpoints" / "best.ckpt").exists() or "test/rmsle" not in pruned["metrics"]
    )


@pytest.fixture
def postgres_url():
    """A throw-away PostgreSQL server (unix socket only), when its binaries are installed; skips otherwise."""
    import shutil
    import tempfile

    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip(
            "PostgreSQL binaries (initdb, pg_ctl) not installed: the shared-storage test needs a server"
        )
    pytest.importorskip("psycopg", reason="psycopg not installed (pip install tabxfer[postgres])")
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # postgres refuses root
    root = Path(tempfile.mkdtemp(prefix="tabxfer-pg-"))
    if as_user:
        shutil.chown(root, "postgres")
    port = str(20000 + os.getpid() % 20000)
    subprocess.run(
        [*as_user, initdb, "-D", f"{root}/data", "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    opts = f"-p {port} -k {root} -c listen_addresses=''"
    subprocess.run(
        [*as_user, pg_ctl, "-D", f"{root}/data", "-o", opts, "-l", f"{root}/log", "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@/postgres?host={root}&port={port}"
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", f"{root}/data", "-w", "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.reliability
def test_two_workers_share_one_postgres_study_and_survive_a_killed_worker(tmp_path, postgres_url):
    """2 workers on one PostgreSQL study; worker 1 is SIGKILLed mid-trial: its trial is marked failed and
    rerun, worker 0 finishes the study, rerunning resumes it. The storage URL carries a password and the
    environment a W&B key: neither appears in any file the sweep wrote, nor in its output."""
    import secrets
    import signal
    import time

    password, api_key = "pw" + secrets.token_hex(8), secrets.token_hex(20)
    url = postgres_url.replace("postgres@", f"postgres:{password}@")  # trust auth: the password is unused
    cmd, env = sweep_command(
        tmp_path,
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_workers=2",
        f"hydra.sweeper.storage='{url}'",
    )
    env["WANDB_API_KEY"] = api_key
    main = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    killed_trial, deadline = None, time.time() + 400
    while killed_trial is None and main.poll() is None and time.time() < deadline:
        time.sleep(0.2)
        try:
            running = optuna.load_study(study_name="t", storage=postgres_url).get_trials(
                states=(TrialState.RUNNING,)
            )
        except KeyError:  # the study does not exist yet
            continue
        for t in running:
            pid = int(t.user_attrs.get("worker", "::").split(":")[1] or 0)
            if pid and pid != main.pid:  # worker 1's trial: kill its process at once (a trial lasts ~3 s
                # here). Often before the run starts: Hydra has saved the trial's .hydra files, and they
                # must not hold the storage password (the sweeper masks it before composing them)
                os.kill(pid, signal.SIGKILL)
                killed_trial = t.number
                break
    out, _ = main.communicate(timeout=600)
    assert killed_trial is not None, "worker 1 never ran a trial: nothing was killed\n" + out[-3000:]
    assert main.returncode == 0, out[-3000:]  # worker 0 went on and finished the study
    study = optuna.load_study(study_name="t", storage=postgres_url)
    trials = {t.number: t for t in study.get_trials()}
    assert trials[killed_trial].state == TrialState.FAIL
    # requeued once with the same parameters: run by worker 0 if it had trials left to run, else waiting
    retry = [t for t in trials.values() if t.user_attrs.get("retry_of") == killed_trial]
    assert len(retry) == 1
    done = [t for t in trials.values() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert (
        len(done) >= 4
        and len({t.user_attrs["worker"].split(":")[1] for t in trials.values() if "worker" in t.user_attrs})
        == 2
    )
    dirs = {t.user_attrs["output_dir"] for t in done}
    assert len(dirs) == len(done) and all(Path(d, "metrics.json").exists() for d in dirs)
    assert "postgres:***@/postgres" in out  # logged, masked

    # rerunning resumes the same study: one more trial, one worker, the requeued trial first if it waits
    p = subprocess.run(
        [*cmd[:-3], f"hydra.sweeper.n_trials={len(done) + 1}", f"hydra.sweeper.storage='{url}'"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert st_finished(postgres_url) == len(done) + 1
    retried = optuna.load_study(study_name="t", storage=postgres_url).get_trials()[retry[0].number]
    assert retried.state in (TrialState.COMPLETE, TrialState.PRUNED)
    # the killed trial's parameters ran (every one drawn before the kill: at once can precede the draws)
    assert trials[killed_trial].params.items() <= retried.params.items()

    leaks = {}
    for f in tmp_path.rglob("*"):
        if f.is_file() and "cache" not in f.parts:
            data = wandb_log.searchable(f)
            hits = [n for n in (password, api_key) if n.encode() in data]
            if hits:
                leaks[str(f.relative_to(tmp_path))] = hits
    assert leaks == {}
    assert password not in out + p.stdout + p.stderr and api_key not in out + p.stdout + p.stderr


def st_finished(storage: str) -> int:
    study = optuna.load_study(study_name="t", storage=storage)
    return len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)))
