"""scripts/bench_inference.py end to end on a tiny synthetic run: every runtime timed, the speed-ups and
their spread over the rounds in the JSON and the table; its GPU mode's code on the CPU, and its refusal
without a CUDA device."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "bench_inference.py"
TINY = ["--models", "mlp", "--data", "synthetic", "--train-rows", "2000", "--epochs", "1", "--rows", "500"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path_factory.mktemp("bench")
    proc = _run(*TINY, "--latency-runs", "5", "--throughput-runs", "2", "--rounds", "3", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads((out / "bench_inference.json").read_text())


def test_bench_inference_times_every_runtime(cpu_run):
    proc, payload = cpu_run
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


def test_gpu_mode_code_runs_on_the_cpu(cpu_run, tmp_path, monkeypatch):
    """``bench_model_gpu`` (torch fp32/bf16 and the fp16 artifact, at two batch sizes) with the CPU as
    the device: the code a GPU run takes, checked where no GPU is."""
    _, payload = cpu_run
    spec = importlib.util.spec_from_file_location("bench_inference", SCRIPT)
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(bench, "GPU_BATCHES", (64, 300))  # the real ones: 4096, 65536
    args = argparse.Namespace(rows=500, rounds=2, throughput_runs=1)
    res = bench.bench_model_gpu("mlp", payload["results"][0]["checkpoint"], args, tmp_path, device="cpu")
    assert res["device"] == "cpu" and res["onnx_fp16_session_providers"][0] == "CPUExecutionProvider"
    assert res["onnx_fp16_max_abs_diff_log_vs_cpu"] == 0.0  # the same graph on the same provider
    assert abs(res["fp16_rmsle_delta"]) < 0.05
    for name in ("torch_eager_fp32", "torch_eager_bf16", "onnx_fp16"):
        assert set(res[name]) == {"64", "300"}
        for v in res[name].values():
            assert len(v["rows_per_s_rounds"]) == 2 and v["rows_per_s"] == max(v["rows_per_s_rounds"]) > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_gpu_mode_says_there_is_no_cuda_device(tmp_path):
    proc = _run(*TINY, "--device", "cuda", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "no CUDA device" in proc.stderr and "nothing timed" in proc.stderr
    assert not (tmp_path / "bench_inference_gpu.json").exists()
