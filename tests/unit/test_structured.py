"""Head and neuron pruning: the layer structure read from the model, whole units pruned across layers,
global and local scope with bounds, mixing with element patterns on what remains, resume."""

from __future__ import annotations

import pytest
import torch

from prunecli.errors import RecipeError
from prunecli.sparsity.pruner import Pruner
from prunecli.structure import StructureError, attention_blocks, feed_forward_blocks
from tests.helpers import tiny_bert_config
from tests.unit.test_pruner import batches, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HEADS, HEAD_SIZE, LAYERS, NEURONS = 4, 8, 2, 64


def bert(seed: int = 0):
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    return BertForSequenceClassification(tiny_bert_config(num_attention_heads=HEADS, intermediate_size=NEURONS))


def removed_heads(model, layer: int) -> list[int]:
    """Heads whose query, key, value rows and output columns are all exactly zero."""
    att = model.bert.encoder.layer[layer].attention
    out = []
    for h in range(HEADS):
        rows = slice(h * HEAD_SIZE, (h + 1) * HEAD_SIZE)
        parts = [att.self.query.weight[rows], att.self.key.weight[rows], att.self.value.weight[rows],
                 att.output.dense.weight[:, rows]]
        zero = [bool((p == 0).all()) for p in parts]
        assert all(zero) or not any(zero), f"head {h} of layer {layer} is half pruned"
        if all(zero):
            out.append(h)
    return out


def removed_neurons(model, layer: int) -> list[int]:
    up = model.bert.encoder.layer[layer].intermediate.dense.weight
    down = model.bert.encoder.layer[layer].output.dense.weight
    up_zero, down_zero = (up == 0).all(dim=1), (down == 0).all(dim=0)
    assert torch.equal(up_zero, down_zero)
    return torch.nonzero(up_zero).reshape(-1).tolist()


def test_the_structure_is_read_from_bert_distilbert_and_roberta_modules():
    from transformers import (
        DistilBertConfig,
        DistilBertForSequenceClassification,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    blocks = attention_blocks(bert())
    assert [(b.num_heads, b.head_size) for b in blocks] == [(HEADS, HEAD_SIZE)] * LAYERS
    assert blocks[0].output == "bert.encoder.layer.0.attention.output.dense"
    ffn = feed_forward_blocks(bert())
    assert [(f.up, f.down, f.size) for f in ffn][1] == (
        "bert.encoder.layer.1.intermediate.dense", "bert.encoder.layer.1.output.dense", NEURONS)
    distil = DistilBertForSequenceClassification(DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=48,
                                                                  vocab_size=40))
    assert attention_blocks(distil)[0].members[3] == "distilbert.transformer.layer.0.attention.out_lin"
    assert feed_forward_blocks(distil)[0].size == 48
    roberta = RobertaForSequenceClassification(RobertaConfig(hidden_size=32, num_hidden_layers=1,
                                                             num_attention_heads=2, intermediate_size=40,
                                                             vocab_size=40))
    assert attention_blocks(roberta)[0].head_size == 16 and feed_forward_blocks(roberta)[0].size == 40


def test_an_attention_layout_it_cannot_map_is_an_error_naming_the_module():
    from transformers import GPT2Config, GPT2ForSequenceClassification

    model = GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=16))
    with pytest.raises(StructureError, match=r"transformer\.h\.0\.attn.*GPT2Attention") as info:
        Pruner(model, {"pattern": "head", "target_sparsity": 0.5})
    assert info.value.exit_code == 2 and "element pattern" in info.value.hint
    with pytest.raises(RecipeError, match="no feed-forward block"):
        Pruner(model, {"pattern": "neuron", "target_sparsity": 0.5})


def test_local_head_pruning_removes_whole_heads_in_every_layer():
    model = bert()
    pruner = Pruner(model, {"pattern": "head", "target_sparsity": 0.5, "pruning_scope": "local"})
    assert sorted(pruner.layers) == sorted(m for b in attention_blocks(model) for m in b.members)
    train(model, pruner, batches(2))
    for layer in range(LAYERS):
        assert len(removed_heads(model, layer)) == 2
    units = pruner.pruned_units()
    assert [u["units"] for u in units] == [HEADS] * LAYERS and all(len(u["pruned"]) == 2 for u in units)
    assert units[0]["pruned"] == removed_heads(model, 0)
    after = model.state_dict()
    for name in ("bert.encoder.layer.0.intermediate.dense.weight", "bert.pooler.dense.weight",
                 "bert.encoder.layer.0.attention.self.query.bias"):  # biases and other layers are not pruned
        assert int((after[name] == 0).sum()) == 0, name
    assert pruner.log_values()["sparsity/group0"] == pytest.approx(0.5)


def test_global_heads_are_ranked_across_layers_and_each_layer_keeps_its_minimum():
    model = bert()
    with torch.no_grad():  # layer 1's heads are all far less important than layer 0's
        for name in ("query", "key", "value"):
            getattr(model.bert.encoder.layer[1].attention.self, name).weight.mul_(1e-3)
        model.bert.encoder.layer[1].attention.output.dense.weight.mul_(1e-3)
    recipe = {"pattern": "head", "target_sparsity": 0.5, "pruning_type": "magnitude", "min_heads_per_layer": 1}
    pruner = Pruner(model, recipe)
    pruner.on_train_begin()  # magnitude: the step-0 event runs at once
    assert len(removed_heads(model, 1)) == 3 and len(removed_heads(model, 0)) == 1  # 4 of 8, layer 1 keeps 1
    model2 = bert()
    with torch.no_grad():
        for module in model2.bert.encoder.layer[1].attention.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(1e-3)
    pruner = Pruner(model2, {**recipe, "min_heads_per_layer": 2})
    pruner.on_train_begin()
    assert len(removed_heads(model2, 1)) == 2 and len(removed_heads(model2, 0)) == 2


def test_neurons_remove_a_row_of_up_and_a_column_of_down():
    model = bert()
    pruner = Pruner(model, {"pattern": "neuron", "target_sparsity": 0.75, "pruning_scope": "local",
                            "pruning_type": "magnitude"})
    pruner.on_train_begin()
    for layer in range(LAYERS):
        assert len(removed_neurons(model, layer)) == 48
    assert removed_heads(model, 0) == []  # attention untouched


def test_op_names_narrow_the_blocks_of_a_head_group():
    pruner = Pruner(bert(), {"pattern": "head", "target_sparsity": 0.5, "op_names": ["layer\\.1\\."]})
    assert [u["block"] for u in pruner.pruned_units()] == ["bert.encoder.layer.1.attention.self"]
    with pytest.raises(RecipeError, match="matches no attention block"):
        Pruner(bert(), {"pattern": "head", "target_sparsity": 0.5, "op_names": ["nothing"]})


def test_heads_neurons_and_4x1_on_what_remains():
    """The compact recipe's shape: heads and neurons removed whole, 4x1 at 50% on the weights they leave."""
    model = bert()
    recipe = {"pruning_type": "magnitude", "pruning_configs": [
        {"pattern": "head", "target_sparsity": 0.5, "pruning_scope": "local"},
        {"pattern": "neuron", "target_sparsity": 0.25, "pruning_scope": "local"},
        {"pattern": "4x1", "target_sparsity": 0.5, "op_names": ["attention", "\\.output\\.dense"],
         "pruning_scope": "local"},
        {"pattern": "1x4", "target_sparsity": 0.5, "op_names": ["intermediate"], "pruning_scope": "local"},
    ]}
    pruner = Pruner(model, recipe)
    pruner.on_train_begin()
    for layer in range(LAYERS):
        assert len(removed_heads(model, layer)) == 2 and len(removed_neurons(model, layer)) == 16
        up = model.bert.encoder.layer[layer].intermediate.dense.weight
        kept_rows = up[~(up == 0).all(dim=1)]
        assert float((kept_rows == 0).float().mean()) == pytest.approx(0.5)  # 50% of what remains
        q = model.bert.encoder.layer[layer].attention.self.query.weight
        kept = q[~(q == 0).all(dim=1)]
        assert float((kept == 0).float().mean()) == pytest.approx(0.5)
    plan = pruner.plan()
    assert plan[0]["units"] == HEADS * LAYERS and plan[2]["pattern"] == "4x1"


def test_structure_groups_resume_with_the_same_units_and_masks():
    recipe = {"pattern": "head", "target_sparsity": 0.5, "start_step": 1, "end_step": 5, "pruning_frequency": 2}
    straight_model, resumed_model = bert(), bert()
    straight = Pruner(straight_model, recipe)
    optimizer = train(straight_model, straight, batches(3))
    state, weights, opt_state = straight.state_dict(), straight_model.state_dict(), optimizer.state_dict()
    train(straight_model, straight, batches(4, seed=1), optimizer=optimizer)

    resumed_model.load_state_dict(weights)
    resumed = Pruner(resumed_model, recipe)
    resumed.load_state_dict(state)
    optimizer = torch.optim.AdamW(resumed_model.parameters(), lr=1e-3, weight_decay=0.1)
    optimizer.load_state_dict(opt_state)
    train(resumed_model, resumed, batches(4, seed=1), optimizer=optimizer)
    assert resumed.pruned_units() == straight.pruned_units()
    assert all(torch.equal(a, b) for a, b in zip(resumed.keep_masks().values(), straight.keep_masks().values(),
                                                 strict=True))


def test_head_patterns_refuse_progressive_types_and_shared_blocks():
    with pytest.raises(RecipeError, match="removes whole heads"):
        Pruner(bert(), {"pattern": "head", "target_sparsity": 0.5, "pruning_type": "snip_momentum_progressive"})
    with pytest.raises(RecipeError, match="in two head groups"):
        Pruner(bert(), {"pruning_configs": [{"pattern": "head", "target_sparsity": 0.5},
                                            {"pattern": "head", "target_sparsity": 0.25}]})
    with pytest.raises(RecipeError, match="pattern 4x1 groups 4 of them"):  # neurons cut up-projection rows
        Pruner(bert(), {"pruning_configs": [{"pattern": "neuron", "target_sparsity": 0.5},
                                            {"pattern": "4x1", "target_sparsity": 0.5, "op_names": ["intermediate"]}]})
    Pruner(bert(), {"pruning_configs": [{"pattern": "neuron", "target_sparsity": 0.5},  # blocks within a row: fine
                                        {"pattern": "1x4", "target_sparsity": 0.5, "op_names": ["intermediate"]}]})
    with pytest.raises(RecipeError, match="pattern 2:4 groups 4 of them"):
        Pruner(bert(), {"pruning_configs": [{"pattern": "neuron", "target_sparsity": 0.5},
                                            {"pattern": "2:4", "target_sparsity": 0.5, "op_names": ["output"]}]})
    Pruner(bert(), {"pruning_configs": [{"pattern": "head", "target_sparsity": 0.5},  # heads of 8 columns: fine
                                        {"pattern": "2:4", "target_sparsity": 0.5, "op_names": ["attention"]}]})
    with pytest.raises(RecipeError, match="pruned progressively"):
        Pruner(bert(), {"pruning_configs": [
            {"pattern": "head", "target_sparsity": 0.5},
            {"pattern": "1xchannel", "target_sparsity": 0.5, "op_names": ["attention"],
             "pruning_type": "snip_momentum_progressive"}]})


def test_the_report_counts_heads_and_neurons_per_layer(tmp_path):
    import io
    import json

    from rich.console import Console

    from prunecli.report import sparsity_report
    from prunecli.report.render import markdown_table, render_report

    model = bert()
    pruner = Pruner(model, {"pruning_type": "magnitude", "pruning_configs": [
        {"pattern": "head", "target_sparsity": 0.5, "pruning_scope": "local"},
        {"pattern": "neuron", "target_sparsity": 0.25, "pruning_scope": "local"}]})
    pruner.on_train_begin()
    model.save_pretrained(tmp_path)  # a sparse checkpoint with its config (the head size)
    units = sparsity_report(tmp_path)["units"]
    assert units["source"] == "weights" and units["heads_removed"] == 4 and units["neurons_removed"] == 32
    assert {(u["unit"], u["kept"], u["of"]) for u in units["layers"]} == {("head", 2, 4), ("neuron", 48, 64)}
    state = {k: v.detach() for k, v in model.state_dict().items()}  # prune's in-memory report: the same count
    assert sparsity_report(state, recipe=pruner.resolved_recipe(), config=model.config.to_dict())["units"] == units
    assert sparsity_report(state, recipe=pruner.resolved_recipe())["units"] == units  # head size from the record
    out = io.StringIO()
    render_report(sparsity_report(tmp_path), Console(file=out, width=80))
    text = out.getvalue()
    assert "Heads and neurons" in text and "2 of 4" in text and "48 of 64" in text
    assert "| heads | 2 of 4 |" in markdown_table(sparsity_report(tmp_path))
    json.dumps(units)


def test_a_target_the_floors_do_not_allow_is_refused_not_silently_missed():
    model = bert()  # 2 layers of 64 neurons and 4 heads
    with pytest.raises(RecipeError, match="min_neurons_per_layer 64") as err:
        Pruner(model, {"pattern": "neuron", "target_sparsity": 0.5, "min_neurons_per_layer": 64})
    assert err.value.path == "min_neurons_per_layer" and "only 0 go" in err.value.message
    with pytest.raises(RecipeError, match="block `bert.encoder.layer.0.attention.self` has 4 heads"):
        Pruner(model, {"pattern": "head", "target_sparsity": 0.75, "pruning_scope": "local",
                       "min_heads_per_layer": 2})
    Pruner(model, {"pattern": "head", "target_sparsity": 0.5, "pruning_scope": "local", "min_heads_per_layer": 2})
