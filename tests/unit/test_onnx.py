"""ONNX export (dynamic axes, one self-contained file, the exporter recorded) and onnxruntime's agreement with
PyTorch on real padded inputs; the pip hint when the optional packages are missing."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from prunecli.errors import UserError
from prunecli.inference import onnx as onnx_mod
from prunecli.inference.onnx import check_onnx, export_onnx, make_session, onnx_metadata, pad_batch
from prunecli.models.loading import load_classifier
from tests.helpers import make_tiny_bert, sentiment_rows

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def one_layer_bert(tmp_path_factory):
    """A one-layer tiny BERT: the dynamo exporter's tracing time grows with the graph (~15 s here for 2 layers)."""
    return make_tiny_bert(tmp_path_factory.mktemp("one_layer"), num_hidden_layers=1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, one_layer_bert):
    """The one-layer BERT exported once with the default (dynamo) exporter: (folder, onnx path)."""
    folder = tmp_path_factory.mktemp("onnx")
    return folder, export_onnx(one_layer_bert, folder / "model.onnx")


@pytest.fixture(scope="module")
def examples(tiny_bert_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    rows = sentiment_rows(6, seed=3)
    encoded = tokenizer([r["sentence"] for r in rows[:3]], [r["sentence"] for r in rows[3:]])  # pairs: token types 0/1
    lengths = {len(ids) for ids in encoded["input_ids"]}
    assert len(lengths) > 1, "the test needs examples of different lengths (padding)"
    return encoded


def _dim_params(value_info) -> list[str]:
    return [d.dim_param for d in value_info.type.tensor_type.shape.dim]


def test_export_writes_one_file_with_dynamic_axes(exported):
    import onnx

    folder, path = exported
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx"]  # nothing else beside it: no external data
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    for value in proto.graph.input:
        assert value.type.tensor_type.elem_type == onnx.TensorProto.INT64
        batch, sequence = _dim_params(value)
        assert batch and sequence, f"{value.name} has a fixed axis"
    assert [o.name for o in proto.graph.output] == ["logits"]
    out_dims = proto.graph.output[0].type.tensor_type.shape.dim
    assert out_dims[0].dim_param and out_dims[1].dim_value == 2
    meta = onnx_metadata(path)
    assert meta["exporter"] == "dynamo" and meta["opset"] == 20
    assert meta["attn_implementation"] == "eager"
    # eager attention: no sdpa mask/NaN-guard passes over the attention scores
    assert not [n.op_type for n in proto.graph.node if n.op_type == "IsNaN"]


def test_onnxruntime_logits_match_pytorch_on_padded_batches(exported, examples, one_layer_bert):
    _, path = exported
    model, _ = load_classifier(one_layer_bert)
    report = check_onnx(model, path, examples, batch_sizes=(1, 3))
    assert report["passed"], report
    assert report["tolerance"] == 1e-4 and 0 <= report["max_abs_diff"] <= 1e-4
    assert report["provider"] == "CPUExecutionProvider"
    cases = report["cases"]
    assert {c["batch_size"] for c in cases} >= {1, 3}
    assert len({c["sequence_length"] for c in cases}) >= 2
    assert any(c["padded"] and c["batch_size"] == 3 for c in cases)

    # Independently of check_onnx: a padded row's logits are those of the same row alone (the mask is honoured).
    session = make_session(path)
    rows = [{k: examples[k][i] for k in ("input_ids", "attention_mask", "token_type_ids")} for i in range(3)]
    names = ["input_ids", "attention_mask", "token_type_ids"]
    batch = pad_batch(rows, names)
    shortest = int(np.argmin(batch["attention_mask"].sum(1)))
    alone = pad_batch([rows[shortest]], names)
    assert batch["input_ids"].shape[1] > alone["input_ids"].shape[1]
    got = session.run(["logits"], batch)[0]
    with torch.inference_mode():
        ref = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    np.testing.assert_allclose(got[shortest], session.run(["logits"], alone)[0][0], atol=1e-5, rtol=0)


def test_falls_back_to_torchscript_and_leaves_the_model_as_it_was(monkeypatch, tmp_path, tiny_bert_dir, examples):
    def broken(*args, **kwargs):
        raise RuntimeError("dynamo cannot trace this model")

    monkeypatch.setattr(onnx_mod, "_export_dynamo", broken)
    model, _ = load_classifier(tiny_bert_dir)
    model.train()
    path = export_onnx(model, tmp_path / "out" / "fallback.onnx", max_length=16)
    assert model.training and model.config._attn_implementation == "sdpa"
    meta = onnx_metadata(path)
    assert meta["exporter"] == "torchscript" and meta["attn_implementation"] == "eager"
    assert sorted(p.name for p in path.parent.iterdir()) == ["fallback.onnx"]
    report = check_onnx(model, path, examples, batch_sizes=(1, 3))
    assert report["passed"] and report["max_abs_diff"] <= 1e-4
    assert model.training  # check_onnx runs in eval mode and restores the mode


def test_missing_onnxruntime_is_a_user_error_with_the_pip_command(monkeypatch, exported, examples, one_layer_bert):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    assert not onnx_mod.onnxruntime_available()
    with pytest.raises(UserError) as err:
        check_onnx(one_layer_bert, exported[1], examples)
    assert "onnxruntime" in err.value.message and "pip install 'prunecli[onnx]'" in err.value.hint


@pytest.mark.parametrize("package", ["onnx", "onnxscript"])
def test_missing_exporter_packages_are_a_user_error(monkeypatch, tmp_path, tiny_bert_dir, package):
    monkeypatch.setitem(sys.modules, package, None)
    with pytest.raises(UserError) as err:
        export_onnx(tiny_bert_dir, tmp_path / "model.onnx")
    assert package in err.value.message and "pip install 'prunecli[onnx]'" in err.value.hint
    assert not (tmp_path / "model.onnx").exists()


def test_bad_examples_and_output_path(exported, one_layer_bert, tmp_path):
    with pytest.raises(UserError, match="no input_ids"):
        check_onnx(one_layer_bert, exported[1], [{"text": "a"}])
    with pytest.raises(UserError, match="is a folder"):
        export_onnx(one_layer_bert, tmp_path)
