"""The analysis notebooks (notebooks/*.ipynb) execute end to end with nbclient on tiny inputs made here, and
print / save what they claim: numbers checked against an independent computation, figures on disk.

Inputs: a transfer study run by ``scripts/transfer_study.py`` on synthetic data (1 model, 2 sizes, 2
seeds), a genuine Optuna study written with Optuna's ask/tell API (completed, pruned and failed trials),
and tiny TabNet and TFT training runs. The notebooks read them through their environment variables,
which the kernel inherits from this process.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
NAMES = ["01_transfer_study.ipynb", "02_sweep_analysis.ipynb", "03_run_explanations.ipynb"]
CELL_TIMEOUT_S = 300
CONFIGS = REPO / "configs"
EXPLAIN_ROWS = 300


@pytest.mark.parametrize("name", NAMES)
def test_notebooks_are_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.cells[0].cell_type == "markdown" and "| environment variable |" in nb.cells[0].source
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: strip outputs (nbstripout)"


# --- running notebooks ---------------------------------------------------------------------------------
def execute(name: str, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> nbformat.NotebookNode:
    """Run a notebook in a fresh ``python3`` kernel (cwd notebooks/, ``env`` added to the kernel's
    environment); a cell that raises fails the test with the cell's traceback."""
    for k, v in {"OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "WANDB_MODE": "disabled", **env}.items():
        monkeypatch.setenv(k, v)  # the kernel process inherits this environment
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    # which interpreter the kernel runs: the `python3` kernelspec must resolve to this one (the venv)
    nb.cells.insert(0, nbformat.v4.new_code_cell("import sys\nprint('KERNEL', sys.executable)"))
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=CELL_TIMEOUT_S, resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()
    kernel = re.search(r"^KERNEL (.+)$", text(nb), re.M)
    assert kernel is not None and Path(kernel.group(1)).resolve() == Path(sys.executable).resolve()
    return nb


def text(nb: nbformat.NotebookNode) -> str:
    """Everything the notebook printed (stream outputs), in order."""
    return "".join(
        o.get("text", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "stream"
    )


def figures(out: Path, *names: str) -> None:
    for n in names:
        p = out / n
        assert p.is_file() and p.stat().st_size > 5_000, f"missing or empty figure {p}"
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Fixtures train tiny models in this process: one thread (two threads beside other jobs on a
    2-core machine were 10x slower)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --- 01: the transfer study ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    """``scripts/transfer_study.py`` on synthetic data: MLP x {scratch, supervised pretraining} x
    {300 rows, all} x seeds {0, 1}, and LightGBM; tiny widths, 2 epochs, corpus of 3 small cities.
    (Self-supervised pretraining is left out for time: the notebook treats every condition alike.)"""
    root = tmp_path_factory.mktemp("study")
    spec = importlib.util.spec_from_file_location("transfer_study", REPO / "scripts" / "transfer_study.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cache = f"paths.cache_dir={root / 'cache'}"
    corpus = [f"data.sources.{c}.n=800" for c in ("harborview", "riverton", "sprawlton")]
    corpus += [f"~data.{k}.{c}" for k in ("sources", "weights") for c in ("oldtown", "pedalburg")]
    args = ["--out", str(root / "out"), "--models", "mlp", "--sizes", "300,all", "--seeds", "0,1"]
    args += ["--conditions", "scratch,supervised"]
    args += ["--pretrain-epochs", "1", "--pretrain-batches", "3", "--epochs", "300:2,all:2", "--threads", "1"]
    args += ["--set", "mlp:model.d_block=32", "--set", "mlp:model.n_blocks=1"]
    for o in [
        cache,
        "data.sources.nyc.n=2000",
        "datamodule.batch_size=256",
        "+trainer.enable_progress_bar=false",
    ]:
        args += ["--target-set", o]
    for o in [cache, *corpus, "datamodule.batch_size=256", "+trainer.enable_progress_bar=false"]:
        args += ["--corpus-set", o]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "disabled")
        module.main(args)
    return root / "out"


def expected_gains(results: Path) -> dict[str, float]:
    """scratch - fine-tuned test RMSLE, paired by seed, mean over seeds, per model/condition/part/size."""
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    scratch = {
        (r["model"], r["size"], r["seed"]): r["test_rmsle"] for r in rows if r["condition"] == "scratch"
    }
    gains = defaultdict(list)
    for r in rows:
        if r["condition"] != "scratch" and (r["model"], r["size"], r["seed"]) in scratch:
            key = f"{r['model']}/{r['condition']}/{r['corpus_part']}/{r['size']}"
            gains[key].append(scratch[(r["model"], r["size"], r["seed"])] - r["test_rmsle"])
    return {k: float(np.mean(v)) for k, v in gains.items()}


@pytest.mark.slow
def test_transfer_study_notebook(study_dir, tmp_path, monkeypatch):
    out = tmp_path / "figures"
    nb = execute(NAMES[0], monkeypatch, {"TABXFER_STUDY_DIR": str(study_dir), "TABXFER_NB_OUT": str(out)})
    printed = text(nb)
    got = {m[1]: float(m[2]) for m in re.finditer(r"^transfer gain (\S+): ([+-]\d+\.\d+) ±", printed, re.M)}
    want = expected_gains(study_dir / "results.jsonl")
    assert set(got) == set(want) == {"mlp/supervised/all/300", "mlp/supervised/all/all"}
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=5.1e-5), k  # printed with 4 decimals
    assert "12 runs:" in printed  # 2 conditions x 2 sizes x 2 seeds of MLP + 2 x 2 LightGBM
    figures(out, "rmsle_vs_size.png", "transfer_gain.png")


# --- 02: an Optuna study -------------------------------------------------------------------------------
def make_study(storage, name: str, n_trials: int, prune=lambda i: i % 3 == 2) -> dict[str, int]:
    """A genuine study through Optuna's ask/tell API: 3 parameters, intermediate values at 5 steps, the
    trials ``prune(i)`` names pruned at step 2 (default every third), trial 5 failed. Returns the trial
    counts by state."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=name, storage=storage, direction="minimize", sampler=optuna.samplers.RandomSampler(seed=0)
    )
    for i in range(n_trials):
        trial = study.ask()
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        width = trial.suggest_int("width", 8, 64, step=8)
        act = trial.suggest_categorical("act", ["relu", "gelu"])
        trial.set_user_attr("output_dir", f"/runs/{name}/{i}")
        if i == 5:
            study.tell(trial, state=TrialState.FAIL)
            continue
        final = (math.log10(lr) + 2.5) ** 2 + 0.01 * abs(width - 32) / 8 + (0.1 if act == "relu" else 0.0)
        for step in range(3 if prune(i) else 5):
            trial.report(final + 1.0 / (step + 1), step)
        if prune(i):
            study.tell(trial, state=TrialState.PRUNED)
            continue
        trial.set_user_attr("test/rmsle", final + 0.01)
        study.tell(trial, final)
    return {s.name.lower(): sum(t.state == s for t in study.trials) for s in TrialState}


@pytest.mark.slow
def test_sweep_notebook_on_a_sqlite_study(tmp_path, monkeypatch):
    import optuna

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    counts = make_study(url, "tiny", 14)
    assert counts["complete"] >= 2 and counts["pruned"] and counts["fail"] == 1
    out = tmp_path / "figures"
    nb = execute(NAMES[1], monkeypatch, {"TABXFER_SWEEP_STORAGE": url, "TABXFER_NB_OUT": str(out)})
    printed = text(nb)
    assert f"TRIALS total=14 {' '.join(f'{k}={v}' for k, v in counts.items())}\n" in printed
    best = optuna.load_study(study_name="tiny", storage=url).best_trial
    assert f"BEST trial {best.number}: value={best.value:.6f}\n" in printed
    assert f"[output_dir] /runs/tiny/{best.number}\n" in printed
    imp = {m[1]: float(m[2]) for m in re.finditer(r"^importance (\S+): (\d+\.\d+)$", printed, re.M)}
    assert set(imp) == {"lr", "width", "act"} and sum(imp.values()) == pytest.approx(1.0, abs=2e-4)
    figures(out, "sweep_history.png", "sweep_importances.png", "sweep_parallel.png", "sweep_intermediate.png")


@pytest.mark.slow
def test_sweep_notebook_on_a_journal_with_one_completed_trial(tmp_path, monkeypatch):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = tmp_path / "sweep.log"
    storage = JournalStorage(JournalFileBackend(str(journal)))
    make_study(storage, "other", 2)  # created first: the notebook must pick the named study
    counts = make_study(storage, "small", 3, prune=lambda i: i > 0)  # 1 complete, 2 pruned
    assert counts["complete"] == 1
    out = tmp_path / "figures"
    env = {"TABXFER_SWEEP_STORAGE": str(journal), "TABXFER_SWEEP_STUDY": "small", "TABXFER_NB_OUT": str(out)}
    printed = text(execute(NAMES[1], monkeypatch, env))
    assert "study 'small' in" in printed
    assert f"TRIALS total=3 {' '.join(f'{k}={v}' for k, v in counts.items())}\n" in printed
    assert "1 completed trial(s): parameter importances need at least 2" in printed
    assert not (out / "sweep_importances.png").exists()
    figures(out, "sweep_history.png", "sweep_parallel.png", "sweep_intermediate.png")


# --- 03: one training run ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Tiny TabNet and TFT runs (1 epoch) on 3,000 synthetic trips; TFT reads the 24 h context."""
    from factories import tiny_run_config
    from tabxfer.train import run

    root = tmp_path_factory.mktemp("runs")
    tiny = {
        "tabnet": ["model.n_d=8", "model.n_a=8", "model.n_steps=2"],
        "tft": ["model.d_model=16", "model.n_heads=2"],
    }
    out = {}
    for model, more in tiny.items():
        cfg = tiny_run_config(root, model, f"model={model}", *more, n_trips=3000)
        run(cfg)
        out[model] = root / model
    return out


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tabnet", "tft"])
def test_run_notebook(model, runs, tmp_path, monkeypatch):
    from tabxfer.evaluation import explain
    from tabxfer.evaluation.runs import load_run, run_cache

    run_dir = runs[model]
    out = tmp_path / "figures"
    env = {
        "TABXFER_RUN_DIR": str(run_dir),
        "TABXFER_EXPLAIN_ROWS": str(EXPLAIN_ROWS),
        "TABXFER_NB_OUT": str(out),
    }
    printed = text(execute(NAMES[2], monkeypatch, env))
    # the split's RMSLE, recomputed from the checkpoint and the cache, is the one training recorded
    recorded = json.loads((run_dir / "metrics.json").read_text())["metrics"]["test/rmsle"]
    score = re.search(r"^RMSLE test: (\d+\.\d+) on (\d+) labeled rows", printed, re.M)
    assert score is not None and float(score[1]) == pytest.approx(recorded, abs=2e-6)
    assert "slices from the canonical trips" in printed  # not the fallback
    # the importances the notebook reports are the library's on the same rows
    run = load_run(run_dir)
    sub = explain.split_inputs(run_cache(run), "test", max_rows=EXPLAIN_ROWS, seed=0)
    own = explain.feature_importance(run.module, sub.x_num, sub.x_cat, sub.y, sub.x_ctx)
    top = max(own, key=lambda k: own[k])
    method = {"tabnet": "tabnet_masks", "tft": "tft_static_weights"}[model]
    assert f"TOP FEATURE ({method}): {top} = {own[top]:.6f} on {EXPLAIN_ROWS} rows\n" in printed
    prefix = f"run_{run_dir.name}_"
    extra = {"tabnet": "tabnet_masks.png", "tft": "tft_weights.png"}[model]
    names = ["pred_vs_actual.png", "residuals.png", "rmsle_by_slice.png", "importance.png", extra]
    figures(out, *(prefix + n for n in names))
