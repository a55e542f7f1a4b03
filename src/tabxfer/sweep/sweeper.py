"""tabxfer's Optuna sweeper for Hydra: ``python train.py -m hparams_search=<name>``.

Why not hydra-optuna-sweeper: it pins ``optuna<3`` (pip silently downgrades Optuna), hides the trial from
the job (no pruning), and gives no way to share a study between processes safely. This sweeper drives
Optuna 5 directly:

- every trial is a normal training job (Hydra's launcher, its own run directory
  ``<sweep dir>/trial_<number>``, resolved config, checkpoints, ``metrics.json``);
- ``study.optimize`` with the configured sampler (TPE by default, seeded per worker) and pruner; the run
  reports ``val/rmsle`` each epoch (:class:`tabxfer.training.pruning.OptunaPruning`);
- ``n_trials`` counts the study's finished (complete + pruned) trials, so rerunning the same command
  resumes the study until it has that many; trials left running by a killed worker are failed and their
  parameters requeued (:func:`tabxfer.sweep.study.fail_orphans`) after every trial of the surviving
  workers and when a sweep starts, so the others go on and finish the study;
- ``n_workers: N`` starts N-1 more worker processes on the same storage (the same command line); or start
  workers yourself, on any machines that reach the storage;
- W&B: one run per trial (``wandb.finish()`` after each), grouped by study and tagged ``trial-<n>``;
- at the end, ``<sweep dir>/best.yaml`` (and ``export_best`` when set) is the best trial as a ready
  experiment config.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, RunMode, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from tabxfer import security
from tabxfer.io import write_text_atomic
from tabxfer.sweep import study as st
from tabxfer.sweep.space import as_override, parse_space
from tabxfer.sweep.trial import activate

log = logging.getLogger(__name__)
WORKER_ENV = "TABXFER_SWEEP_WORKER"  # set in the workers this sweeper starts: they start no more


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(
            1, signal.SIGTERM
        )  # PR_SET_PDEATHSIG: a killed sweep kills its workers
    except OSError:
        pass


class OptunaSweeper(Sweeper):
    def __init__(
        self,
        *,
        study_name: str,
        storage: str | None = None,
        direction: str = "minimize",
        n_trials: int = 20,
        n_workers: int = 1,
        sampler: Mapping[str, Any] | None = None,
        pruner: Mapping[str, Any] | None = None,
        prune: bool = True,
        max_failures: int = 3,
        params: Mapping[str, Any] | None = None,
        export_best: str | None = None,
    ) -> None:
        if n_trials < 1 or n_workers < 1:
            raise ValueError(f"hydra.sweeper: {n_trials=} and {n_workers=} must be >= 1")
        self.study_name = study_name
        self.storage_url = storage
        self.direction = direction
        self.n_trials = n_trials
        self.n_workers = n_workers
        self.sampler_cfg = dict(sampler or {"_target_": "optuna.samplers.TPESampler"})
        self.pruner_cfg = dict(pruner or {"_target_": "optuna.pruners.NopPruner"})
        self.prune = prune
        self.max_failures = max_failures
        self.params = dict(params or {})
        self.export_best = export_best
        self.worker = int(os.environ.get(WORKER_ENV, "0"))

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        mask_storage(config)  # before the launcher composes (and Hydra saves) any trial's config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )
        self.sweep_dir = Path(config.hydra.sweep.dir)
        # the command line as given (each run masks secrets in sys.argv; the workers need the real one)
        self.argv = list(sys.argv)

    # --- the study ---------------------------------------------------------------------------------
    def _study(self) -> optuna.Study:
        url = self.storage_url or f"sqlite:///{self.sweep_dir / 'optuna.db'}"
        sampler_cfg = dict(self.sampler_cfg)
        if sampler_cfg.get("seed") is not None:  # workers must not draw the same startup trials
            sampler_cfg["seed"] = int(sampler_cfg["seed"]) + self.worker
        study = optuna.create_study(
            study_name=self.study_name,
            storage=st.storage(url),
            sampler=hydra.utils.instantiate(sampler_cfg),
            pruner=hydra.utils.instantiate(self.pruner_cfg),
            direction=self.direction,  # type: ignore[arg-type]
            load_if_exists=True,
        )
        log.info(
            "study %r (%s) in %s, worker %d: %s",
            self.study_name,
            self.direction,
            st.redact(url),
            self.worker,
            st.counts(study) or "new",
        )
        return study

    def sweep(self, arguments: list[str]) -> Any:
        dists, fixed = parse_space(self.params)
        for ov in arguments:  # command-line sweeps (model.n_d=choice(8,16)) join the search space
            d, f = parse_space({ov.partition("=")[0]: ov.partition("=")[2]})
            dists |= d
            fixed |= f
        for k in fixed.keys() & dists.keys():
            del dists[k]  # a fixed command-line value wins over the config's search range
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        workers = self._start_workers() if self.n_workers > 1 and self.worker == 0 else []
        study = self._study()
        st.fail_orphans(study)
        failures: list[BaseException] = []

        def stop_when_done(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            st.fail_orphans(study)  # a worker killed mid-trial: its trial failed and requeued, now
            done = st.finished(study)
            log.info(
                "trial %d %s%s | study: %d/%d finished, best %s",
                trial.number,
                trial.state.name.lower(),
                f" value={trial.value:.5f}" if trial.value is not None else "",
                done,
                self.n_trials,
                f"{study.best_value:.5f} (trial {study.best_trial.number})"
                if done and _has_best(study)
                else "-",
            )
            if done >= self.n_trials:
                study.stop()
            if len(failures) > self.max_failures:
                log.error(
                    "%d trials failed in this worker (max_failures=%d): stopping",
                    len(failures),
                    self.max_failures,
                )
                study.stop()

        t0 = time.perf_counter()
        if st.finished(study) < self.n_trials:
            study.optimize(
                lambda trial: self._objective(trial, dists, fixed, failures),
                callbacks=[stop_when_done],
                catch=(Exception,),
            )
        for p in workers:
            p.wait()
        codes = [p.returncode for p in workers]
        st.fail_orphans(study)
        summary = self._finish(study, time.perf_counter() - t0)
        if any(codes):
            log.warning("sweep workers exited with codes %s (a negative code: killed by that signal)", codes)
        if len(failures) > self.max_failures or (any(codes) and st.finished(study) < self.n_trials):
            raise RuntimeError(
                f"sweep {self.study_name!r}: {len(failures)} failed trials here, worker exit codes {codes}; "
                f"last error: {failures[-1] if failures else '-'}"
            )
        return summary

    def _objective(
        self,
        trial: optuna.Trial,
        dists: Mapping[str, BaseDistribution],
        fixed: Mapping[str, str],
        failures: list[BaseException],
    ) -> float:
        trial.set_user_attr(st.WORKER_ATTR, st.worker_id())
        values = {k: trial._suggest(k, d) for k, d in dists.items()}  # public suggest_* need the type
        overrides = [f"{k}={v}" for k, v in fixed.items()] + [as_override(k, v) for k, v in values.items()]
        assert self.launcher is not None, "setup() first"
        with activate(trial, self.study_name, prune=self.prune):
            (ret,) = self.launcher.launch([overrides], initial_job_idx=trial.number)
        out_dir = ret.hydra_cfg.hydra.runtime.output_dir if ret.hydra_cfg is not None else None
        trial.set_user_attr("output_dir", str(out_dir))
        if ret.status != JobStatus.COMPLETED:
            err = ret._return_value
            if isinstance(err, optuna.TrialPruned):
                raise err
            failures.append(err)
            log.error("trial %d failed (%s): %s: %s", trial.number, out_dir, type(err).__name__, err)
            raise err
        value = ret.return_value
        if value is None:
            raise ValueError(
                f"trial {trial.number}: the run returned no monitored value ({out_dir}/metrics.json)"
            )
        metrics_file = Path(str(out_dir)) / "metrics.json"
        if metrics_file.exists():
            import json

            m = json.loads(metrics_file.read_text())
            for k in ("test/rmsle", "val/rmsle_best"):
                if k in m.get("metrics", {}):
                    trial.set_user_attr(k, m["metrics"][k])
            trial.set_user_attr("train_seconds", m.get("train_seconds"))
            trial.set_user_attr("epochs", m.get("epochs"))
        return float(value)

    def _start_workers(self) -> list[subprocess.Popen[bytes]]:
        out = []
        for k in range(1, self.n_workers):
            env = {**os.environ, WORKER_ENV: str(k)}
            cmd = [sys.executable, *self.argv]
            kw: dict[str, Any] = {"preexec_fn": _die_with_parent} if sys.platform.startswith("linux") else {}
            out.append(subprocess.Popen(cmd, env=env, **kw))
            log.info("started sweep worker %d (pid %d)", k, out[-1].pid)
            time.sleep(2.0)  # let the first worker create the study's tables before the next connects
        return out

    def _finish(self, study: optuna.Study, seconds: float) -> dict[str, Any]:
        counts = st.counts(study)
        summary: dict[str, Any] = {"study": self.study_name, "counts": counts, "seconds": seconds}
        if _has_best(study):
            best = study.best_trial
            summary |= {"best_value": best.value, "best_trial": best.number, "best_params": best.params}
            if self.worker == 0:
                text = st.best_experiment(best, study_name=self.study_name, default_choices=self._defaults())
                targets = [self.sweep_dir / "best.yaml"] + (
                    [Path(self.export_best)] if self.export_best else []
                )
                for path in targets:
                    write_text_atomic(path, text)
                summary["best_config"] = [str(p) for p in targets]
        log.info("sweep %r worker %d done in %.0f s: %s", self.study_name, self.worker, seconds, summary)
        return summary

    def _defaults(self) -> dict[str, Any]:
        """Config-group choices of a plain run (no overrides): what the best config need not repeat."""
        assert self.hydra_context is not None and self.config is not None
        plain = self.hydra_context.config_loader.load_configuration(
            self.config.hydra.job.config_name, overrides=[], run_mode=RunMode.RUN
        )
        return dict(plain.hydra.runtime.choices)


def mask_storage(config: DictConfig) -> None:
    """Mask the storage password in the config the launcher recomposes every trial's config from.

    Hydra saves a trial's ``.hydra/hydra.yaml`` (its ``hydra`` node: the sweeper's storage and the hydra
    overrides) before the trial runs, so a worker killed in between would leave the password there. The
    trials never use the storage (the sweeper holds the study), so their configs get it masked: the hydra
    overrides are masked, and a password given in a config file is overridden with the masked URL.
    """
    sweeper = OmegaConf.to_container(config.hydra.sweeper, resolve=False)  # ${oc.env:...} stays as it is
    raw = sweeper.get("storage") if isinstance(sweeper, dict) else None
    with read_write(config), open_dict(config):
        config.hydra.overrides.hydra = [security.redact(o) for o in config.hydra.overrides.hydra]
        if isinstance(raw, str) and security.redact(raw) != raw:
            config.hydra.overrides.hydra.append(f"hydra.sweeper.storage='{security.redact(raw)}'")
            config.hydra.sweeper.storage = security.redact(raw)


def _has_best(study: optuna.Study) -> bool:
    return any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
