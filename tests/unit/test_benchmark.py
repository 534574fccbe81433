"""benchmark_models: the documented result, speed-ups against the first model, parameters, FLOPs and file sizes
that follow the architecture, real-length cases, the onnxruntime backend, and bad input."""

from __future__ import annotations

import sys

import pytest
import torch

from prunecli.config import DataConfig
from prunecli.errors import UserError
from prunecli.inference import onnx as onnx_mod
from prunecli.inference.benchmark import SCHEMA, Timing, benchmark_models, parse_batch_sizes
from prunecli.inference.timing import summarize, time_round
from tests.helpers import make_tiny_bert, sentiment_rows, write_rows

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = Timing(warmup=1, min_runs=2, min_time=0.0, max_time=5.0)
MODEL_KEYS = {"path", "label", "architecture", "model_type", "params", "nonzero_params", "flops_per_example",
              "encoder_flops_per_example", "flops_attention", "flops_sequence_length", "file_bytes", "file_mb",
              "weight_files", "new_head", "task", "onnx", "data", "cases", "format", "precision"}
FIGURE_KEYS = {"median_ms", "p90_ms", "mean_ms", "min_ms", "examples_per_s", "runs", "examples", "total_s",
               "capped", "rounds", "speedup"}


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_bert_dir):
    """(dense, narrow): the 2-layer tiny BERT (intermediate 64) and one with intermediate_size 16."""
    narrow = make_tiny_bert(tmp_path_factory.mktemp("narrow") / "narrow", intermediate_size=16)
    return tiny_bert_dir, narrow


def _bert_encoder_flops(layers: int, hidden: int, intermediate: int, length: int, width: int | None = None) -> int:
    """Matmul FLOPs (2*m*n*k) of BERT's encoder for one example: Q, K, V and output projections (attention
    `width` = heads x head size, default `hidden`), FFN in and out, QK^T and AV."""
    width = hidden if width is None else width
    linear = 2 * length * (4 * hidden * width + 2 * hidden * intermediate)
    attention = 2 * 2 * length * length * width
    return layers * (linear + attention)


def test_result_has_the_documented_keys_and_positive_latencies(models):
    threads = torch.get_num_threads()
    result = benchmark_models(models, batch_sizes=[1, 4], sequence_length=16, backends="pytorch", timing=FAST)
    assert torch.get_num_threads() == threads  # restored
    assert result["schema"] == SCHEMA and result["backends"] == ["pytorch"]
    assert set(result) == {"schema", "models", "cases", "backends", "settings", "machine", "notes"}
    assert list(result["cases"]) == ["b1 s16", "b4 s16"]
    assert result["cases"]["b4 s16"] == {"batch_size": 4, "inputs": "random", "sequence_length": 16}
    assert result["settings"]["batch_sizes"] == [1, 4] and result["settings"]["sequence_length"] == 16
    assert result["machine"]["torch_threads"] == threads and result["machine"]["cpu_count"] >= 1
    assert result["machine"]["versions"]["torch"] == torch.__version__
    assert [m["label"] for m in result["models"]] == [models[0].name, "narrow"]
    for model in result["models"]:
        assert set(model) == MODEL_KEYS
        assert model["onnx"] is None and model["data"] is None
        for case in result["cases"]:
            figures = model["cases"][case]["pytorch"]
            assert set(figures) == FIGURE_KEYS
            assert 0 < figures["min_ms"] <= figures["median_ms"] <= figures["p90_ms"]
            assert figures["examples_per_s"] > 0 and figures["runs"] >= 2 and not figures["capped"]
            assert figures["examples"] == figures["runs"] * result["cases"][case]["batch_size"]
    first, second = result["models"]
    assert all(first["cases"][c]["pytorch"]["speedup"] == 1.0 for c in result["cases"])
    for case in result["cases"]:
        s = second["cases"][case]["pytorch"]
        assert s["speedup"] == pytest.approx(first["cases"][case]["pytorch"]["median_ms"] / s["median_ms"])


def test_smaller_model_has_fewer_params_and_flops_and_the_file_size_is_the_checkpoints(models):
    from transformers import AutoModelForSequenceClassification

    result = benchmark_models(models, batch_sizes=[1], sequence_length=16, backends="pytorch", timing=FAST)
    dense, narrow = result["models"]
    for folder, facts in zip(models, result["models"], strict=True):
        reference = AutoModelForSequenceClassification.from_pretrained(folder)
        assert facts["params"] == reference.num_parameters()
        weights = folder / "model.safetensors"
        assert facts["weight_files"] == ["model.safetensors"]
        assert facts["file_bytes"] == weights.stat().st_size
        assert facts["file_mb"] == round(weights.stat().st_size / 1e6, 3)
    assert narrow["params"] < dense["params"] and narrow["file_bytes"] < dense["file_bytes"]
    assert narrow["flops_per_example"] < dense["flops_per_example"]
    # Exact matmul counts, attention included (counted with eager attention); the head adds the pooler + classifier.
    assert dense["flops_attention"] == "eager" and dense["flops_sequence_length"] == 16
    assert dense["encoder_flops_per_example"] == _bert_encoder_flops(2, 32, 64, 16)
    assert narrow["encoder_flops_per_example"] == _bert_encoder_flops(2, 32, 16, 16)
    assert dense["flops_per_example"] == dense["encoder_flops_per_example"] + 2 * 32 * 32 + 2 * 32 * 2


def test_a_compacted_checkpoint_with_per_layer_sizes_is_measured(models, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from prunecli.models.architectures import compact_config, register_models
    from tests.helpers import tiny_bert_config, write_tokenizer

    sizes = [{"num_attention_heads": 1, "intermediate_size": 8}, {"num_attention_heads": 2, "intermediate_size": 24}]
    config = compact_config(tiny_bert_config(), sizes)  # prunecli-bert: heads of 16 dims, per-layer neurons
    torch.manual_seed(0)
    folder = tmp_path / "checkpoint"  # a generic folder name: the label gets its parent's name too
    register_models("bert")
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    write_tokenizer(folder)
    result = benchmark_models([models[0], folder], batch_sizes=[2], sequence_length=16, backends="pytorch",
                              timing=FAST)
    compact = result["models"][1]
    assert compact["model_type"] == "prunecli-bert" and compact["label"] == f"{tmp_path.name}/checkpoint"
    expected = _bert_encoder_flops(1, 32, 8, 16, width=16) + _bert_encoder_flops(1, 32, 24, 16, width=32)
    assert compact["encoder_flops_per_example"] == expected
    assert compact["params"] < result["models"][0]["params"]
    assert compact["cases"]["b2 s16"]["pytorch"]["median_ms"] > 0


def test_real_length_cases_use_the_dataset_examples(models, tmp_path):
    dev = write_rows(tmp_path / "dev.csv", sentiment_rows(40, seed=5))
    result = benchmark_models(models[:1], batch_sizes=[1, 8], sequence_length=16, backends="pytorch",
                              data=DataConfig(validation_file=str(dev)), data_examples=24, timing=FAST)
    assert list(result["cases"]) == ["b1 s16", "b8 s16", "b1 data", "b8 data"]
    assert result["cases"]["b8 data"] == {"batch_size": 8, "inputs": "data", "sequence_length": None}
    facts = result["models"][0]
    assert facts["data"]["examples"] == 24 and facts["data"]["split"] == "validation"
    assert 2 < facts["data"]["mean_length"] <= facts["data"]["max_length"] < 16
    assert result["settings"]["data"]["examples"] == 24
    b8, b1 = facts["cases"]["b8 data"]["pytorch"], facts["cases"]["b1 data"]["pytorch"]
    assert b8["runs"] >= 3 and b8["examples"] == 8 * b8["runs"]  # each of the 3 batches at least once
    assert b1["runs"] >= 24  # one run per example


def test_onnxruntime_backend_times_the_exported_models(models, monkeypatch):
    def no_dynamo(*args, **kwargs):  # the TorchScript exporter takes ~1 s here, the dynamo one ~15 s per model
        raise RuntimeError("skip the slow exporter in this test")

    monkeypatch.setattr(onnx_mod, "_export_dynamo", no_dynamo)
    result = benchmark_models(models, batch_sizes=[2], sequence_length=16, backends=None, threads=1, timing=FAST)
    assert result["backends"] == ["pytorch", "onnxruntime"]
    assert result["machine"]["ort_intra_op_threads"] == 1 and result["machine"]["torch_threads"] == 1
    for model in result["models"]:
        assert model["onnx"]["exporter"] == "torchscript" and model["onnx"]["max_abs_diff"] <= 1e-4
        figures = model["cases"]["b2 s16"]["onnxruntime"]
        assert figures["median_ms"] > 0 and figures["examples_per_s"] > 0
    assert result["models"][0]["cases"]["b2 s16"]["onnxruntime"]["speedup"] == 1.0


def test_without_onnxruntime_the_ort_columns_are_skipped_with_a_note(models, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = benchmark_models(models[:1], batch_sizes=[1], sequence_length=8, timing=FAST)
    assert result["backends"] == ["pytorch"]
    assert any("onnxruntime is not installed" in n and "prunecli[onnx]" in n for n in result["notes"])
    with pytest.raises(UserError) as err:
        benchmark_models(models[:1], backends="onnxruntime", timing=FAST)
    assert "prunecli[onnx]" in err.value.hint


def test_bad_input_is_a_user_error(models, tmp_path):
    for text in ("1,x", "0", "", "1,-2", "2.5"):
        with pytest.raises(UserError, match="batch size"):
            parse_batch_sizes(text)
    assert parse_batch_sizes("32, 1,32") == [32, 1]
    with pytest.raises(UserError, match="no models"):
        benchmark_models([])
    with pytest.raises(UserError) as err:
        benchmark_models(models[:1], sequence_length=128, backends="pytorch", timing=FAST)  # 64 positions
    assert "64" in err.value.message and "--sequence_length" in err.value.hint
    with pytest.raises(UserError) as err:
        benchmark_models([str(tmp_path / "missing")], backends="pytorch", timing=FAST)
    assert err.value.hint
    with pytest.raises(UserError, match="backend"):
        benchmark_models(models[:1], backends="tensorrt", timing=FAST)


def test_timing_stops_at_the_cap_and_counts_every_batch():
    calls = []
    def time_calls(call, batches, timing, sizes):  # one round, summarised: what a one-round benchmark does
        return summarize([time_round(call, batches, timing, sizes)])

    result = time_calls(calls.append, ["a", "b", "c"], Timing(warmup=2, min_runs=1, min_time=0.0), [1, 2, 3])
    assert calls[:2] == ["a", "b"] and result["runs"] == 3 and result["examples"] == 6  # every batch once
    capped = time_calls(lambda _: None, [0], Timing(warmup=0, min_runs=10**9, min_time=0.0, max_time=0.05), [1])
    assert capped["capped"] and capped["runs"] >= 1
    few = time_calls(lambda _: None, [0], Timing(warmup=0, min_runs=10**9, min_time=0.0, max_runs=7), [1])
    assert few["capped"] and few["runs"] == 7


def test_rounds_alternate_the_models_and_share_the_runs(models, monkeypatch):
    from prunecli.inference import benchmark as bm

    order = []
    real = bm._measure

    def spy(entry, case, backend, timing, index):
        order.append((entry.facts["label"], index))
        return real(entry, case, backend, timing, index)

    monkeypatch.setattr(bm, "_measure", spy)
    timing = Timing(warmup=1, min_runs=6, min_time=0.0, rounds=3)
    result = benchmark_models(list(models), batch_sizes=[1], backends="pytorch", sequence_length=16, timing=timing)
    labels = [m["label"] for m in result["models"]]
    assert order == [(label, r) for r in range(3) for label in labels]  # A B, A B, A B
    for model in result["models"]:
        assert model["cases"]["b1 s16"]["pytorch"]["runs"] == 6 and model["cases"]["b1 s16"]["pytorch"]["rounds"] == 3
    assert timing.round(0).warmup == 1 and timing.round(2).min_runs == 2 and timing.round(1).rounds == 1
    merged = bm.summarize([{"times": [0.1, 0.3], "examples": 4, "capped": False},
                           {"times": [0.2], "examples": 2, "capped": True}])
    assert merged["runs"] == 3 and merged["median_ms"] == pytest.approx(200) and merged["capped"]
    assert merged["examples_per_s"] == pytest.approx(6 / 0.6) and merged["rounds"] == 2
    with pytest.raises(UserError, match="rounds"):
        Timing(rounds=0).check()
    with pytest.raises(UserError, match="max time"):
        Timing(max_time=0).check()


def test_data_rounds_time_whole_passes_of_their_share_of_the_batches():
    from prunecli.inference.timing import time_round

    calls = []
    raw = time_round(calls.append, ["a", "b", "c"], Timing(warmup=0, min_runs=4, min_time=0.0), [1, 1, 1])
    assert len(raw["times"]) == 6 and calls == ["a", "b", "c"] * 2  # 4 runs asked, whole passes given
