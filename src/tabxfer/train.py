"""``python train.py model=<name> [overrides]``: prepare data, build the model, fit, test, save.

Every run writes into its Hydra run directory: ``checkpoints/`` (``best.ckpt`` by ``monitor``, default
``val/rmsle``, and ``last.ckpt``), ``metrics.json`` (final metrics, written atomically), the resolved config,
and the logger's files (W&B offline by default). ``ckpt_path=<run>/checkpoints/last.ckpt`` resumes a killed
run, and so does ``ckpt_path=auto`` when the same ``hydra.run.dir`` is given again (it starts from scratch when
there is no ``last.ckpt`` yet). A resumed run ends with the same metrics as an uninterrupted one (CPU: exactly;
:mod:`tabxfer.training.checkpoint` keeps every checkpoint whole and the module saves the random states).

Pretraining is a run with ``objective.*`` weights (self-supervised and/or supervised) on a corpus
(``data=mobility``); its ``best.ckpt`` is the pretrained artifact (weights, spec, corpus description).
Fine-tuning is a run with ``init_from=<that checkpoint> finetune=<strategy>`` (see
:mod:`tabxfer.training.transfer`).
"""

from __future__ import annotations

import contextlib
import errno
import inspect
import json
import logging
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import optuna
import pytorch_lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from tabxfer import security
from tabxfer.config import MODEL_FILLED, register_resolvers, validate
from tabxfer.evaluation.metrics import rmsle
from tabxfer.features.cache import SplitArrays, TensorCache
from tabxfer.io import write_error, write_text_atomic
from tabxfer.models.baselines import TreeBaseline
from tabxfer.prepare import dataset_cache
from tabxfer.sweep import trial
from tabxfer.training import checkpoint
from tabxfer.training.data import CacheDataModule
from tabxfer.training.module import MONITOR, Finetune, TabularRegressor
from tabxfer.training.pruning import OptunaPruning
from tabxfer.training.report import run_report
from tabxfer.training.transfer import adapt, load_pretrained

log = logging.getLogger(__name__)
register_resolvers()  # before Hydra composes configs/train.yaml


def model_config(model_cfg: DictConfig, cache: TensorCache) -> dict[str, Any]:
    """The model's Hydra node with the data-dependent sizes filled in from the feature spec."""
    cfg: dict[str, Any] = OmegaConf.to_container(model_cfg, resolve=True)  # type: ignore[assignment]
    cfg.pop("_lr", None)  # a training hint (see configs/train.yaml), not a constructor argument
    cls = hydra.utils.get_class(cfg["_target_"])
    accepts = inspect.signature(cls).parameters
    spec = cache.spec
    fill = {
        "n_num": spec.n_numeric,
        "cardinalities": spec.cardinalities,
        "d_out": 1,
        "cat_names": spec.categorical_names,
        "num_names": spec.numeric_names,
    }
    if cache.context_hours is not None:  # a temporal input for models that take one
        fill |= {"n_ctx": len(cache.manifest["context"]["channels"]), "ctx_len": cache.context_hours}
    assert fill.keys() <= MODEL_FILLED, (
        "config.MODEL_FILLED (what validate exempts) must name every filled size"
    )
    cfg.update({k: v for k, v in fill.items() if k in accepts and cfg.get(k) is None})
    return cfg


def make_module(
    cfg: DictConfig,
    cache: TensorCache,
    mcfg: dict[str, Any],
    *,
    meta: dict[str, Any] | None = None,
    model: Any = None,
    finetune: dict[str, Any] | None = None,
) -> TabularRegressor:
    """The Lightning module of a run: model ``mcfg`` (or ``model``, already built), the cache's spec, and
    the run's optimizer, scheduler, objective and non-finite settings."""

    def node(key: str) -> Any:
        return OmegaConf.to_container(cfg[key], resolve=True) if cfg.get(key) else None

    return TabularRegressor(
        model_cfg=mcfg,
        spec=json.loads(cache.spec.to_json()),
        optimizer=node("optimizer"),
        scheduler=node("scheduler"),
        meta=meta,
        model=model,
        objective=node("objective"),
        finetune=finetune or None,
        nonfinite=node("nonfinite"),
    )


def _pretrained_summary(meta: Any) -> dict[str, Any]:
    return {"data_fingerprint": meta.get("data_fingerprint"), "corpus": meta.get("corpus")}


def environment() -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "git_commit": commit or None,
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_count": os.cpu_count(),
    }


def write_json(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=1, default=str))


def resume_path(cfg: DictConfig, out: Path) -> str | None:
    """``ckpt_path``: a checkpoint to resume from; ``auto``: this run folder's ``last.ckpt`` when there is
    one (a killed run, restarted with the same command and ``hydra.run.dir``), else a fresh start."""
    ckpt = cfg.get("ckpt_path")
    if ckpt != "auto":
        return ckpt
    folder = out / "checkpoints"
    for f in checkpoint.remove_stale_temporaries(folder):
        log.warning("removed %s, a temporary file left by a killed writer", f)
    last = folder / "last.ckpt"
    if last.exists():
        log.info("ckpt_path=auto: resuming from %s", last)
        return str(last)
    log.info("ckpt_path=auto: no %s yet, starting from scratch", last)
    return None


def check_writable(out: Path) -> None:
    """Fail at once, before any data is prepared, when the run folder cannot be written (read-only file
    system, no permission, disk full)."""
    probe = out / f".write-probe{checkpoint.TMP_MARK}{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"0")
        probe.unlink()
    except OSError as e:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
        raise write_error(e, out, what="to the run folder") from None


def check_space(out: Path, n_params: int) -> None:
    """Fail before training, not hours into it, when the run folder has no room for two checkpoints
    (fp32 weights + AdamW moments; the new one is written beside the old)."""
    need = 2 * (3 * 4 * n_params) + (16 << 20)
    free = shutil.disk_usage(out).free
    if free < need:
        raise OSError(
            errno.ENOSPC,
            f"{out}: {free / 2**20:.1f} MB free, but this model's checkpoints need about "
            f"{need / 2**20:.1f} MB: free space or point hydra.run.dir (paths.output_dir) elsewhere",
        )


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train and test one model; returns the final metrics (also written to ``metrics.json``)."""
    validate(cfg)  # config mistakes stop here, each named, before any data is prepared or model built
    security.protect_run(cfg.paths.output_dir)  # no credential in logs, saved configs or W&B metadata
    out = Path(cfg.paths.output_dir)
    check_writable(out)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    tree = issubclass(hydra.utils.get_class(cfg.model._target_), TreeBaseline)
    pre = load_pretrained(cfg.init_from) if cfg.get("init_from") else None
    if pre is not None and (tree or pre.model_cfg["_target_"] != cfg.model._target_):
        raise ValueError(
            f"init_from={cfg.init_from} holds a {pre.model_cfg['_target_']}, but model={cfg.model._target_}: "
            "fine-tune with the pretrained model's group (its architecture comes from the checkpoint)"
        )
    cache = dataset_cache(cfg.data, cfg.paths.cache_dir, base_spec=pre.spec if pre else None)
    if tree:
        return run_baseline(cfg, cache, out)
    weights = OmegaConf.to_container(cfg.data.weights, resolve=True) if cfg.data.get("weights") else {}
    dm = CacheDataModule(cache, seed=cfg.seed or 0, weights=weights, **cfg.datamodule)  # type: ignore[arg-type]
    finetune: dict[str, Any] = (
        OmegaConf.to_container(cfg.finetune, resolve=True) if cfg.get("finetune") else {}  # type: ignore[assignment]
    )
    model = None
    if pre is not None:  # a new head when the pretraining target differs (or was never trained)
        same_target = pre.spec.target == cache.spec.target and float(pre.objective.get("supervised", 1.0)) > 0
        model, mcfg = adapt(pre, cache.spec, new_head=Finetune.of(finetune).new_head or not same_target)
    else:
        mcfg = model_config(cfg.model, cache)
    meta = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "data_fingerprint": cache.fingerprint,
        "drop_reports": cache.manifest["drop_reports"],
        "corpus": {  # what the data was: enough to name a pretraining corpus
            "name": cache.manifest.get("name"),
            "sources": cache.manifest["inputs"]["sources"],
            "rows": cache.manifest["rows"],
            "weights": weights,
        },
        "init_from": None if pre is None else {"path": str(pre.path), **_pretrained_summary(pre.meta)},
        "environment": environment(),
    }
    # plain JSON types only: checkpoints must load with torch.load(weights_only=True)
    meta = security.redact_obj(json.loads(json.dumps(meta, default=str)))
    module = make_module(cfg, cache, mcfg, meta=meta, model=model, finetune=finetune)
    n_params = sum(p.numel() for p in module.model.parameters())
    log.info("model %s: %s parameters", mcfg["_target_"], f"{n_params:,}")

    sweep_trial = trial.active()
    loggers = make_loggers(cfg, sweep_trial)
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    pruning = None
    if sweep_trial is not None and sweep_trial.prune:
        pruning = OptunaPruning(sweep_trial.trial, monitor=cfg.get("monitor", MONITOR))
        callbacks.append(pruning)
    if not loggers:  # the learning-rate monitor has nowhere to write (Lightning refuses to start)
        callbacks = [c for c in callbacks if not isinstance(c, L.callbacks.LearningRateMonitor)]
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=[checkpoint.SafeCheckpointIO()]
    )
    check_space(out, n_params)
    ckpt_path = resume_path(cfg, out)
    for lg in loggers:
        lg.log_hyperparams(
            {"data_fingerprint": cache.fingerprint, "n_params": n_params, **meta["environment"]}
        )

    t0 = time.perf_counter()
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    except BaseException:
        finish_wandb(1)
        raise
    train_seconds = time.perf_counter() - t0
    logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
    # a run resumed after its last epoch logs nothing new: then the checkpoint's metrics are the run's
    fit_metrics = {
        k: v for k, v in {**module.resumed_metrics, **logged}.items() if k.split("/")[0] in ("train", "val")
    }
    if pruning is not None and pruning.pruned_at is not None:  # no test: the sweeper drops this trial
        write_json(
            out / "metrics.json",
            {
                "status": "pruned",
                "pruned_at_epoch": pruning.pruned_at,
                "reported": pruning.reported,
                "metrics": fit_metrics,
                "model": mcfg["_target_"],
                "train_seconds": train_seconds,
            },
        )
        finish_wandb(0)
        raise optuna.TrialPruned(f"pruned at epoch {pruning.pruned_at} ({fit_metrics.get(MONITOR)})")
    best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
    test = trainer.test(module, datamodule=dm, ckpt_path=best if best else None, verbose=False)

    metrics = {**fit_metrics, **{k: float(v) for k, v in (test[0] if test else {}).items()}}
    report: Any = cfg.get("report") or {}
    onnx_dir = None
    if report.get("export_onnx") and best:
        from tabxfer.export.artifact import export_checkpoint

        onnx_dir = str(out / "onnx")
        export_checkpoint(best, onnx_dir, quantize=str(report.get("export_onnx")).split(","))
    if report.get("enabled", False) and "test" in cache.splits:
        run_report(
            module,
            cache,
            out,
            loggers,
            max_rows=report.max_rows,
            importance_rows=report.importance_rows,
            checkpoint=best,
            onnx_dir=onnx_dir,
            metrics=metrics,
        )
    result = {
        "metrics": metrics,
        "model": mcfg["_target_"],
        "n_params": n_params,
        "train_seconds": train_seconds,
        "epochs": trainer.current_epoch,
        "train_rows": dm.n_train(),
        "best_checkpoint": best,
        "data_fingerprint": cache.fingerprint,
        MONITOR: metrics.get(MONITOR),
        "monitor": cfg.get("monitor", MONITOR),
        # the best epoch's value (the checkpoint that was tested), not the last epoch's: what sweeps rank
        "monitor_value": metrics.get(
            f"{cfg.get('monitor', MONITOR)}_best", metrics.get(cfg.get("monitor", MONITOR))
        ),
        "rows_per_s": dm.n_train() * max(trainer.current_epoch, 1) / train_seconds,
    }
    write_json(out / "metrics.json", result)
    log.info("metrics: %s", json.dumps(metrics))
    finish_wandb(0)
    return result


def make_loggers(cfg: DictConfig, sweep_trial: trial.ActiveTrial | None = None) -> list[Any]:
    """The configured loggers. In a sweep, W&B runs are grouped by study and tagged with the trial."""
    out = []
    for node in (cfg.get("logger") or {}).values():
        extra: dict[str, Any] = {}
        if sweep_trial is not None and "Wandb" in str(node.get("_target_", "")):
            n, study = sweep_trial.number, sweep_trial.study_name
            tags = [*(node.get("tags") or []), f"trial-{n}", f"study-{study}"]
            extra = {"group": study, "tags": tags, "name": f"{study}-trial-{n}", "job_type": "sweep-trial"}
        node = security.redact_obj(OmegaConf.to_container(node, resolve=True))  # tags, notes, ...
        out.append(hydra.utils.instantiate(node, **extra))
    return out


def finish_wandb(exit_code: int) -> None:
    """Close this process's W&B run, if any, so that the next run of a multirun is a run of its own."""
    import sys

    wandb = sys.modules.get("wandb")  # never imported just to find out there is nothing to finish
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=exit_code)


def run_baseline(cfg: DictConfig, cache: TensorCache, out: Path) -> dict[str, Any]:
    """Tree and trivial baselines: same cache, split, metric names and metrics.json as the deep models."""
    model: TreeBaseline = hydra.utils.instantiate({k: v for k, v in cfg.model.items() if k != "_lr"})
    limit = cfg.datamodule.get("train_limit")
    train = cache.split("train")
    train = train.subset(np.arange(min(limit, len(train)))) if limit else train
    splits: dict[str, SplitArrays] = {s: cache.split(s) for s in ("val", "test") if s in cache.splits}
    t0 = time.perf_counter()
    model.fit(train, splits["val"], cache.spec)
    train_seconds = time.perf_counter() - t0
    metrics = {f"{s}/rmsle": rmsle(model.predict(a), np.asarray(a.y)) for s, a in splits.items()}
    metrics["val/rmsle_best"] = metrics["val/rmsle"]
    metrics["train/rmsle"] = rmsle(model.predict(train), np.asarray(train.y))
    for lg in make_loggers(cfg, trial.active()):
        lg.log_metrics(metrics)
        lg.finalize("success")
    finish_wandb(0)
    model.save(str(out / "model.pkl"))
    result = {
        "metrics": metrics,
        "model": cfg.model._target_,
        "n_params": model.n_params(),
        "train_seconds": train_seconds,
        "train_rows": len(train),
        "best_checkpoint": str(out / "model.pkl"),
        "data_fingerprint": cache.fingerprint,
        MONITOR: metrics[MONITOR],
    }
    write_json(out / "metrics.json", result)
    log.info("metrics: %s", json.dumps(metrics))
    return result


def load(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> TabularRegressor:
    """Rebuild a trained model from its checkpoint alone (model config, feature spec and meta inside).

    The file is checked and read without unpickling code (:func:`tabxfer.training.checkpoint.read`)."""
    ckpt = checkpoint.read(path, map_location=map_location)
    module = TabularRegressor(**checkpoint.hyper_parameters(ckpt, path))
    module.on_load_checkpoint(ckpt)
    module.load_state_dict(ckpt["state_dict"])
    return module.to(map_location)
