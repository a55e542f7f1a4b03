"""Training throughput: rows/s of every deep model at its default size, and tabxfer's TabNet against
pytorch-tabnet's own ``TabNetRegressor.fit`` on the same rows with the same network, in one run.

    python scripts/bench_throughput.py                                   # CPU, 20k NYC rows, 2 epochs
    python scripts/bench_throughput.py --trainer gpu --train-rows 0 --epochs 3   # a GPU, every row
    python scripts/bench_throughput.py --models tabnet --batch-size 16384 --virtual-batch-size 512

Both sides train on the same arrays of the tensor cache (``data=nyc_kaggle`` when ``TABXFER_DATA_DIR`` holds
the real rows, the synthetic default otherwise): tabxfer through Lightning with its batched loader
(``tabxfer.training.data``), pytorch-tabnet through its ``fit`` (a per-row ``Dataset`` + collate,
``num_workers=0``, no eval set, ``compute_importance=False`` so that only training is timed). The network
is the same size: ``n_d``, ``n_a``, ``n_steps``, ``gamma``, ``n_independent``, ``n_shared``, one embedding of
``d_embed`` per categorical, ghost batch norm with the same virtual batch and momentum, sparsemax, the same
sparsity weight. rows/s is over the epochs after the first (the first pays one-off costs: compiling,
allocating, pytorch-tabnet's setup), with ``torch.cuda.synchronize()`` at the epoch ends on a GPU.
tabxfer on a GPU trains in bf16 (``trainer=gpu``) and is also timed in fp32, as pytorch-tabnet has no
mixed precision. Prints a table and writes ``bench_results/bench_throughput.json``.

``--accuracy-epochs N`` also trains both TabNets to convergence on the same split (at most N epochs, early
stopping on the validation RMSLE with ``--patience``; pytorch-tabnet with its own defaults for learning rate
and batch-norm momentum, 2e-2 and 0.02) and reports their test RMSLE: the same network should score alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEEP_MODELS = ["mlp", "tabnet", "tab_transformer", "ft_transformer", "wide_deep", "tft"]


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


class EpochRows:
    """Seconds and rows of each training epoch (shared by both sides' callbacks)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.rows: list[int] = []
        self._t0 = 0.0
        self._n = 0

    def start(self) -> None:
        _sync()
        self._t0, self._n = time.perf_counter(), 0

    def add(self, n: int) -> None:
        self._n += int(n)

    def end(self) -> None:
        _sync()
        self.seconds.append(time.perf_counter() - self._t0)
        self.rows.append(self._n)

    def rows_per_s(self) -> float:
        k = 1 if len(self.seconds) > 1 else 0  # the first epoch pays one-off costs
        return sum(self.rows[k:]) / sum(self.seconds[k:])


def compose(overrides: list[str]) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=overrides)


def tabxfer_side(cfg: Any, cache: Any, epochs: int, precision: str | None) -> dict[str, Any]:
    """Train ``cfg.model`` for ``epochs`` with validation, checkpoints and loggers off; time each epoch."""
    import hydra
    import pytorch_lightning as L

    from tabxfer.train import make_module, model_config
    from tabxfer.training.data import CacheDataModule

    L.seed_everything(cfg.seed, workers=True)
    dm = CacheDataModule(cache, seed=cfg.seed, **cfg.datamodule)
    mcfg = model_config(cfg.model, cache)
    module = make_module(cfg, cache, mcfg)  # as train.py builds it: objective, optimizer, guards
    timer = EpochRows()

    class Timer(L.Callback):
        def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            timer.start()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
            timer.add(len(batch[2]))

        def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            timer.end()

    extra: dict[str, Any] = {
        "max_epochs": epochs,
        "limit_val_batches": 0,
        "num_sanity_val_steps": 0,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "logger": False,
        "callbacks": [Timer()],
    }
    if precision:
        extra["precision"] = precision
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, **extra)
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    return {
        "params": sum(p.numel() for p in module.model.parameters()),
        "rows_per_s": timer.rows_per_s(),
        "epoch_seconds": timer.seconds,
        "fit_seconds": time.perf_counter() - t0,
        "precision": str(trainer.precision),
        "model_cfg": {k: v for k, v in mcfg.items() if not isinstance(v, list)},
    }


def pytorch_tabnet(mcfg: dict[str, Any], n_num: int, args: argparse.Namespace, **settings: Any) -> Any:
    """pytorch-tabnet's ``TabNetRegressor`` with the network of ``mcfg`` (tabxfer's TabNet config); the
    categoricals follow the ``n_num`` numeric columns of its input matrix."""
    import torch
    from pytorch_tabnet.tab_model import TabNetRegressor

    cards = [int(c) for c in mcfg["cardinalities"]]
    return TabNetRegressor(
        n_d=mcfg["n_d"],
        n_a=mcfg["n_a"],
        n_steps=mcfg["n_steps"],
        gamma=mcfg["gamma"],
        n_independent=mcfg["n_independent"],
        n_shared=mcfg["n_shared"],
        mask_type=mcfg["mask_type"],
        lambda_sparse=mcfg["lambda_sparse"],
        cat_idxs=list(range(n_num, n_num + len(cards))),
        cat_dims=cards,
        cat_emb_dim=mcfg["d_embed"],
        seed=args.seed,
        verbose=0,
        device_name="cuda" if args.trainer != "cpu" and torch.cuda.is_available() else "cpu",
        **settings,
    )


def pytorch_tabnet_side(
    mcfg: dict[str, Any],
    x_num: np.ndarray,
    x_cat: np.ndarray,
    y: np.ndarray,
    args: argparse.Namespace,
    lr: float,
) -> dict[str, Any]:
    """pytorch-tabnet's ``TabNetRegressor.fit`` with the network of ``mcfg`` (tabxfer's TabNet config)."""
    import torch
    from pytorch_tabnet.callbacks import Callback

    n_num = x_num.shape[1]
    X = np.hstack([x_num, x_cat.astype(np.float32)]).astype(np.float32)
    cards = [int(c) for c in mcfg["cardinalities"]]
    # pytorch-tabnet embeds a categorical's values 0..card-1: tabxfer's indices are in that range already
    assert (x_cat.max(axis=0) < np.asarray(cards)).all()
    z = ((y - y.mean()) / y.std()).astype(np.float32).reshape(-1, 1)
    timer = EpochRows()

    class Timer(Callback):  # type: ignore[misc]
        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            timer.start()

        def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            timer.add((logs or {}).get("batch_size", 0))

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            timer.end()

    reg = pytorch_tabnet(
        mcfg,
        n_num,
        args,
        momentum=mcfg["momentum"],
        optimizer_fn=torch.optim.Adam,
        optimizer_params={"lr": lr},
    )
    t0 = time.perf_counter()
    reg.fit(
        X,
        z,
        max_epochs=args.epochs,
        patience=0,
        batch_size=args.batch_size,
        virtual_batch_size=mcfg["virtual_batch_size"],
        num_workers=0,
        drop_last=False,
        compute_importance=False,
        callbacks=[Timer()],
    )
    return {
        "params": sum(p.numel() for p in reg.network.parameters()),
        "rows_per_s": timer.rows_per_s(),
        "epoch_seconds": timer.seconds,
        "fit_seconds": time.perf_counter() - t0,
        "precision": "32-true",
        "device": reg.device,
    }


def tabxfer_accuracy(overrides: list[str], epochs: int, patience: int, work: Path) -> dict[str, Any]:
    """tabxfer's TabNet trained as ``train.py`` trains it (early stopping on val), tested on the test split."""
    from tabxfer.train import run

    cfg = compose(
        [
            *overrides,
            f"paths.output_dir={work / 'tabnet_accuracy'}",
            f"trainer.max_epochs={epochs}",
            f"callbacks.early_stopping.patience={patience}",
            "logger=csv",
            "report.enabled=false",
            "+trainer.enable_progress_bar=false",
        ]
    )
    r = run(cfg)
    return {"test_rmsle": r["metrics"]["test/rmsle"], "seconds": r["train_seconds"], "epochs": r["epochs"]}


def pytorch_tabnet_accuracy(mcfg: dict[str, Any], cache: Any, args: argparse.Namespace) -> dict[str, Any]:
    """pytorch-tabnet's ``TabNetRegressor`` (same network, its default optimizer settings) on the same split."""

    tr, va, te = (cache.split(s) for s in ("train", "val", "test"))
    n = min(args.train_rows or len(tr), len(tr))

    def features(a: Any, rows: int | None = None) -> np.ndarray:
        return np.hstack([a.x_num[:rows], a.x_cat[:rows].astype(np.float32)]).astype(np.float32)

    mu, sd = float(tr.y[:n].mean()), float(tr.y[:n].std())
    reg = pytorch_tabnet(mcfg, tr.x_num.shape[1], args)  # its own optimizer and momentum defaults
    t0 = time.perf_counter()
    reg.fit(
        features(tr, n),
        ((tr.y[:n] - mu) / sd).reshape(-1, 1),
        eval_set=[(features(va), ((va.y - mu) / sd).reshape(-1, 1))],
        max_epochs=args.accuracy_epochs,
        patience=args.patience,
        batch_size=args.batch_size,
        virtual_batch_size=mcfg["virtual_batch_size"],
        num_workers=0,
        drop_last=False,
        compute_importance=False,
    )
    seconds = time.perf_counter() - t0
    pred = np.maximum(reg.predict(features(te)).ravel() * sd + mu, 0.0)  # log1p of a duration, as tabxfer's
    rmsle = float(np.sqrt(np.mean((pred - te.y) ** 2)))
    return {
        "test_rmsle": rmsle,
        "seconds": seconds,
        "epochs": len(reg.history["loss"]),
        "best_epoch": reg.best_epoch,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=DEEP_MODELS)
    data_dir = os.environ.get("TABXFER_DATA_DIR", str(REPO.parent / "shared" / "data"))
    real = (Path(data_dir) / "nyc_taxi_trip_duration_kaggle").exists()
    ap.add_argument("--data", default="nyc_kaggle" if real else "synthetic")
    ap.add_argument("--data-dir", default=data_dir)
    ap.add_argument("--trainer", default="cpu", help="configs/trainer: cpu | gpu")
    ap.add_argument("--epochs", type=int, default=2, help="rows/s is over the epochs after the first")
    ap.add_argument("--train-rows", type=int, default=20000, help="training rows (0: every row)")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--virtual-batch-size", type=int, default=None, help="TabNet's ghost batch (both sides)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-pytorch-tabnet", dest="pytorch_tabnet", action="store_false")
    ap.add_argument("--accuracy-epochs", type=int, default=0, help="also compare the TabNets' test RMSLE")
    ap.add_argument("--patience", type=int, default=8, help="early stopping (epochs) for --accuracy-epochs")
    ap.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides for every model")
    ap.add_argument("--out", type=Path, default=REPO / "bench_results" / "bench_throughput.json")
    args = ap.parse_args()

    import torch

    from tabxfer.prepare import dataset_cache
    from tabxfer.train import model_config

    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = args.trainer != "cpu"
    if gpu and not torch.cuda.is_available():
        raise SystemExit(f"--trainer {args.trainer}: torch sees no CUDA device on this machine")
    work = REPO / "logs" / "bench_throughput" / time.strftime("%Y-%m-%d_%H-%M-%S")
    base = [
        f"data={args.data}",
        f"paths.output_dir={work}",
        f"paths.data_dir={args.data_dir}",
        f"trainer={args.trainer}",
        f"seed={args.seed}",
        f"datamodule.batch_size={args.batch_size}",
        f"datamodule.train_limit={args.train_rows or 'null'}",
        *([f"model.virtual_batch_size={args.virtual_batch_size}"] if args.virtual_batch_size else []),
        *args.extra,
    ]
    rows: list[dict[str, Any]] = []
    accuracy: dict[str, Any] = {}
    cache = None
    for model in args.models:
        overrides = [f"model={model}", *[o for o in base if "virtual_batch" not in o or model == "tabnet"]]
        cfg = compose(overrides)
        cache = cache or dataset_cache(cfg.data, cfg.paths.cache_dir)
        n = min(args.train_rows or len(cache.split("train")), len(cache.split("train")))
        precisions = [None, "32-true"] if gpu else [None]
        for precision in precisions:
            r = tabxfer_side(cfg, cache, args.epochs, precision)
            rows.append({"model": model, "impl": "tabxfer", "train_rows": n, **r})
            print(f"{model:16} tabxfer {r['precision']:>10} {r['rows_per_s']:>12,.0f} rows/s", flush=True)
        if model == "tabnet" and args.pytorch_tabnet:
            train = cache.split("train")
            mcfg = model_config(cfg.model, cache)
            r = pytorch_tabnet_side(
                mcfg, train.x_num[:n], train.x_cat[:n], train.y[:n], args, float(cfg.optimizer.lr)
            )
            rows.append({"model": model, "impl": "pytorch_tabnet", "train_rows": n, **r})
            print(f"{model:16} pytorch-tabnet {r['rows_per_s']:>12,.0f} rows/s", flush=True)
            if args.accuracy_epochs:
                accuracy = {
                    "tabxfer": tabxfer_accuracy(overrides, args.accuracy_epochs, args.patience, work),
                    "pytorch_tabnet": pytorch_tabnet_accuracy(mcfg, cache, args),
                }

    device = torch.cuda.get_device_name(0) if gpu else platform.processor() or platform.machine()
    print(f"\ntraining throughput, {args.data}, {device}, batch {args.batch_size}, epochs {args.epochs}")
    print(
        f"{'model':16} {'implementation':15} {'precision':>10} {'params':>10} {'rows/s':>12} {'epoch s':>9}"
    )
    for r in rows:
        print(
            f"{r['model']:16} {r['impl']:15} {r['precision']:>10} {r['params']:>10,} "
            f"{r['rows_per_s']:>12,.0f} {r['epoch_seconds'][-1]:>9.2f}"
        )
    ours = [r for r in rows if r["model"] == "tabnet" and r["impl"] == "tabxfer"]
    theirs = [r for r in rows if r["impl"] == "pytorch_tabnet"]
    if ours and theirs:
        for r in ours:
            ratio = r["rows_per_s"] / theirs[0]["rows_per_s"]
            print(f"TabNet, tabxfer {r['precision']} / pytorch-tabnet fp32: {ratio:.2f}x")
    for impl, a in accuracy.items():
        print(
            f"TabNet test RMSLE, {impl}: {a['test_rmsle']:.4f} ({a['epochs']} epochs, {a['seconds']:.0f} s)"
        )
    result = {
        "args": vars(args) | {"out": str(args.out)},
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": device,
        },
        "versions": {"torch": torch.__version__},
        "results": rows,
        "tabnet_accuracy": accuracy,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str))
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
