"""The training fault campaign: every deep model, SIGKILLed at random points and resumed, against an
uninterrupted run with the same seed.

For each model: one uninterrupted run (the reference), then one run killed ``--kills`` times at random
points (training steps, validation batches and checkpoint saves via ``KillAt``; with ``--timed`` also
one kill after a random wall-clock delay, wherever the run is) and restarted with ``ckpt_path=auto`` after
each kill. A model survives when every checkpoint left after every kill was whole and the resumed run's
final metrics (val/test RMSLE, train loss, epochs) equal the reference's bit for bit (CPU).

    python scripts/fault_campaign.py                       # all deep models, 3 kills each
    python scripts/fault_campaign.py --models mlp tabnet --kills 4 --timed

Prints a table and writes ``bench_results/reliability/fault_campaign.json`` (atomically). Exits 1 when a
model did not survive. The harness is ``tests/reliability/faults.py`` (the tests use it too).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "reliability"))

from faults import (  # noqa: E402
    differences,
    run_to_end,
    run_with_step_kills,
    run_with_timed_kills,
    train_command,
)

from tabxfer.io import write_text_atomic  # noqa: E402

DEEP = ["mlp", "tabnet", "ft_transformer", "tab_transformer", "wide_deep", "tft"]
STEPS_PER_EPOCH = 19  # 2400 training rows / batch 128 (faults.train_command's defaults)


def points(rng: random.Random, kills: int, epochs: int = 4) -> list[tuple[int, str]]:
    """``kills`` kill points, each past the previous attempt's checkpoint, cycling train / val / save."""
    out = []
    for k in range(kills):
        where = ("train", "val", "save")[k % 3]
        if where == "train":
            out.append((rng.randint(2, STEPS_PER_EPOCH * (epochs - 1)), where))
        elif where == "val":
            out.append((rng.randint(1, 2), where))
        else:
            out.append((rng.randint(1, 3), where))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=DEEP)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--timed", action="store_true", help="also one kill after a random wall-clock delay")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "bench_results" / "reliability" / "fault_campaign.json"))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tabxfer-faults-") as tmp:
        root = Path(tmp)
        for model in args.models:
            t_ref, ref = run_to_end(train_command(root / model / "ref", root / "cache", model))
            pts = points(rng, args.kills)
            t0 = time.perf_counter()
            killed = run_with_step_kills(train_command(root / model / "killed", root / "cache", model), pts)
            kills = list(killed.kills)
            diff = differences(ref, killed.metrics)
            if args.timed:  # one more run: killed at a random moment of its wall time, then finished
                timed = run_with_timed_kills(
                    train_command(root / model / "timed", root / "cache", model),
                    [(0.2 * t_ref, t_ref)],
                    seed=rng.randint(0, 10**6),
                )
                kills += timed.kills
                diff |= {f"timed:{k}": v for k, v in differences(ref, timed.metrics).items()}
            whole = all(k.checkpoints_whole for k in kills)
            rows.append(
                {
                    "model": model,
                    "kills": len(kills),
                    "points": [k.point for k in kills],
                    "resumed_from_epoch": [k.last_epoch for k in kills],
                    "interrupted_writes": sum(bool(k.temporaries) for k in kills),
                    "checkpoints_whole": whole,
                    "identical_metrics": not diff,
                    "differences": {k: list(v) for k, v in diff.items()},
                    "reference": {k: ref["metrics"].get(k) for k in ("val/rmsle_best", "test/rmsle")},
                    "epochs": ref.get("epochs"),
                    "seconds": round(time.perf_counter() - t0, 1),
                    "survived": whole and not diff,
                }
            )
            r = rows[-1]
            print(
                f"{model:16s} kills {r['kills']}  at {', '.join(r['points']):40s} resumed from epochs "
                f"{r['resumed_from_epoch']}  whole {whole}  identical {not diff}  "
                f"test/rmsle {r['reference']['test/rmsle']:.5f}",
                flush=True,
            )
    total = sum(r["kills"] for r in rows)
    survived = sum(r["kills"] for r in rows if r["survived"])
    summary = {"faults_injected": total, "faults_survived": survived, "models": rows}
    write_text_atomic(args.out, json.dumps(summary, indent=1))
    print(f"\n{survived}/{total} SIGKILLs survived across {len(rows)} models -> {args.out}")
    return 0 if survived == total else 1


if __name__ == "__main__":
    sys.exit(main())
