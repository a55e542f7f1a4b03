"""scripts/bench_inference.py end to end on a tiny synthetic run: every runtime timed, the speed-ups and
their spread over the rounds in the JSON and the table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_inference_times_every_runtime(tmp_path):
    out = tmp_path / "bench"
    args = [
        "--models",
        "mlp",
        "--data",
        "synthetic",
        "--train-rows",
        "2000",
        "--epochs",
        "1",
        "--rows",
        "500",
    ]
    args += ["--latency-runs", "5", "--throughput-runs", "2", "--rounds", "3", "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_inference.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    payload = json.loads((out / "bench_inference.json").read_text())
    # the script re-ran itself with the allocator settings (torch timed without page faults)
    assert payload["glibc_tunables"] and "mmap_threshold" in payload["glibc_tunables"]
    (res,) = payload["results"]
    runtimes = [
        "torch_eager_fp32",
        "torch_eager_raw_fp32",
        "onnx_none",
        "onnx_dynamic-int8",
        "onnx_static-int8",
    ]
    for name in runtimes:
        v = res[name]
        assert len(v["rows_per_s_b4096_rounds"]) == 3 and v["rows_per_s_b4096"] == max(
            v["rows_per_s_b4096_rounds"]
        )
        lo, hi = v["x_torch_eager_fp32_iqr"]
        assert 0 < lo <= v["x_torch_eager_fp32"] <= hi, (name, lo, v["x_torch_eager_fp32"], hi)
        assert 0 < v["p50_ms_b1"] <= v["p99_ms_b1"]
    assert res["torch_eager_fp32"]["x_torch_eager_fp32"] == 1.0
    assert res["onnx_dynamic-int8"]["bytes"] < res["onnx_none"]["bytes"]
    assert abs(res["onnx_none"]["rmsle_delta"]) < 1e-4
    table = proc.stdout[proc.stdout.rindex("x torch") :]
    assert "(IQR)" in proc.stdout and all(name in table for name in runtimes)
