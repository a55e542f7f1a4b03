"""Studies: storages named by a URL, workers that find each other's orphans, and the best trial written
back as an experiment config.

Storages (``hydra.sweeper.storage``):

- ``null``: ``sqlite:///<sweep dir>/optuna.db``, one file per study directory (rerunning resumes);
- ``sqlite:///path.db``, ``postgresql://user:pass@host/db``, ... any SQLAlchemy URL (several processes
  or machines share one study; heartbeats let a live worker fail a dead machine's trials);
- ``journal:path/to/study.log`` (or any path ending in ``.log``/``.journal``): Optuna's append-only
  journal file, for file systems where SQLite locking is unreliable (NFS).

Passwords in URLs never reach a log line or a saved config: :func:`redact` is used for both.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger(__name__)

HEARTBEAT_S = (
    60  # RDB storages: a trial whose worker has been silent for GRACE_S is failed by the next worker
)
GRACE_S = 180
WORKER_ATTR = "worker"  # host:pid:start of the process running a trial
RETRY_ATTR = "retry_of"


def redact(url: str) -> str:
    """The URL with its password masked (``postgresql://u:***@host/db``)."""
    if "://" not in url or "@" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL: mask everything between "://" and "@"
        head, rest = url.split("://", 1)
        return f"{head}://***@{rest.rsplit('@', 1)[1]}"


def storage(url: str) -> BaseStorage:
    """An Optuna storage from a URL (see the module doc)."""
    if url.startswith("journal:") or url.endswith((".log", ".journal")):
        path = Path(url.removeprefix("journal:").removeprefix("//"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise ValueError(
            f"hydra.sweeper.storage={url!r} is not a storage URL: use sqlite:///path.db, "
            "postgresql://user:pass@host/db (any SQLAlchemy URL) or journal:path.log"
        )
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 60}}  # two workers writing at once wait, not fail
    return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)


def _start_time(pid: int) -> str | None:
    """The process's start time (jiffies since boot, Linux) so that a reused pid is not mistaken for it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid()) or '?'}"


def _alive(worker: str) -> bool | None:
    """Whether the worker process is alive; ``None`` when it ran on another host (cannot tell)."""
    host, pid, start = worker.rsplit(":", 2)
    if host != socket.gethostname():
        return None
    if sys.platform.startswith("linux"):
        return _start_time(int(pid)) == start
    try:
        os.kill(int(pid), 0)
    except OSError:
        return False
    return True


def fail_orphans(study: optuna.Study) -> list[int]:
    """Fail the RUNNING trials whose worker process on this host is gone (killed mid-trial) and enqueue
    their parameters again, once, so the resumed sweep reruns them. Returns the failed trial numbers.

    Trials of workers on other hosts are left to the RDB heartbeat (failed after ``GRACE_S`` of silence).
    """
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get(WORKER_ATTR)
        if not worker or _alive(worker) is not False:
            continue
        study.tell(t.number, state=TrialState.FAIL)
        failed.append(t.number)
        if RETRY_ATTR not in t.user_attrs:
            study.enqueue_trial(t.params, user_attrs={RETRY_ATTR: t.number}, skip_if_exists=False)
        log.warning(
            "trial %d was left running by a dead worker (%s): marked failed, requeued", t.number, worker
        )
    return failed


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def counts(study: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name.lower()] = out.get(t.state.name.lower(), 0) + 1
    return out


# --- the best trial as an experiment config ---------------------------------------------------------
_SKIP_GROUPS = ("hydra", "hparams_search", "debug")


def best_experiment(
    trial: FrozenTrial, *, study_name: str, default_choices: Mapping[str, Any] | None = None
) -> str:
    """A ``configs/experiment/`` file reproducing ``trial``: its config-group choices that differ from
    ``default_choices`` (those of a plain ``train.py`` run) as defaults overrides, every other override of
    the trial (the sweep's fixed settings and the sampled values) as values. Read from the trial's run
    directory (``.hydra/overrides.yaml`` and ``hydra.yaml``)."""
    out_dir = Path(trial.user_attrs["output_dir"])
    overrides: list[str] = yaml.safe_load((out_dir / ".hydra" / "overrides.yaml").read_text()) or []
    hydra_cfg = yaml.safe_load((out_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]
    choices: Mapping[str, Any] = hydra_cfg["runtime"]["choices"]
    groups = {
        k: v
        for k, v in choices.items()
        if v is not None and not k.startswith(_SKIP_GROUPS) and (default_choices or {}).get(k) != v
    }
    base_experiment = groups.pop("experiment", None)
    values: dict[str, Any] = {}
    for ov in OverridesParser.create().parse_overrides(overrides):
        key = ov.key_or_group
        if ov.is_delete() or key in choices or key.startswith(_SKIP_GROUPS):
            continue
        node = values
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = ov.value()  # parsed as Hydra parses it (dicts, lists, quoted strings, null)
    lines = [
        "# @package _global_",
        f"# Best trial of Optuna study {study_name!r}: trial {trial.number}, value {trial.value!r}",
        f"# (run directory {out_dir}). Written by tabxfer's sweeper; train with",
        "#   python train.py experiment=<this file's path under configs/experiment, without .yaml>",
    ]
    defaults: list[Any] = [f"/experiment/{base_experiment}"] if base_experiment else []
    defaults += [{f"override /{k}": v} for k, v in sorted(groups.items())]
    body: dict[str, Any] = {"defaults": [*defaults, "_self_"], **values}
    tags = body.setdefault("tags", [])
    if isinstance(tags, list):
        tags.append(f"best-of-{study_name}")
    return "\n".join(lines) + "\n" + yaml.safe_dump(body, sort_keys=False)
