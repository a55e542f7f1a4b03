"""The data-efficiency study: when does pretraining on the mobility corpus beat training from scratch,
and beat gradient-boosted trees, on NYC taxi trip duration?

    python scripts/transfer_study.py                               # embedded default: synthetic corpus -> synthetic NYC
    python scripts/transfer_study.py --target nyc_kaggle --corpus mobility_real   # the real study (../shared/data)

For each model: pretrain once per objective on the corpus (``self_supervised``: label-free, ``supervised``:
the corpus's durations), then for every target-train size x seed: train from scratch and fine-tune each
pretrained checkpoint; LightGBM at every size x seed. Every run is a normal ``train.py`` run (Hydra
compose, in process) on a fixed validation/test split of the target (the data split's seed is fixed;
``seed`` only changes training). ``--ablate`` also pretrains on the corpus without its real or without
its synthetic sources (one model, supervised), to measure each part's contribution.

Writes into ``--out`` (default ``bench_results/transfer_study/<target>``): ``results.jsonl`` (one line per
finished run; rerunning skips them, so a study can be run in pieces), ``results.parquet`` (the tidy
table), ``rmsle_vs_size.png`` and ``summary.md``; logs table and plot to W&B (offline unless
``WANDB_MODE`` says otherwise).

Feature statistics note: the target's scalers, vocabularies and target mean/std are fit on its whole
training split (the cache is shared by every size), the rows' labels are used only up to the size.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
DEEP = ["tabnet", "tab_transformer", "ft_transformer", "wide_deep", "tft", "mlp"]
CONDITIONS = ("scratch", "self_supervised", "supervised")
log = logging.getLogger("transfer_study")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="synthetic", help="data config of the target (nyc_kaggle: real)")
    p.add_argument("--corpus", default="mobility", help="data config of the pretraining corpus")
    p.add_argument("--models", default=",".join(DEEP))
    p.add_argument("--sizes", default="1000,10000,all", help="target training rows ('all' = every row)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--conditions", default=",".join(CONDITIONS))
    p.add_argument(
        "--ssl-objective", default="masked_contrastive", help="configs/objective for self_supervised"
    )
    p.add_argument("--finetune", default="full", help="configs/finetune strategy for the pretrained runs")
    p.add_argument("--pretrain-epochs", type=int, default=2)
    p.add_argument("--pretrain-batches", type=float, default=1.0, help="trainer.limit_train_batches")
    p.add_argument("--epochs", default="1000:40,10000:15,all:8", help="size:max_epochs of target training")
    p.add_argument("--lightgbm", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument(
        "--ablate", default="", help="model to pretrain on corpus parts (real-only, synthetic-only)"
    )
    p.add_argument("--set", action="append", default=[], metavar="MODEL:OVERRIDE", help="per-model override")
    p.add_argument("--target-set", action="append", default=[], metavar="OVERRIDE", help="target runs only")
    p.add_argument("--corpus-set", action="append", default=[], metavar="OVERRIDE", help="pretraining only")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", default=None)
    p.add_argument("--report-only", action="store_true", help="rebuild table, plot and summary; no runs")
    return p.parse_args(argv)


class Study:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.out = Path(args.out or ROOT / "bench_results" / "transfer_study" / args.target)
        self.out.mkdir(parents=True, exist_ok=True)
        self.results = self.out / "results.jsonl"
        self.done = {self.key(json.loads(line)) for line in self._lines()}
        self.per_model: dict[str, list[str]] = {}
        for item in args.set:
            model, _, override = item.partition(":")
            self.per_model.setdefault(model, []).append(override)
        self.epochs = {k: int(v) for k, v in (kv.split(":") for kv in args.epochs.split(","))}

    def _lines(self) -> list[str]:
        return (
            [ln for ln in self.results.read_text().splitlines() if ln.strip()]
            if self.results.exists()
            else []
        )

    @staticmethod
    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        return (row["model"], row["condition"], row["corpus_part"], str(row["size"]), int(row["seed"]))

    def compose(self, out: Path, overrides: list[str]) -> Any:
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            return compose(
                config_name="train",
                overrides=[f"paths.output_dir={out}", "logger=none", *overrides],
            )

    def train(self, out: Path, overrides: list[str]) -> dict[str, Any]:
        from tabxfer.train import run

        out.mkdir(parents=True, exist_ok=True)
        return run(self.compose(out, overrides))

    # --- pretraining ------------------------------------------------------------------------------
    def corpus_drop(self, part: str) -> tuple[list[str], int]:
        """Sources that corpus part ``part`` drops (``real_only``: the synthetic ones, ``synthetic_only``:
        the real ones), and how many sources the corpus has."""
        if part == "all":
            return [], 0
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            data = compose(config_name="train", overrides=[f"data={self.args.corpus}"]).data
        drop = []
        for name, node in data.sources.items():
            synthetic = node["_target_"].endswith("SyntheticTrips")
            if (part == "real_only" and synthetic) or (part == "synthetic_only" and not synthetic):
                drop.append(name)
        return drop, len(data.sources)

    def corpus_overrides(self, part: str) -> list[str]:
        drop, _ = self.corpus_drop(part)
        out = [f"~data.sources.{n}" for n in drop] + [f"~data.weights.{n}" for n in drop]
        kept = [
            o
            for o in self.args.corpus_set
            if not any(f"data.sources.{n}." in o or f"data.weights.{n}=" in o for n in drop)
        ]
        return out + kept

    def pretrained(self, model: str, condition: str, part: str = "all") -> str:
        objective = self.args.ssl_objective if condition == "self_supervised" else "supervised"
        out = self.out / "pretrain" / part / f"{model}-{objective}"
        ckpt = out / "checkpoints" / "best.ckpt"
        if ckpt.exists():
            return str(ckpt)
        t0 = time.perf_counter()
        res = self.train(
            out,
            [
                f"data={self.args.corpus}",
                f"model={model}",
                f"objective={objective}",
                f"trainer.max_epochs={self.args.pretrain_epochs}",
                f"+trainer.limit_train_batches={self.args.pretrain_batches}",
                "+trainer.limit_val_batches=5",
                "seed=0",
                *self.corpus_overrides(part),
                *self.per_model.get(model, []),
            ],
        )
        row = {
            "model": model,
            "objective": objective,
            "corpus_part": part,
            "monitor": res["monitor"],
            "value": res["monitor_value"],
            "seconds": time.perf_counter() - t0,
            "train_rows": res["train_rows"],
            "epochs": res["epochs"],
        }
        with open(self.out / "pretrain.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        log.info("pretrained %s", row)
        return res["best_checkpoint"]

    # --- target runs ------------------------------------------------------------------------------
    def target_run(self, model: str, condition: str, size: str, seed: int, part: str = "all") -> None:
        row_key = (model, condition, part, size, seed)
        self.done |= {self.key(json.loads(line)) for line in self._lines()}  # other workers' rows too
        if row_key in self.done:
            return
        overrides = [
            f"data={self.args.target}",
            f"model={model}",
            f"seed={seed}",
            f"datamodule.train_limit={'null' if size == 'all' else size}",
            *self.args.target_set,
        ]
        if model != "lightgbm":
            overrides.append(f"trainer.max_epochs={self.epochs[size]}")
            overrides += self.per_model.get(model, [])
        if condition != "scratch":
            overrides += [
                f"init_from={self.pretrained(model, condition, part)}",
                f"finetune={self.args.finetune}",
            ]
        elif model == "lightgbm":
            overrides.append(f"+model.seed={seed}")
        out = self.out / "runs" / part / model / condition / size / str(seed)
        t0 = time.perf_counter()
        res = self.train(out, overrides)
        m = res["metrics"]
        row = {
            "model": model,
            "condition": condition,
            "corpus_part": part,
            "size": size,
            "train_rows": res["train_rows"],
            "seed": seed,
            "val_rmsle": m.get("val/rmsle_best", m.get("val/rmsle")),
            "test_rmsle": m["test/rmsle"],
            "epochs": res.get("epochs"),
            "seconds": time.perf_counter() - t0,
            "finetune": self.args.finetune if condition != "scratch" else None,
            "objective": None
            if condition == "scratch"
            else (self.args.ssl_objective if condition == "self_supervised" else "supervised"),
        }
        with open(self.results, "a") as f:  # one line per run: an interrupted study resumes
            f.write(json.dumps(row) + "\n")
        self.done.add(row_key)
        log.info("%s", row)

    def run(self) -> None:
        a = self.args
        sizes, seeds = a.sizes.split(","), [int(s) for s in a.seeds.split(",")]
        conditions = a.conditions.split(",")
        for model in [m for m in a.models.split(",") if m]:
            for condition in conditions:
                for size in sizes:
                    for seed in seeds:
                        self.target_run(model, condition, size, seed)
        if a.lightgbm:
            for size in sizes:
                for seed in seeds:
                    self.target_run("lightgbm", "scratch", size, seed)
        if a.ablate:
            for part in ("real_only", "synthetic_only"):
                drop, n = self.corpus_drop(part)
                if not drop or len(drop) == n:
                    log.info("corpus %s has no %s part distinct from the whole: skipped", a.corpus, part)
                    continue
                for size in [s for s in sizes if s != "all"]:
                    for seed in seeds:
                        self.target_run(a.ablate, "supervised", size, seed, part)

    # --- report -----------------------------------------------------------------------------------
    def report(self) -> pl.DataFrame:
        rows = [json.loads(line) for line in self._lines()]
        if not rows:
            raise SystemExit(f"no results in {self.results}")
        keys = ["model", "condition", "corpus_part", "size", "seed"]
        df = pl.DataFrame(rows, infer_schema_length=None).unique(keys, keep="first", maintain_order=True)
        tmp = self.out / ".results.parquet.tmp"
        df.write_parquet(tmp)
        os.replace(tmp, self.out / "results.parquet")
        summary = (
            df.group_by("model", "condition", "corpus_part", "size", "train_rows")
            .agg(
                pl.len().alias("seeds"),
                pl.col("test_rmsle").mean().alias("test_mean"),
                pl.col("test_rmsle").std().alias("test_std"),
                pl.col("test_rmsle").min().alias("test_min"),
                pl.col("test_rmsle").max().alias("test_max"),
                pl.col("seconds").mean().alias("seconds"),
            )
            .sort("model", "corpus_part", "condition", "train_rows")
        )
        lines = [
            "| model | condition | corpus | size | rows | seeds | test RMSLE mean ± std | min-max | s/run |"
        ]
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for r in summary.iter_rows(named=True):
            std = r["test_std"] if r["test_std"] is not None else 0.0
            lines.append(
                f"| {r['model']} | {r['condition']} | {r['corpus_part']} | {r['size']} | {r['train_rows']:,} | "
                f"{r['seeds']} | {r['test_mean']:.4f} ± {std:.4f} | {r['test_min']:.4f}-{r['test_max']:.4f} | "
                f"{r['seconds']:.0f} |"
            )
        (self.out / "summary.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        plot = self.plot(df)
        self.log_wandb(df, plot)
        return df

    def plot(self, df: pl.DataFrame) -> Path | None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            log.warning("matplotlib is not installed (pip install -e '.[bench]'): no plot")
            return None
        main = df.filter(pl.col("corpus_part") == "all")
        models = [m for m in main["model"].unique(maintain_order=True).to_list() if m != "lightgbm"]
        if not models:
            return None
        fig, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 3.6), sharey=True, squeeze=False)
        gbm = main.filter(pl.col("model") == "lightgbm")
        for ax, model in zip(axes[0], models, strict=True):
            series = [
                (c, main.filter((pl.col("model") == model) & (pl.col("condition") == c))) for c in CONDITIONS
            ]
            if gbm.height:
                series.append(("LightGBM", gbm))
            for label, d in series:
                if not d.height:
                    continue
                g = (
                    d.group_by("train_rows")
                    .agg(
                        pl.col("test_rmsle").mean().alias("m"),
                        pl.col("test_rmsle").min().alias("lo"),
                        pl.col("test_rmsle").max().alias("hi"),
                    )
                    .sort("train_rows")
                )
                x = g["train_rows"].to_list()
                style = "--" if label == "LightGBM" else "-o"
                ax.plot(
                    x, g["m"].to_list(), style, label=label, color="gray" if label == "LightGBM" else None
                )
                ax.fill_between(x, g["lo"].to_list(), g["hi"].to_list(), alpha=0.2)
            ax.set_xscale("log")
            ax.set_title(model)
            ax.set_xlabel("target training rows")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("test RMSLE (mean, min-max over seeds)")
        axes[0][-1].legend(fontsize=8)
        fig.tight_layout()
        path = self.out / "rmsle_vs_size.png"
        tmp = self.out / ".rmsle_vs_size.tmp.png"
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
        plt.close(fig)
        return path

    def log_wandb(self, df: pl.DataFrame, plot: Path | None) -> None:
        try:
            import wandb
        except ImportError:
            return
        os.environ.setdefault("WANDB_MODE", "offline")
        run = wandb.init(
            project="tabxfer",
            job_type="transfer_study",
            dir=str(self.out),
            config=vars(self.args),
            tags=["transfer_study", self.args.target],
        )
        run.log({"results": wandb.Table(columns=df.columns, data=df.rows())})
        if plot is not None:
            run.log({"rmsle_vs_size": wandb.Image(str(plot))})
        run.finish()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("pytorch_lightning", "lightning", "lightning.pytorch"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    study = Study(args)
    if not args.report_only:
        study.run()
    study.report()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
