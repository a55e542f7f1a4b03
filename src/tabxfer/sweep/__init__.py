"""Hyperparameter sweeps with Optuna 5 under Hydra: ``python train.py -m hparams_search=<name>``.

:mod:`~tabxfer.sweep.space` (search spaces in Hydra's sweep grammar), :mod:`~tabxfer.sweep.study`
(storages, orphaned trials, best config), :mod:`~tabxfer.sweep.sweeper` (the Hydra sweeper plugin),
:mod:`~tabxfer.sweep.trial` (the trial a run belongs to).
"""
