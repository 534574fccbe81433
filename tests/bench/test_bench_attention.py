"""bench/bench_attention.py on a tiny model: sdpa and eager exports, each quantized, timed in one process.

Slow (two dynamo exports and two quantizations): opt in with --runslow or PRUNECLI_SLOW=1."""

from __future__ import annotations

import json

import pytest

from bench import bench_attention
from tests.helpers import make_tiny_bert

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow
def test_bench_attention_exports_both_attentions_and_times_them(tmp_path):
    model = make_tiny_bert(tmp_path / "tiny", num_hidden_layers=1)
    out = tmp_path / "attention.json"
    result = bench_attention.main([str(model), "--rounds", "1", "--work", str(tmp_path / "work"),
                                   "--output", str(out)])
    assert json.loads(out.read_text()) == result
    entry = result["models"][str(model)]
    assert entry["nodes"]["eager"]["IsNaN"] == 0 and entry["nodes"]["sdpa"]["IsNaN"] > 0
    case = entry["cases"]["b32 s64"]
    assert set(case["median_ms"]) == {"sdpa fp32", "sdpa int8", "eager fp32", "eager int8"}
    assert case["int8_gain"]["eager"] == pytest.approx(case["median_ms"]["eager fp32"]
                                                       / case["median_ms"]["eager int8"])
    assert sorted(p.name for p in (tmp_path / "work" / "m0").iterdir()) == [
        "eager-fp32.onnx", "eager-int8.onnx", "sdpa-fp32.onnx", "sdpa-int8.onnx"]
