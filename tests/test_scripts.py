"""Every script in ``scripts/`` and ``benchmarks/`` starts: ``--help`` in a fresh process (not this one,
whose ``sys.path`` already holds ``tests/``), so an import that only works under pytest fails here."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
# benchmark-only packages (the `bench` extra; CI installs `dev` only): a benchmark may need them
_REQS = [Requirement(r) for r in importlib.metadata.requires("tabxfer") or []]
BENCH_ONLY = {r.name.lower() for r in _REQS if r.marker is not None and 'extra == "bench"' in str(r.marker)}
SCRIPTS = sorted(p for d in ("scripts", "benchmarks") for p in (REPO / d).glob("*.py"))

# One interpreter for all of them (torch, polars and Lightning are imported once): each script runs as
# __main__ with ``--help``; argparse exits 0 after printing its usage.
DRIVER = """
import io, json, os, runpy, sys, contextlib, traceback
repo, paths = sys.argv[1], sys.argv[2:]
local = tuple(os.path.join(repo, d) + os.sep for d in ("tests", "scripts", "benchmarks"))
path0, results = list(sys.path), {}
for path in paths:
    # each script starts as it would alone: its own sys.path edits and local imports are undone
    sys.path[:] = path0
    for name, mod in list(sys.modules.items()):
        if (getattr(mod, "__file__", None) or "").startswith(local):
            del sys.modules[name]
    sys.argv = [path, "--help"]
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(path, run_name="__main__")
        # a plain module (no __main__ block) only has to import
        ok = "__main__" not in open(path).read()
        results[path] = "ok" if ok else "no usage: ran without exiting"
    except ModuleNotFoundError as e:
        results[path] = f"missing module {e.name}"
    except SystemExit as e:
        results[path] = "ok" if e.code in (0, None) and "usage" in out.getvalue() else f"exit {e.code}"
    except BaseException:
        results[path] = traceback.format_exc(limit=-3)
print("RESULTS" + json.dumps(results))
"""


def test_every_script_starts() -> None:
    assert len(SCRIPTS) >= 10, SCRIPTS  # the glob found them
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, str(REPO), *map(str, SCRIPTS)],
        cwd=REPO / "scripts",  # not the repository root: nothing importable by accident
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.rsplit("RESULTS", 1)[1])
    allowed = {"ok"} | {f"missing module {m}" for m in BENCH_ONLY}
    failed = {Path(k).relative_to(REPO).as_posix(): v for k, v in results.items() if v not in allowed}
    assert failed == {}, "\n".join(f"{k}: {v}" for k, v in failed.items())
