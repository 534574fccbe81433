"""`prunecli.structure`: the one reading of a model. The pruner, compact, the sparsity report, the model card
and `inspect` count the same heads and neurons, including a head whose value rows are zero and a neuron
whose constant output is folded; `inspect` of a head+neuron checkpoint prints no false warning."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from prunecli.cli.app import app
from prunecli.report import sparsity_report
from prunecli.report.card import model_card
from prunecli.sparsity.compact import plan_compaction
from prunecli.sparsity.pruner import Pruner
from prunecli.structure import (
    StructureError,
    read_model,
    read_weights,
    removable_heads,
    removable_neurons,
)
from tests.helpers import tiny_bert_config, write_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()

#: Heads and neurons, then 4x1 and 1x4 on what they leave: the shape of recipes/compact.json.
RECIPE = {"pruning_type": "magnitude", "pruning_configs": [
    {"pattern": "head", "target_sparsity": 0.25, "pruning_scope": "local"},
    {"pattern": "neuron", "target_sparsity": 0.25, "pruning_scope": "local"},
    {"pattern": "4x1", "target_sparsity": 0.5,
     "op_names": ["attention\\.self\\.(query|key|value)", "\\.output\\.dense"]},
    {"pattern": "1x4", "target_sparsity": 0.5, "op_names": ["intermediate\\.dense"]}]}


def bert(seed: int = 0):
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    model = BertForSequenceClassification(tiny_bert_config(num_attention_heads=4, intermediate_size=64)).eval()
    with torch.no_grad():  # non-zero biases: a zero up row then leaves a constant to fold
        for module in model.modules():
            if isinstance(module, torch.nn.Linear) and module.bias is not None:
                module.bias.normal_(0, 0.5)
    return model


def pruned_with_edge_cases():
    """A head+neuron pruned BERT plus: in layer 1, a head with zero value rows and value bias (removable), a head
    with zero value rows but a value bias (kept: it adds a constant), a neuron with a zero up row (folded)."""
    model = bert()
    pruner = Pruner(model, RECIPE)
    pruner.on_train_begin()
    layer = model.bert.encoder.layer[1]
    plan = plan_compaction(model)
    kept_heads, kept_neurons = plan.heads["bert.encoder.layer.1.attention.self"], plan.neurons["bert.encoder.layer.1"]
    silent_value, constant_value = kept_heads[0], kept_heads[1]
    folded = kept_neurons[0]
    with torch.no_grad():
        value = layer.attention.self.value
        value.weight[silent_value * 8:(silent_value + 1) * 8] = 0
        value.bias[silent_value * 8:(silent_value + 1) * 8] = 0
        value.weight[constant_value * 8:(constant_value + 1) * 8] = 0
        layer.intermediate.dense.weight[folded] = 0
    return model, pruner, {"silent_value": silent_value, "constant_value": constant_value, "folded": folded}


def counts(units: dict) -> dict[tuple[str, str], tuple[int, int]]:
    return {(u["block"], u["unit"]): (u["kept"], u["of"]) for u in units["layers"]}


def test_the_report_compact_the_card_and_inspect_count_the_same_units(tmp_path):
    model, pruner, cases = pruned_with_edge_cases()
    plan = plan_compaction(model)
    block = "bert.encoder.layer.1.attention.self"
    assert cases["silent_value"] not in plan.heads[block] and cases["constant_value"] in plan.heads[block]
    assert plan.folded["bert.encoder.layer.1"] == [cases["folded"]]
    expected = {(p["block"], p["unit"]): (p["kept"], p["of"]) for p in plan.summary()}

    folder = tmp_path / "pruned"
    model.save_pretrained(folder)
    write_tokenizer(folder)
    recipe = pruner.resolved_recipe()
    (folder / "prune_recipe.json").write_text(json.dumps(recipe))
    state = {k: v.detach() for k, v in model.state_dict().items()}
    in_memory = sparsity_report(state, recipe=recipe, config=model.config.to_dict())  # what prune writes
    (folder / "sparsity_report.json").write_text(json.dumps(in_memory))
    assert counts(in_memory["units"]) == expected
    assert in_memory["warnings"] == []

    inspected = runner.invoke(app, ["inspect", str(folder), "--json"])
    assert inspected.exit_code == 0, inspected.output
    report = json.loads(inspected.output)
    assert counts(report["units"]) == expected and report["warnings"] == []
    assert report["units"] == in_memory["units"]
    assert all(g["missing"] == [] for g in report["recipe"]["groups"])

    text = runner.invoke(app, ["inspect", str(folder)], env={"COLUMNS": "200", "NO_COLOR": "1"}).output
    assert "Warning" not in text
    for kept, of in expected.values():
        assert f"{kept} of {of}" in text

    card = model_card(model_name="pruned", cfg=SimpleNamespace(
        data=SimpleNamespace(task_name="sst2"), train=SimpleNamespace(model_name_or_path="tiny")),
        metrics={}, report=report, recipe=recipe)
    for kept, of in expected.values():
        assert f"| {kept} of {of} |" in card

    compacted = runner.invoke(app, ["compact", str(folder), "--output_dir", str(tmp_path / "small")])
    assert compacted.exit_code == 0, compacted.output
    written = json.loads((tmp_path / "small" / "compact_report.json").read_text())
    assert {(p["block"], p["unit"]): (p["kept"], p["of"]) for p in written["plan"]} == expected
    small = sparsity_report(tmp_path / "small")  # inspect of the compacted checkpoint
    assert counts(small["units"]) == expected and small["units"]["source"] == "compacted"
    assert (tmp_path / "small" / "prune_recipe.json").is_file() and small["warnings"] == []


def test_head_and_neuron_groups_have_a_blockwise_ratio_and_no_warning(tmp_path):
    model = bert()
    pruner = Pruner(model, {"pruning_type": "magnitude", "pruning_configs": [
        {"pattern": "head", "target_sparsity": 0.5}, {"pattern": "neuron", "target_sparsity": 0.5}]})
    pruner.on_train_begin()
    report = sparsity_report({k: v.detach() for k, v in model.state_dict().items()},
                             recipe=pruner.resolved_recipe(), config=model.config.to_dict())
    assert report["warnings"] == []
    assert [g["blockwise_sparsity"] for g in report["recipe"]["groups"]] == [0.5, 0.5]
    # half the heads and half the neurons of the encoder's matmuls are zero units (pooler and classifier dense)
    encoder = sum(layer["numel"] for layer in report["layers"] if layer["kind"] in ("attention", "ffn"))
    matmul = report["model"]["matmul"]["numel"]
    assert report["model"]["blockwise_matmul"] == pytest.approx(0.5 * encoder / matmul)


def test_a_layer_in_a_unit_group_and_an_element_group_counts_in_both():
    model = bert()
    pruner = Pruner(model, RECIPE)
    pruner.on_train_begin()
    report = sparsity_report({k: v.detach() for k, v in model.state_dict().items()},
                             recipe=pruner.resolved_recipe(), config=model.config.to_dict())
    groups = report["recipe"]["groups"]
    assert [g["layers"] for g in groups] == [8, 4, 10, 2] and report["warnings"] == []
    query = next(layer for layer in report["layers"] if layer["name"].endswith("layer.0.attention.self.query.weight"))
    assert query["group"] == 2  # the table shows its element group


def test_reading_a_model_and_reading_its_weights_find_the_same_blocks():
    model = bert()
    from_model = read_model(model)
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    from_weights = read_weights(shapes, model.config.to_dict())
    assert [b.name for b in from_model.blocks] == [b.name for b in from_weights.blocks]
    assert [(b.num_heads, b.head_size) for b in from_model.attention] == [(4, 8), (4, 8)]
    assert [(b.num_heads, b.head_size) for b in from_weights.attention] == [(4, 8), (4, 8)]
    assert [b.members for b in from_model.feed_forward] == [b.members for b in from_weights.feed_forward]
    assert from_model.task_heads == from_weights.task_heads == ("classifier",)
    assert read_weights(shapes).attention == ()  # no head size known: no head is counted
    assert read_weights(shapes, head_counts={"bert.encoder.layer.0.attention.self": 2}).attention[0].head_size == 16


def test_the_removal_rules():
    block = read_weights({f"a.self.{m}.weight": (8, 8) for m in ("query", "key", "value")}
                         | {"a.output.dense.weight": (8, 8)}, {"hidden_size": 8, "num_attention_heads": 2}).attention[0]
    output_cols = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=bool)  # head 0 writes nothing
    value_rows = np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=bool)  # head 1 reads nothing ...
    assert removable_heads(block, output_cols, value_rows, None).tolist() == [True, True]
    assert removable_heads(block, output_cols, value_rows, np.zeros(8, dtype=bool)).tolist() == [True, False]
    ffn = read_weights({"l.attention.q.weight": (4, 4), "l.intermediate.dense.weight": (3, 4),
                        "l.output.dense.weight": (4, 3)}, {"hidden_act": "gelu"}).feed_forward[0]
    silent, folded = removable_neurons(ffn, np.array([True, True, False]), np.array([True, False, False]))
    assert silent.tolist() == [True, False, False] and folded.tolist() == [False, True, False]
    unknown = read_weights({"l.attention.q.weight": (4, 4), "l.intermediate.dense.weight": (3, 4),
                            "l.output.dense.weight": (4, 3)}).feed_forward[0]
    assert not removable_neurons(unknown, np.ones(3, dtype=bool), np.zeros(3, dtype=bool))[1].any()


def test_a_model_whose_attention_cannot_be_mapped_is_refused():
    class Attention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = torch.nn.Linear(8, 24)

    with pytest.raises(StructureError, match="cannot map the attention"):
        read_model(torch.nn.Sequential(Attention()))


def test_import_prunecli_sparsity_pulls_in_no_run_config_training_data_cli_or_rich():
    code = ("import sys, prunecli.sparsity, prunecli.structure; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('rich', 'typer', 'torch') or "
            "m.startswith(('prunecli.config', 'prunecli.training', 'prunecli.data', 'prunecli.cli'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_card_of_a_structured_bert_base_layout_summarises_its_recipe():
    """12 layers x 12 heads x 3072 neurons, half removed: the resolved recipe lists ~18,000 unit indices (the
    card once inlined it, 75 KB); the card says how many units each group removed and stays under 10 KB."""
    from transformers import BertForSequenceClassification

    config = tiny_bert_config(hidden_size=48, num_attention_heads=12, intermediate_size=3072, num_hidden_layers=12)
    model = BertForSequenceClassification(config).eval()
    pruner = Pruner(model, {"pruning_type": "magnitude", "pruning_configs": [
        {"pattern": "head", "target_sparsity": 0.5}, {"pattern": "neuron", "target_sparsity": 0.5}]})
    pruner.on_train_begin()
    recipe = pruner.resolved_recipe()
    assert len(json.dumps(recipe)) > 50_000
    report = sparsity_report({k: v.detach() for k, v in model.state_dict().items()}, recipe=recipe,
                             config=model.config.to_dict())
    card = model_card(model_name="pruned", cfg=SimpleNamespace(
        data=SimpleNamespace(task_name="sst2"), train=SimpleNamespace(model_name_or_path="bert-base-layout")),
        metrics={"accuracy": 0.9}, report=report, recipe=recipe)
    assert len(card.encode("utf-8")) < 10_000, len(card.encode("utf-8"))
    removed = {(u["group"], u["unit"]): 0 for u in recipe["pruned_units"]}
    for u in recipe["pruned_units"]:
        removed[(u["group"], u["unit"])] += len(u["pruned"])
    assert removed == {(0, "head"): 72, (1, "neuron"): 12 * 1536}
    assert "72 of 144 heads removed across 12 blocks" in card
    assert f"{12 * 1536} of {12 * 3072} neurons removed across 12 blocks" in card
    assert "| 0 | head | 0.5 | magnitude |" in card and "`classifier`" in card
