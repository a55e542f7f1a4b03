"""Search-space grammar, storages, orphaned trials and the best-config writer (no training here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from tabxfer.sweep import study as st
from tabxfer.sweep.space import as_override, parse_space

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_grammar_maps_to_optuna_distributions():
    dists, fixed = parse_space(
        {
            "a": "range(8, 33, step=8)",  # hydra's stop is exclusive, Optuna's high inclusive
            "b": "interval(0.0, 0.5)",
            "c": "tag(log, interval(1e-5, 1e-2))",
            "d": "int(interval(1, 6))",
            "e": "int(tag(log, interval(15, 255)))",
            "f": "choice(full, gradual)",
            "g": "choice({1:[backbone],2:[embed]}, {3:[backbone]})",
            "+h": "range(0.1, 0.5, step=0.1)",
            "i": 3,
            "j": "${paths.log_dir}/x",
        }
    )
    assert dists["a"] == IntDistribution(8, 32, step=8)
    assert dists["b"] == FloatDistribution(0.0, 0.5)
    assert dists["c"] == FloatDistribution(1e-5, 1e-2, log=True)
    assert dists["d"] == IntDistribution(1, 6)
    assert dists["e"] == IntDistribution(15, 255, log=True)
    assert dists["f"] == CategoricalDistribution(["full", "gradual"])
    assert isinstance(dists["+h"], FloatDistribution) and dists["+h"].step == pytest.approx(0.1)
    assert fixed == {"i": "3", "j": "${paths.log_dir}/x"}  # interpolations reach the job unresolved
    # every sampled value is written back as an override that parses to the same value
    parser = OverridesParser.create()
    for choice in dists["g"].choices:
        (ov,) = parser.parse_overrides([as_override("finetune.unfreeze", choice)])
        assert isinstance(ov.value(), dict)
    for v in (1e-5, 0.1234567890123, 7, True, None, "gradual"):
        (ov,) = parser.parse_overrides([as_override("k", v)])
        assert ov.value() == v


def test_bad_space_names_the_parameter():
    with pytest.raises(ValueError, match=r"hydra\.sweeper\.params\.model\.lr"):
        parse_space({"model.lr": "interval(0.1"})


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONFIGS / "hparams_search").glob("[!_]*.yaml")))
@pytest.mark.parametrize("end", ["low", "high"])
def test_every_search_space_composes_at_its_bounds(name, end):
    """Each space's extreme values, written back as overrides, compose into a training config that holds
    them (a misspelled key or a key missing from some group option fails here, not in trial 7)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        sweep = compose("train", overrides=[f"hparams_search={name}"], return_hydra_config=True)
        assert sweep.hydra.sweeper._target_.endswith("TabxferOptunaSweeper")
        dists, fixed = parse_space(sweep.hydra.sweeper.params)
        assert len(dists) >= 3
        pick = {
            k: (
                d.choices[0 if end == "low" else -1]
                if isinstance(d, CategoricalDistribution)
                else getattr(d, end)
            )
            for k, d in dists.items()
        }
        overrides = [f"{k}={v}" for k, v in fixed.items()] + [as_override(k, v) for k, v in pick.items()]
        cfg = compose("train", overrides=[f"hparams_search={name}", *overrides])
        groups = {k: compose("train", overrides=[f"{k}={v}"])[k] for k, v in pick.items() if k == "finetune"}
    for key, value in pick.items():
        got = OmegaConf.select(cfg, key.lstrip("+"))
        if isinstance(got, str | int | float) and not isinstance(value, str):
            assert got == pytest.approx(value), key
        elif key in groups:  # a config-group option: its schedule, not merged with another's
            assert cfg[key].unfreeze == groups[key].unfreeze and cfg[key].strategy == groups[key].strategy
        else:
            assert got is not None, key


def test_storage_urls_and_redaction(tmp_path):
    assert (
        st.redact("postgresql://me:s3cret@db.example:5432/optuna")
        == "postgresql://me:***@db.example:5432/optuna"
    )
    assert st.redact("sqlite:///x.db") == "sqlite:///x.db"
    journal = st.storage(f"journal:{tmp_path}/j/study.log")
    s = optuna.create_study(storage=journal, study_name="j")
    s.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert (tmp_path / "j" / "study.log").stat().st_size > 0
    with pytest.raises(ValueError, match="not a storage URL"):
        st.storage("optuna.db")


@pytest.mark.parametrize("where", ["command line", "config file"])
def test_trial_configs_never_hold_the_storage_password(tmp_path, monkeypatch, where):
    """Hydra saves each trial's ``.hydra/hydra.yaml`` before the trial starts: the config the launcher
    recomposes it from (its hydra overrides re-applied) must hold the storage URL masked, wherever the
    password came from, while the sweeper keeps the real URL."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from tabxfer.sweep.sweeper import mask_storage

    url = "postgresql+psycopg://tabxfer:hunter2secret@db:5432/optuna"
    search = create_config_search_path(str(CONFIGS))
    task, overrides = ["hparams_search=mlp"], ["hparams_search=mlp", "hydra.sweeper.n_trials=3"]
    if where == "command line":
        overrides.append(f"hydra.sweeper.storage='{url}'")
    else:  # an experiment file that names the storage
        exp = tmp_path / "experiment"
        exp.mkdir()
        (exp / "pw.yaml").write_text(f"# @package _global_\nhydra:\n  sweeper:\n    storage: {url}\n")
        search.prepend("test", f"file://{tmp_path}")
        task.append("experiment=pw")
        overrides.append("experiment=pw")
    loader = ConfigLoaderImpl(config_search_path=search)
    master = loader.load_configuration("train", overrides=overrides, run_mode=RunMode.MULTIRUN)
    assert master.hydra.sweeper.storage == url  # what the sweeper is built with, before setup masks
    mask_storage(master)
    trial = loader.load_sweep_config(master, [*task, "model.d_block=64"])  # as the launcher does
    saved = OmegaConf.to_yaml(trial.hydra) + OmegaConf.to_yaml(master.hydra)
    assert "hunter2secret" not in saved
    assert trial.hydra.sweeper.storage == "postgresql+psycopg://tabxfer:***@db:5432/optuna"
    assert trial.model.d_block == 64 and trial.hydra.sweeper.n_trials == 3  # the rest is untouched

    monkeypatch.setenv("TABXFER_SWEEP_STORAGE", url)  # the advised habit: the saved config holds no secret
    env = "hydra.sweeper.storage=${oc.env:TABXFER_SWEEP_STORAGE}"
    master = loader.load_configuration("train", overrides=[*overrides[:2], env], run_mode=RunMode.MULTIRUN)
    mask_storage(master)
    node = OmegaConf.to_container(master.hydra.sweeper, resolve=False)
    assert isinstance(node, dict) and node["storage"] == "${oc.env:TABXFER_SWEEP_STORAGE}"


def test_orphaned_trials_are_failed_and_requeued(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    study = optuna.create_study(storage=st.storage(url), study_name="o")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    orphan = study.ask({"x": FloatDistribution(0, 1)})
    orphan.set_user_attr(st.WORKER_ATTR, f"{st.worker_id().split(':')[0]}:{dead.stdout.strip()}:1")
    alive = study.ask({"x": FloatDistribution(0, 1)})
    alive.set_user_attr(st.WORKER_ATTR, st.worker_id())  # this process: not an orphan
    remote = study.ask({"x": FloatDistribution(0, 1)})
    remote.set_user_attr(st.WORKER_ATTR, "another-host:1:1")  # left to the RDB heartbeat

    assert st.fail_orphans(study) == [orphan.number]
    states = {t.number: t.state for t in study.get_trials()}
    assert states[orphan.number] == TrialState.FAIL
    assert states[alive.number] == states[remote.number] == TrialState.RUNNING
    (queued,) = study.get_trials(states=(TrialState.WAITING,))
    assert queued.system_attrs["fixed_params"] == orphan.params  # the retry samples the same values
    assert queued.user_attrs[st.RETRY_ATTR] == orphan.number
    assert st.fail_orphans(study) == []  # idempotent


def test_best_experiment_is_a_composable_experiment(tmp_path):
    from hydra import compose, initialize_config_dir

    run = tmp_path / "trial_3"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump(
            [
                "hparams_search=mlp",
                "data=synthetic",
                "trainer.max_epochs=3",
                "model.d_block=128",
                "optimizer.lr=0.003",
                "+model.extra=1",
            ]
        )
    )
    choices = {
        "model": "mlp",
        "data": "synthetic",
        "trainer": "cpu",
        "hparams_search": "mlp",
        "hydra/sweeper": "tabxfer_optuna",
    }
    (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    study = optuna.create_study(study_name="s")
    trial = optuna.trial.create_trial(
        value=0.41, params={}, distributions={}, user_attrs={"output_dir": str(run)}
    )
    study.add_trial(trial)
    text = st.best_experiment(
        study.best_trial,
        study_name="s",
        default_choices={"model": "tabnet", "data": "synthetic", "trainer": "cpu"},
    )
    body = yaml.safe_load(text)
    assert body["defaults"] == [{"override /model": "mlp"}, "_self_"]
    assert body["model"] == {"d_block": 128, "extra": 1} and body["optimizer"] == {"lr": 0.003}
    extra = tmp_path / "extra_configs"
    (extra / "experiment").mkdir(parents=True)
    (extra / "experiment" / "best_s.yaml").write_text(text)
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra.searchpath=[file://{extra}]", "experiment=best_s"])
    assert cfg.model._target_.endswith("MLP") and cfg.model.d_block == 128 and cfg.trainer.max_epochs == 3
    assert cfg.optimizer.lr == 0.003
