"""Model monitoring: ``tabxfer drift`` compares new trips with the data a model was trained on.

    stats.py       PSI on reference-quantile bins and over pooled categories, two-sample KS
    profile.py     the reference as numbers (bins, counts, samples, slice RMSLE); ``reference_profile.json``
    reference.py   a run / checkpoint / ONNX artifact -> spec, predictor and profile
    inputs.py      new trips of any supported format through the loaders (drops counted)
    drift.py       thresholds, comparison, verdict and exit code; ``run_drift`` (the command)
    report.py      ``drift_report.md``, ``drift.json`` and the figures, written atomically

Nothing is imported here: ``tabxfer export`` imports the profile code, and the command imports the rest
(matplotlib, scipy) only when it runs.
"""
