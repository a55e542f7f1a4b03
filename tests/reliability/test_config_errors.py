"""Config mistakes fail fast, naming the key: Hydra rejects unknown groups and keys at composition;
:func:`tabxfer.config.validate` catches the rest (``+`` keys, wrong types, unknown choices, ``???``) in the
composed config, before any data is prepared or any model built. Every config the repo ships validates."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, MissingConfigException

from tabxfer.config import ConfigError, validate

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"


def options(group: str, recursive: bool = False) -> list[str]:
    files = (CONFIGS / group).rglob("*.yaml") if recursive else (CONFIGS / group).glob("*.yaml")
    names = (str(p.relative_to(CONFIGS / group).with_suffix("")) for p in files)
    return sorted(n for n in names if not Path(n).name.startswith("_"))


def run_config(tmp_path: Path, *overrides: str):
    """The composed run config, with Hydra's runtime set as ``python train.py`` has it."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[f"paths.output_dir={tmp_path}", *overrides],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)  # ${hydra:runtime.choices.model} in the W&B logger's name
    return cfg


def problems(tmp_path: Path, *overrides: str) -> list[str]:
    try:
        validate(run_config(tmp_path, *overrides))
    except ConfigError as e:
        assert str(e).count("\n") == len(e.problems)  # the message lists every problem, one a line
        return e.problems
    return []


# (overrides, what the one problem's line must say: the dotted key, what was expected, a suggestion)
MISTAKES = [
    (
        ["+trainer.max_epoch=3"],
        r"^trainer\.max_epoch: unknown key .*\(set to 3\); did you mean trainer\.max_epochs\?$",
    ),
    (["+optimizer.lrr=1"], r"^optimizer\.lrr: unknown key \(set to 1\); did you mean optimizer\.lr\?$"),
    (
        ["+datamodule.batchsize=4"],
        r"^datamodule\.batchsize: unknown key .*did you mean datamodule\.batch_size\?$",
    ),
    (
        ["model=tft", "+model.d_modell=8"],
        r"^model\.d_modell: unknown key for tabxfer\.models\.tft\.TFT .*did you mean model\.d_model\?$",
    ),
    (
        ["model=mlp", "+model.n_steps=3"],
        r"^model\.n_steps: unknown key for tabxfer\.models\.mlp\.MLP .*valid keys: .*d_block.*n_blocks",
    ),
    (["+seed_=1"], r"^seed_: unknown key \(set to 1\); did you mean seed\?$"),
    (
        ["+data.split.val_frac=0.2"],
        r"^data\.split\.val_frac: unknown key .*valid keys: column, kind, seed, test, val$",
    ),
    (
        ["+callbacks.early_stopping.patiense=3"],
        r"^callbacks\.early_stopping\.patiense: unknown key for .*EarlyStopping.*did you mean callbacks\.early_stopping\.patience\?$",
    ),
    (["trainer.max_epochs=abc"], r"^trainer\.max_epochs: expected an int or null, got 'abc' \(str\)$"),
    (["trainer.max_epochs=2.0"], r"^trainer\.max_epochs: expected an int or null, got 2\.0 \(float\)$"),
    (["trainer.max_epochs=true"], r"^trainer\.max_epochs: expected an int or null, got True \(bool\)$"),
    (["datamodule.batch_size=1.5"], r"^datamodule\.batch_size: expected an int >= 1, got 1\.5 \(float\)$"),
    (["datamodule.batch_size=0"], r"^datamodule\.batch_size: expected an int >= 1, got 0 \(int\)$"),
    (["optimizer.lr=fast"], r"^optimizer\.lr: expected a float > 0, got 'fast' \(str\)$"),
    (
        ["optimizer.lr='1e-3'"],
        r"^optimizer\.lr: expected a float > 0, got '1e-3' \(str\)$",
    ),  # quoted: a string
    (["optimizer.betas=[0.9]"], r"^optimizer\.betas: expected a list of 2 .*got 1 item\(s\): \[0\.9\]$"),
    (["model=tft", "model.d_model=abc"], r"^model\.d_model: expected an int, got 'abc' \(str\)$"),
    (["model=tabnet", "model.mask_type=3"], r"^model\.mask_type: expected a string, got 3 \(int\)$"),
    (["model=tabnet", "model.d_embed=[4,x]"], r"^model\.d_embed\[1\]: expected an int, got 'x' \(str\)$"),
    (["seed=xyz"], r"^seed: expected an int or null, got 'xyz' \(str\)$"),
    (
        ["scheduler.name=linear"],
        r"^scheduler\.name: expected one of 'cosine', 'constant', got 'linear' \(str\)",
    ),
    (
        ["scheduler.name=cosin"],
        r"^scheduler\.name: expected one of 'cosine', 'constant'.*did you mean 'cosine'\?$",
    ),
    (
        ["trainer.precision=fp16"],
        r"^trainer\.precision: expected one of 64, 32, 16, .*'bf16-mixed'.* or null, got 'fp16' \(str\); did you mean",
    ),
    (
        ["callbacks.lr_monitor.logging_interval=epochs"],
        r"^callbacks\.lr_monitor\.logging_interval: expected one of 'step', 'epoch' or null.*did you mean 'epoch'\?$",
    ),
    (["data.split.val=2"], r"^data\.split\.val: expected a float >= 0 and < 1, got 2 \(int\)$"),
    (
        ["data.split.kind=weekly"],
        r"^data\.split\.kind: expected one of 'random', 'time', 'column', got 'weekly'",
    ),
    (
        ["data.split.val=0.6", "data.split.test=0.5"],
        r"^data\.split: need .*val \+ test < 1",
    ),  # SplitConfig's own check
    (["data.features.min_count=0.5"], r"^data\.features\.min_count: expected an int, got 0\.5 \(float\)$"),
    (
        ["data.features.categorical=vendor"],
        r"^data\.features\.categorical: expected a list of a string, got 'vendor' \(str\)$",
    ),
    (["data.sources.nyc.n=many"], r"^data\.sources\.nyc\.n: expected an int, got 'many' \(str\)$"),
    (
        ["+data.weights.nyk=1.0"],
        r"^data\.weights\.nyk: not a source of data\.sources \(set to 1\.0\); did you mean data\.weights\.nyc\?$",
    ),
    (
        ["data=mobility", "data.weights.oldtown=-1"],
        r"^data\.weights\.oldtown: expected a float >= 0, got -1 \(int\)$",
    ),
    (
        ["finetune.freeze=[nosuchpart]"],
        r"^finetune\.freeze\[0\]: expected one of 'embed', 'backbone', 'head', got 'nosuchpart' \(str\)$",
    ),
    (["finetune.freeze=[backbon]"], r"^finetune\.freeze\[0\]: expected one of .*did you mean 'backbone'\?$"),
    (
        ["+finetune.lr_mult.embd=0.1"],
        r"^finetune\.lr_mult\.embd \(the key\): expected one of 'embed', 'backbone', 'head'.*did you mean 'embed'\?$",
    ),
    (
        ["finetune=gradual", "finetune.freeze=[embed]"],
        r"^finetune: finetune\.unfreeze thaws \['backbone'\], which are not frozen$",
    ),
    (["objective.supervised=0"], r"^objective: objective weights .* must be >= 0 with at least one > 0$"),
    (["objective.mask_rate=high"], r"^objective\.mask_rate: expected a float, got 'high' \(str\)$"),
    (
        ["report.export_onnx=int3"],
        r"^report\.export_onnx: unknown quantization \['int3'\]; choose from .*dynamic-int8",
    ),
    (
        ["report.enabled=yes please"],
        r"^report\.enabled: expected a bool \(true/false\), got 'yes please' \(str\)$",
    ),
    (
        ["paths.cache_dir=???"],
        r"^paths\.cache_dir: missing value \(\?\?\?\); set it: paths\.cache_dir=<value>$",
    ),
    (["trainer.max_epochs=???"], r"^trainer\.max_epochs: missing value \(\?\?\?\)"),
    (["init_from=${paths.nosuch}"], r"^init_from: \$\{paths\.nosuch\} does not resolve: .*nosuch"),
    (
        ["model._target_=tabxfer.models.mlp.MPL"],
        r"^model\._target_: cannot import 'tabxfer\.models\.mlp\.MPL'.*did you mean tabxfer\.models\.mlp\.MLP\?$",
    ),
    (
        ["model._target_=nosuchpackage.Model"],
        r"^model\._target_: cannot import 'nosuchpackage\.Model': No module named 'nosuchpackage'$",
    ),
    (
        ["~callbacks.early_stopping.monitor"],
        r"^callbacks\.early_stopping\.monitor: required by pytorch_lightning\.callbacks\.EarlyStopping, not set$",
    ),
    (["~optimizer"], r"^optimizer: required, not set$"),
    (["datamodule=8"], r"^datamodule: expected a config node \(a mapping\), got 8"),
]


@pytest.mark.parametrize(("overrides", "pattern"), MISTAKES, ids=[" ".join(o) for o, _ in MISTAKES])
def test_a_mistake_is_named(tmp_path, overrides, pattern):
    found = problems(tmp_path, *overrides)
    assert len(found) == 1, found  # this mistake, and nothing in the rest of the config
    assert re.search(pattern, found[0]), found[0]


# Right values that a stricter or sloppier check would get wrong.
FINE = [
    ["optimizer.lr=1"],  # an int where a float goes
    ["optimizer.lr=1e-3", "optimizer.weight_decay=0"],  # 1e-3 from an override (a float; YAML's 1e-5 too)
    [
        "trainer.precision=16",
        "trainer.devices=[0]",
        "trainer.deterministic=warn",
        "+trainer.max_time=00:01:00",
    ],
    ["+trainer.limit_train_batches=0.5", "+trainer.limit_val_batches=3", "+trainer.val_check_interval=0.25"],
    ["seed=null", "ckpt_path=auto", "datamodule.train_limit=1000", "datamodule.chunk_rows=null"],
    ["model=tabnet", "model.d_embed=[4,4,8]", "model.mask_type=entmax", "model._lr=0.02"],
    ["model=lightgbm", "+model.lambda_l2=1.0", "+model.seed=3"],  # LightGBM takes **params
    ["logger=wandb", "+logger.wandb.job_type=train"],  # WandbLogger takes **kwargs
    ["data=mobility", "data.weights.oldtown=0"],
    ["finetune=gradual", "finetune.lr_mult.head=2"],
    ["report.export_onnx='none,dynamic-int8'"],
    ["data.split.kind=time", "data.split.val=0"],
]


@pytest.mark.parametrize("overrides", FINE, ids=[" ".join(o) for o in FINE])
def test_right_values_pass(tmp_path, overrides):
    assert problems(tmp_path, *overrides) == []


def test_every_problem_is_listed_at_once(tmp_path):
    found = problems(
        tmp_path, "model=tft", "+model.d_modell=8", "seed=xyz", "scheduler.name=linear", "paths.cache_dir=???"
    )
    keys = sorted(p.split(":")[0] for p in found)
    assert keys == ["model.d_modell", "paths.cache_dir", "scheduler.name", "seed"]


# What Hydra itself rejects while composing (no `+`): the key or group is named there already.
HYDRA_REJECTS = [
    (["trainer.max_epoch=3"], ConfigCompositionException, r"trainer\.max_epoch"),
    (["optimizer.lrr=1"], ConfigCompositionException, r"optimizer\.lrr"),
    (["datamodule.batchsize=4"], ConfigCompositionException, r"datamodule\.batchsize"),
    (["model=mlp", "model.n_steps=3"], ConfigCompositionException, r"model\.n_steps"),
    (["data.split.val_frac=2"], ConfigCompositionException, r"data\.split\.val_frac"),
    (
        ["model=nosuch"],
        MissingConfigException,
        r"model/nosuch(.|\n)*Available options in 'model'(.|\n)*\bmlp\b",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "error", "pattern"), HYDRA_REJECTS, ids=[" ".join(o) for o, _, _ in HYDRA_REJECTS]
)
def test_hydra_rejects_at_composition(tmp_path, overrides, error, pattern):
    with pytest.raises(error) as e:
        run_config(tmp_path, *overrides)
    assert re.search(pattern, f"{e.value}\n{e.value.__cause__}"), str(e.value)


# --- every config the repo ships validates -----------------------------------------------------------------

SHIPPED = [
    *([f"model={m}", f"data={d}"] for m in options("model") for d in options("data")),
    *([f"experiment={e}"] for e in options("experiment", recursive=True)),
    *([f"hparams_search={h}"] for h in options("hparams_search")),
    *(
        [f"{g}={o}"]
        for g in ("objective", "finetune", "trainer", "logger", "callbacks", "debug")
        for o in options(g)
    ),
]


@pytest.mark.parametrize("overrides", SHIPPED, ids=[" ".join(o) for o in SHIPPED])
def test_shipped_configs_validate(tmp_path, overrides):
    assert problems(tmp_path, *overrides) == []


@pytest.mark.parametrize("name", options("hparams_search"))
def test_search_spaces_validate_at_their_bounds(tmp_path, name):
    """Each Optuna space's lowest and highest values (categorical: first and last choice) validate."""
    from optuna.distributions import CategoricalDistribution

    from tabxfer.sweep.space import as_override, parse_space

    space = run_config(tmp_path, f"hparams_search={name}").hydra.sweeper.params
    dists, fixed = parse_space(space)
    for end, i in (("low", 0), ("high", -1)):
        pick = {
            k: d.choices[i] if isinstance(d, CategoricalDistribution) else getattr(d, end)
            for k, d in dists.items()
        }
        overrides = [f"{k}={v}" for k, v in fixed.items()] + [as_override(k, v) for k, v in pick.items()]
        assert problems(tmp_path, f"hparams_search={name}", *overrides) == [], (end, overrides)


@pytest.mark.parametrize("model", options("model"))
def test_the_tests_tiny_run_config_validates(tmp_path, model):
    """The config the run tests train with (composed without Hydra's runtime) validates for every model."""
    from factories import tiny_run_config

    validate(tiny_run_config(tmp_path, model, f"model={model}"))


# --- end to end -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_train_py_stops_at_a_misspelled_key_before_any_work(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env |= {"TABXFER_CACHE_DIR": str(tmp_path / "cache"), "WANDB_MODE": "offline"}
    cmd = [sys.executable, "train.py", "trainer.max_epoch=1", f"paths.log_dir={tmp_path / 'logs'}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "trainer.max_epoch" in proc.stderr, proc.stderr
    assert not (tmp_path / "cache").exists() and not (tmp_path / "logs").exists()  # no data, no run folder


def test_run_validates_before_preparing_data(tmp_path, monkeypatch):
    import tabxfer.train as train

    def prepare(*args, **kwargs):
        raise AssertionError("data were prepared before the config was validated")

    monkeypatch.setattr(train, "dataset_cache", prepare)
    cfg = run_config(tmp_path / "run", "model=mlp", "logger=none", "+trainer.max_epoch=1")
    with pytest.raises(ConfigError, match=r"trainer\.max_epoch: .*did you mean trainer\.max_epochs\?"):
        train.run(cfg)
    assert not (tmp_path / "run").exists()
