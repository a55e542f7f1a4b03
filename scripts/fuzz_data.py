"""The data-layer fuzzing campaign: every malformed-input case of ``tests/reliability/malformed_cases.py``
plus random files, with the outcome each got.

Random files come in three kinds, ``--random`` of them in all (plain ``random`` with ``--seed``): Kaggle
CSVs whose cells mix valid values with extreme numbers, odd text and odd times (some cut short), and the
bytes of a valid Kaggle CSV or Parquet file with tokens inserted, bytes deleted, flipped or cut. Each must
be refused with a clear DataError naming it, or loaded with every row accounted for and only valid rows
kept.

    python scripts/fuzz_data.py                  # writes bench_results/reliability/fuzz_data.json
    python scripts/fuzz_data.py --random 2000 --seed 7

Prints one line per case (name, expected, got, first 80 characters of the message) and the counts per
outcome (error / drop / ok / UNCLEAR, and skipped real-data cases). Exits 1 when any case or random file
is UNCLEAR (a crash, an error naming no file, the loaders' last-resort "cannot read") or not as expected.
Real-data cases read ``$TABXFER_DATA_DIR`` (default ``../shared/data``) and are skipped when it is absent.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "reliability"), str(REPO / "tests")]  # malformed_cases, factories

import malformed_cases as mc  # noqa: E402

OUT = REPO / "bench_results" / "reliability" / "fuzz_data.json"


def data_dir() -> Path | None:
    path = Path(os.environ.get("TABXFER_DATA_DIR", REPO.parent / "shared" / "data"))
    return path if path.is_dir() else None


def run_cases(root: Path, data: Path | None) -> list[dict[str, Any]]:
    """Each case's outcome; the scratch folder's path is cut from messages (``case_007/file.csv: ...``)."""

    def short(text: str) -> str:
        return text.replace(f"{root}/", "")

    rows = []
    for i, case in enumerate(mc.CASES):
        try:
            trial, out = mc.run_case(case, root / f"case_{i:03d}", data)
        except mc.MissingData as e:
            rows.append({"case": case.name, "expected": case.expect, "got": "skipped", "message": str(e)})
            continue
        problems = mc.mismatches(case, trial, out)
        rows.append(
            {
                "case": case.name,
                "expected": case.expect,
                "got": out.kind,
                "as_expected": not problems,
                "problems": [short(x) for x in problems],
                "message": short(out.message),
                "kept": out.kept,
                "dropped": out.dropped,
                "note": case.note,
            }
        )
    return rows


def random_trial(kind: str, rng: random.Random, folder: Path, i: int) -> tuple[Path, int | None]:
    if kind == "cells":
        return mc.random_file(rng, folder, i)
    if kind == "csv_bytes":
        data = mc.good_csv()
        return mc.write(
            folder, f"mutated_{i:05d}.csv", mc.mutate(data, mc.random_edits(rng, len(data), mc.CSV_TOKENS))
        ), None
    data = mc.good_parquet()
    edits = mc.random_edits(rng, len(data), mc.PARQUET_TOKENS)
    return mc.write(folder, f"mutated_{i:05d}.parquet", mc.mutate(data, edits)), None


def run_random(root: Path, n: int, seed: int, keep: Path) -> dict[str, Any]:
    """``n`` random files; those that fail are moved to ``keep`` for a look."""
    rng = random.Random(seed)
    kinds = ("cells", "csv_bytes", "parquet_bytes")
    counts: dict[str, collections.Counter[str]] = {k: collections.Counter() for k in kinds}
    failures = []
    folder = root / "random"
    folder.mkdir()
    for i in range(n):
        kind = kinds[i % len(kinds)]
        path, n_rows = random_trial(kind, rng, folder, i)
        out, problems = mc.check_random_file(path, n_rows)
        counts[kind][out.kind if not problems or out.kind == mc.UNCLEAR else "mismatch"] += 1
        if problems:
            keep.mkdir(parents=True, exist_ok=True)
            kept = Path(shutil.move(path, keep / path.name))
            failures.append(
                {"kind": kind, "index": i, "file": str(kept), "got": out.kind, "problems": problems}
            )
        else:
            path.unlink()
    return {
        "count": n,
        "seed": seed,
        "outcomes": {k: dict(v) for k, v in counts.items()},
        "failures": failures,
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomically: a temporary file in the same folder, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a result is as readable as its folder
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=1, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def one_line(text: str, width: int = 80) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--random", type=int, default=300, help="random files in all (default 300)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)

    data = data_dir()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fuzz_data_") as tmp:
        root = Path(tmp)
        cases = run_cases(root, data)
        rand = run_random(root, args.random, args.seed, keep=args.out.parent / "fuzz_data_failures")
    seconds = time.perf_counter() - t0

    width = max(len(r["case"]) for r in cases)
    print(f"{'case':{width}}  {'expected':8}  {'got':8}  message")
    for r in cases:
        flag = "" if r.get("as_expected", True) else "  <-- " + "; ".join(r["problems"])
        print(f"{r['case']:{width}}  {r['expected']:8}  {r['got']:8}  {one_line(r['message'])}{flag}")

    counts = collections.Counter(r["got"] for r in cases)
    mismatched = [r["case"] for r in cases if r["got"] != "skipped" and not r["as_expected"]]
    unclear = [r["case"] for r in cases if r["got"] == mc.UNCLEAR]
    print("\ncases:", ", ".join(f"{k}={counts.get(k, 0)}" for k in (*mc.OUTCOMES, mc.UNCLEAR, "skipped")))
    print(f"cases not as expected: {len(mismatched)} {mismatched if mismatched else ''}")
    for kind, c in rand["outcomes"].items():
        print(f"random {kind:13}: " + ", ".join(f"{k}={v}" for k, v in sorted(c.items())))
    for f in rand["failures"][:20]:
        print(f"  FAILED {f['kind']} #{f['index']} ({f['file']}): {one_line('; '.join(f['problems']), 160)}")
    print(f"{len(cases)} cases + {args.random} random files in {seconds:.1f} s; data: {data or 'absent'}")

    payload = {
        "created_unix": time.time(),
        "polars": pl.__version__,
        "data_dir": str(data) if data else None,
        "seconds": round(seconds, 2),
        "counts": {k: counts.get(k, 0) for k in (*mc.OUTCOMES, mc.UNCLEAR, "skipped")},
        "mismatched": mismatched,
        "unclear": unclear,
        "cases": cases,
        "random": rand,
    }
    write_json(args.out, payload)
    print(f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")
    return 1 if mismatched or unclear or rand["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
