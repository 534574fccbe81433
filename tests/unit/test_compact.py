"""Compaction: pruned heads and neurons removed, the same function (constants folded, never dropped), and
checkpoints that transformers' Auto classes load after `import prunecli`."""

from __future__ import annotations

import pytest
import torch

import prunecli  # registers the compact architectures
from prunecli.models.architectures import compact_config
from prunecli.sparsity.compact import compact_, layer_sizes, plan_compaction
from prunecli.sparsity.pruner import Pruner
from tests.helpers import tiny_bert_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def bert(seed: int = 0, **overrides):
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    config = tiny_bert_config(num_attention_heads=4, intermediate_size=64, **overrides)
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():  # non-zero biases everywhere: a removed unit's constant must be handled, not dropped
        for module in model.modules():
            if isinstance(module, torch.nn.Linear) and module.bias is not None:
                module.bias.normal_(0, 0.5)
    return model


def distilbert(seed: int = 0):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(seed)
    return DistilBertForSequenceClassification(DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                                                                vocab_size=40, dropout=0.0,
                                                                attention_dropout=0.0)).eval()


def inputs(vocab: int = 30):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, vocab, (6, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[4, 3:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def logits(model, batch):
    with torch.inference_mode():
        return model(**batch).logits


STRUCTURE = {"pruning_type": "magnitude", "pruning_configs": [
    {"pattern": "head", "target_sparsity": 0.5}, {"pattern": "neuron", "target_sparsity": 0.5}]}


@pytest.mark.parametrize("make", [bert, distilbert])
def test_compaction_removes_the_units_and_keeps_the_logits(make):
    model = make()
    Pruner(model, STRUCTURE).on_train_begin()
    batch = inputs()
    before = logits(model, batch)
    params = sum(p.numel() for p in model.parameters())
    plan = compact_(model)
    assert plan.heads_removed == 4 and plan.neurons_removed == 64  # half of 2 x 4 heads, half of 2 x 64 neurons
    assert torch.allclose(logits(model, batch), before, atol=1e-5)
    assert sum(p.numel() for p in model.parameters()) < params
    assert sum(s["num_attention_heads"] for s in layer_sizes(model)) == 4


def test_a_neuron_with_a_zero_up_row_has_its_constant_folded_into_the_down_bias():
    model = bert()
    layer = model.bert.encoder.layer[0]
    with torch.no_grad():  # rows 3 and 5 of the up projection are zero (an element pattern's doing), biases not
        layer.intermediate.dense.weight[[3, 5]] = 0
    batch = inputs()
    before = logits(model, batch)
    plan = plan_compaction(model)
    assert plan.folded["bert.encoder.layer.0"] == [3, 5] and len(plan.neurons["bert.encoder.layer.0"]) == 62
    compact_(model, plan)
    assert layer.intermediate.dense.out_features == 62
    assert torch.allclose(logits(model, batch), before, atol=1e-5)  # the constant moved into the bias


def test_a_head_with_zero_output_columns_goes_whatever_its_queries_compute():
    model = bert()
    with torch.no_grad():
        model.bert.encoder.layer[1].attention.output.dense.weight[:, 8:16] = 0  # head 1 of layer 1
    batch = inputs()
    before = logits(model, batch)
    plan = compact_(model)
    assert plan.heads["bert.encoder.layer.1.attention.self"] == [0, 2, 3]
    assert model.bert.encoder.layer[1].attention.self.query.out_features == 24
    assert torch.allclose(logits(model, batch), before, atol=1e-5)


def test_a_block_that_lost_every_head_keeps_one_silent_head():
    model = bert()
    with torch.no_grad():
        model.bert.encoder.layer[0].attention.output.dense.weight.zero_()
    batch = inputs()
    before = logits(model, batch)
    plan = compact_(model)
    assert plan.heads["bert.encoder.layer.0.attention.self"] == [0]
    assert torch.allclose(logits(model, batch), before, atol=1e-5)


def test_nothing_to_remove_in_a_2in4_model():
    model = bert()  # 2:4 keeps 2 of every 4 weights: no row or column is ever entirely zero
    Pruner(model, {"pattern": "2:4", "target_sparsity": 0.5, "pruning_type": "magnitude"}).on_train_begin()
    plan = plan_compaction(model)
    assert plan.heads_removed == 0 and plan.neurons_removed == 0


def test_uniform_sizes_save_as_the_stock_architecture(tmp_path):
    from transformers import AutoModelForSequenceClassification, BertConfig

    model = bert()
    Pruner(model, {"pattern": "neuron", "target_sparsity": 0.25, "pruning_scope": "local",
                   "pruning_type": "magnitude"}).on_train_begin()
    batch = inputs()
    before = logits(model, batch)
    compact_(model)
    model.config = compact_config(model.config, layer_sizes(model))
    assert type(model.config) is BertConfig and model.config.intermediate_size == 48
    model.save_pretrained(tmp_path)
    assert '"model_type": "bert"' in (tmp_path / "config.json").read_text()
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(loaded).__name__ == "BertForSequenceClassification"
    assert torch.allclose(logits(loaded, batch), before, atol=1e-5)


def test_per_layer_sizes_load_after_import_prunecli_with_no_remote_code(tmp_path):
    import json
    import subprocess
    import sys

    model = bert()
    Pruner(model, STRUCTURE).on_train_begin()
    batch = inputs()
    before = logits(model, batch)
    plan = prunecli.compact_model(model)  # the public one-call form of compact_ + compact_config
    assert plan.heads_removed == 4 and plan.neurons_removed == 64
    assert torch.allclose(logits(model, batch), before, atol=1e-5)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "prunecli-bert" and len(config["compact_layers"]) == 2
    assert "auto_map" not in config  # no remote code
    torch.save({"batch": batch, "logits": before}, tmp_path / "expected.pt")
    script = (
        "import sys, torch\n"
        "import prunecli\n"  # the one line the docs promise
        "from transformers import AutoModelForSequenceClassification\n"
        f"model = AutoModelForSequenceClassification.from_pretrained({str(tmp_path)!r}).eval()\n"
        f"expected = torch.load({str(tmp_path / 'expected.pt')!r})\n"
        "with torch.inference_mode():\n"
        "    got = model(**expected['batch']).logits\n"
        "assert torch.allclose(got, expected['logits'], atol=1e-5), (got - expected['logits']).abs().max()\n"
        "print(type(model).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "CompactBertForSequenceClassification" in done.stdout


def test_a_layer_left_with_no_neurons_saves_and_loads_back(tmp_path):
    from transformers import AutoModelForSequenceClassification

    model = bert()
    with torch.no_grad():  # every neuron of layer 1 gone: its feed-forward block adds only its bias
        model.bert.encoder.layer[1].intermediate.dense.weight.zero_()
        model.bert.encoder.layer[1].intermediate.dense.bias.zero_()
        model.bert.encoder.layer[1].output.dense.weight.zero_()
    batch = inputs()
    before = logits(model, batch)
    plan = prunecli.compact_model(model)
    assert plan.neurons_removed == 64 and model.bert.encoder.layer[1].intermediate.dense.out_features == 0
    assert model.bert.config is model.config  # the inner modules see the new config too
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert torch.allclose(logits(loaded, batch), before, atol=1e-5)


def test_an_architecture_whose_checkpoint_cannot_be_saved_is_refused_before_any_change():
    from transformers import MPNetConfig, MPNetForSequenceClassification

    from prunecli.structure import StructureError

    model = MPNetForSequenceClassification(MPNetConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2,
                                                       num_attention_heads=4, intermediate_size=64)).eval()
    with torch.no_grad():
        model.mpnet.encoder.layer[0].output.dense.weight[:, :8].zero_()
    with pytest.raises(StructureError, match="mpnet"):
        prunecli.compact_model(model)
    assert model.mpnet.encoder.layer[0].intermediate.dense.out_features == 64  # untouched
