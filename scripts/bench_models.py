"""Every model on the real NYC Kaggle rows (fixed split, same features): test RMSLE, size, time, speed.

    python scripts/bench_models.py                       # all models, CPU, writes bench_results/bench_models.json
    python scripts/bench_models.py --models mlp lightgbm --epochs 20 --trainer gpu

Each model is trained by tabxfer.train.run (the same code path as train.py) through Hydra's compose API.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = [
    "trivial",
    "lightgbm",
    "xgboost",
    "mlp",
    "tabnet",
    "tab_transformer",
    "ft_transformer",
    "wide_deep",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=DEFAULT_MODELS)
    ap.add_argument("--data", default="nyc_kaggle")
    ap.add_argument(
        "--data-dir", default=os.environ.get("TABXFER_DATA_DIR", str(REPO.parent / "shared" / "data"))
    )
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--trainer", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides for every model")
    ap.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="MODEL:OVERRIDE",
        help="an override for one model, e.g. tabnet:trainer.max_epochs=30",
    )
    ap.add_argument("--out", type=Path, default=REPO / "bench_results" / "bench_models.json")
    args = ap.parse_args()

    from tabxfer.train import run

    work = REPO / "logs" / "bench_models" / time.strftime("%Y-%m-%d_%H-%M-%S")
    available = {p.stem for p in (REPO / "configs" / "model").glob("*.yaml")}
    rows = []
    for model in args.models:
        if model not in available:
            print(f"skip {model}: no configs/model/{model}.yaml")
            continue
        overrides = [
            f"model={model}",
            f"data={args.data}",
            f"paths.data_dir={args.data_dir}",
            f"paths.output_dir={work / model}",
            f"trainer={args.trainer}",
            f"trainer.max_epochs={args.epochs}",
            f"seed={args.seed}",
            "logger=csv",
            "+trainer.enable_progress_bar=false",
            *args.extra,
            *[o.split(":", 1)[1] for o in args.set if o.split(":", 1)[0] == model],
        ]
        with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides)
        r = run(cfg)
        rows.append(
            {
                "model": model,
                "n_params": r["n_params"],
                "test_rmsle": r["metrics"]["test/rmsle"],
                "val_rmsle": r["metrics"]["val/rmsle"],
                "train_seconds": r["train_seconds"],
                "epochs": r.get("epochs"),
                "rows_per_s": r.get("rows_per_s"),
                "train_rows": r["train_rows"],
            }
        )

    print(
        f"\n{'model':16} {'params':>10} {'test RMSLE':>11} {'val RMSLE':>10} {'train s':>8} {'epochs':>7} {'rows/s':>10}"
    )
    for r in rows:
        rps = f"{r['rows_per_s']:,.0f}" if r["rows_per_s"] else "-"
        print(
            f"{r['model']:16} {r['n_params']:>10,} {r['test_rmsle']:>11.4f} {r['val_rmsle']:>10.4f} "
            f"{r['train_seconds']:>8.1f} {r['epochs'] or '-':>7} {rps:>10}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(
        json.dumps({"args": vars(args) | {"out": str(args.out)}, "results": rows}, indent=1, default=str)
    )
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
