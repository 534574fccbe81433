"""The pruner on real modules: layer matching, every pattern x scope, training loops, resume, docs example."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from prunecli.errors import CheckpointError, RecipeError
from prunecli.sparsity.patterns import parse_pattern
from prunecli.sparsity.pruner import Pruner
from prunecli.sparsity.recipe import Recipe
from tests.helpers import tiny_bert_config
from tests.unit.test_patterns import assert_conforms

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_bert(seed: int = 0):
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    return BertForSequenceClassification(tiny_bert_config())


def batches(n: int, seed: int = 0, size: int = 4):
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "input_ids": torch.randint(5, 35, (size, 8), generator=g),
            "labels": torch.randint(0, 2, (size,), generator=g),
        }
        for _ in range(n)
    ]


def train(model, pruner, data, *, lr=1e-3, weight_decay=0.1, after_step=None, optimizer=None):
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    pruner.on_train_begin()
    for batch in data:
        model(**batch).loss.backward()
        pruner.on_before_optimizer_step()
        optimizer.step()
        pruner.on_after_optimizer_step()
        optimizer.zero_grad()
        if after_step:
            after_step(pruner, optimizer)
    return optimizer


class Stack(nn.Module):
    """Three Linear layers of different shapes (all divisible by 16) plus a classifier head."""

    def __init__(self, scales=(1.0, 1.0, 1.0), seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.a = nn.Linear(32, 16)
        self.b = nn.Linear(16, 32)
        self.c = nn.Linear(48, 8)
        self.classifier = nn.Linear(8, 2)
        with torch.no_grad():
            for layer, scale in zip((self.a, self.b, self.c), scales, strict=True):
                layer.weight.mul_(scale)


# ---------------------------------------------------------------- layer matching


def test_finds_linear_layers_and_never_the_head():
    model = tiny_bert()
    pruner = Pruner(model, {"target_sparsity": 0.5})
    assert pruner.excluded_heads == ["classifier"]
    assert "classifier" not in pruner.layers and "bert.pooler.dense" not in pruner.layers  # the default exclusion
    assert len(pruner.layers) == 2 * 6
    assert "bert.pooler.dense" in Pruner(model, {"target_sparsity": 0.5, "excluded_op_names": []}).layers
    # op_names use re.search: the reference's ".*output" matches both output projections.
    pruner = Pruner(model, {"op_names": [".*output"], "excluded_op_names": ["layer\\.1\\."]})
    assert list(pruner.layers) == [
        "bert.encoder.layer.0.attention.output.dense",
        "bert.encoder.layer.0.output.dense",
    ]
    pruner = Pruner(model, {"op_names": ["classifier", "query"]})
    assert all("query" in name for name in pruner.layers)


def test_the_pooler_stays_dense_from_python_as_from_the_cli():
    """The recipe model holds the pooler exclusion, so the library and `prunecli prune` prune the same layers."""
    model = tiny_bert()
    dense_pooler = model.bert.pooler.dense.weight.detach().clone()
    pruner = Pruner(model, {"target_sparsity": 0.5, "pattern": "4x1", "pruning_scope": "local"})
    pruner.on_train_begin()
    model(input_ids=torch.tensor([[2, 5, 6, 3]]), labels=torch.tensor([1])).loss.backward()
    pruner.on_before_optimizer_step()
    pruner.on_after_optimizer_step()  # the step-0 event: every pruned layer reaches 50% at once
    assert pruner.current_sparsity() == pytest.approx(0.5)
    assert torch.equal(model.bert.pooler.dense.weight.detach(), dense_pooler)
    assert float((model.bert.encoder.layer[0].attention.self.query.weight == 0).float().mean()) == 0.5


def test_a_gpt2_style_model_gets_a_hint_naming_its_conv1d_layers():
    from transformers import GPT2Config, GPT2ForSequenceClassification

    model = GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=16))
    with pytest.raises(RecipeError) as info:
        Pruner(model, {"target_sparsity": 0.5})
    assert 'this model\'s prunable layers are Conv1D' in info.value.hint
    assert '"pruning_op_types": ["Conv1D"]' in info.value.hint
    pruner = Pruner(model, {"target_sparsity": 0.5, "pruning_op_types": ["Conv1D"]})
    assert "transformer.h.0.attn.c_attn" in pruner.layers and "score" not in pruner.layers


def test_group_that_matches_no_layer_is_an_error():
    model = tiny_bert()
    with pytest.raises(RecipeError) as info:
        Pruner(model, {"pruning_configs": [{"op_names": ["query"]}, {"op_names": ["quer_y"]}]})
    assert info.value.path == "pruning_configs[1].op_names" and "matches no layer" in info.value.message
    assert "bert.encoder.layer.0.attention.self.query" in info.value.hint
    with pytest.raises(RecipeError, match="task head is never pruned"):
        Pruner(model, {"op_names": ["classifier"]})
    with pytest.raises(RecipeError) as info:
        Pruner(model, {"pruning_op_types": ["Conv1D"]})
    assert info.value.path == "op_names"


def test_layer_matched_by_two_groups_is_an_error():
    with pytest.raises(RecipeError) as info:
        Pruner(tiny_bert(), {"pruning_configs": [{"op_names": ["output"]}, {"op_names": ["layer.0"]}]})
    assert info.value.path == "pruning_configs[1].op_names"
    assert "bert.encoder.layer.0.attention.output.dense" in info.value.message


def test_shape_the_pattern_cannot_handle_is_refused_by_name():
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 6), nn.Linear(6, 8))
    with pytest.raises(RecipeError) as info:
        Pruner(model, {"pattern": "2:4", "target_sparsity": 0.5})
    assert info.value.path == "pattern" and "`2`" in info.value.message and "6 in" in info.value.message
    # NxM blocks take partial edge blocks instead: no error, and the odd layer is pruned too.
    pruner = Pruner(model, {"pattern": "4x1", "target_sparsity": 0.5, "pruning_type": "magnitude",
                            "pruning_scope": "local"})
    pruner.on_train_begin()
    assert pruner.layer_sparsity()["1"] == pytest.approx(0.5, abs=4 / 48)
    assert_conforms(parse_pattern("4x1"), ~pruner.keep_masks()["1"])


def test_conv1d_is_pruned_in_its_out_in_orientation():
    from transformers.pytorch_utils import Conv1D

    class GPT2ish(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.c_fc = Conv1D(8, 16)  # nf=8 outputs, nx=16 inputs: weight [16, 8]
            self.dense = nn.Linear(8, 8)

    model = GPT2ish()
    assert tuple(model.c_fc.weight.shape) == (16, 8)
    pruner = Pruner(model, {"pruning_op_types": ["Conv1D"], "pattern": "1xchannel", "target_sparsity": 0.5,
                            "pruning_type": "magnitude", "pruning_scope": "local"})
    assert list(pruner.layers) == ["c_fc"]
    pruner.on_train_begin()
    w = model.c_fc.weight.detach()
    zero_outputs = (w == 0).all(dim=0)  # whole output features = whole columns of the [in, out] weight
    assert int(zero_outputs.sum()) == 4 and int((w == 0).sum()) == 4 * 16
    pruner = Pruner(GPT2ish(), {"pruning_op_types": ["Conv1D"], "pattern": "2:4", "target_sparsity": 0.5,
                                "pruning_type": "magnitude", "pruning_scope": "local"})
    pruner.on_train_begin()
    as_out_in = pruner.keep_masks()["c_fc"].t()
    assert bool((as_out_in.reshape(8, 4, 4).sum(-1) == 2).all())  # 2 of every 4 consecutive inputs
    model = GPT2ish()
    pruner = Pruner(model, {"pruning_op_types": ["Conv1D", "Linear"], "pattern": "4x1", "target_sparsity": 0.5,
                            "pruning_type": "magnitude"})
    assert list(pruner.layers) == ["c_fc", "dense"]


# ---------------------------------------------------------------- every pattern x scope

PATTERNS = ["1x1", "4x1", "2x2", "1x16", "3x2", "1xchannel", "channelx1", "2:4", "1:4"]


def unit_bound(pattern, layers) -> int:
    sizes = [pattern.unit_sizes(layer.shape2d) for layer in layers]
    return max(int(s.max()) if isinstance(s, torch.Tensor) else s for s in sizes)


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(PATTERNS),
    scope=st.sampled_from(["local", "global"]),
    fraction=st.floats(0.0, 1.0),
    seed=st.integers(0, 1000),
)
def test_every_pattern_and_scope_reaches_the_target_and_conforms(name, scope, fraction, seed):
    pattern = parse_pattern(name)
    target = round(fraction * min(pattern.max_sparsity, 0.95), 4)
    model = Stack(scales=(1.0, 3.0, 0.5), seed=seed)
    pruner = Pruner(model, {"pattern": name, "pruning_scope": scope, "target_sparsity": target,
                            "pruning_type": "magnitude"})
    pruner.on_train_begin()  # a step-0 oneshot magnitude event runs here
    layers = list(pruner.layers.values())
    for layer in layers:
        pruned2d = layer.as2d(layer.pruned)
        assert_conforms(pattern, pruned2d)
        assert bool((layer.weight.detach()[layer.pruned] == 0).all())
        if scope == "local":
            assert abs(layer.n_pruned - round(target * layer.numel)) <= unit_bound(pattern, [layer])
        else:
            assert layer.n_pruned <= 0.98 * layer.numel + unit_bound(pattern, [layer])
    total = sum(layer.numel for layer in layers)
    achieved = sum(layer.n_pruned for layer in layers)
    assert abs(achieved - target * total) <= unit_bound(pattern, layers) * (1 if scope == "global" else len(layers))
    # Same inputs, same masks.
    again = Pruner(Stack(scales=(1.0, 3.0, 0.5), seed=seed), pruner.recipe)
    again.on_train_begin()
    for name_, layer in again.layers.items():
        assert torch.equal(layer.pruned, pruner.layers[name_].pruned)


@settings(max_examples=30, deadline=None)
@given(
    scales=st.tuples(*[st.sampled_from([1e-3, 0.1, 1.0, 10.0, 1e3])] * 3),
    bounds=st.tuples(st.floats(0.0, 0.9), st.floats(0.0, 1.0), st.floats(0.0, 1.0)),
    name=st.sampled_from(["1x1", "4x1", "1xchannel", "2:4"]),
)
def test_global_scope_respects_min_and_max_per_layer_and_still_reaches_the_target(scales, bounds, name):
    pattern = parse_pattern(name)
    top = min(pattern.max_sparsity, 0.95)
    lo, t, hi = sorted(round(b * top, 3) for b in bounds)
    hi = max(hi, 0.05)
    t = min(t, hi)
    lo = min(lo, t)
    model = Stack(scales=scales)
    pruner = Pruner(model, {"pattern": name, "target_sparsity": t, "min_sparsity_ratio_per_op": lo,
                            "max_sparsity_ratio_per_op": hi, "pruning_type": "magnitude"})
    pruner.on_train_begin()
    layers = list(pruner.layers.values())
    for layer in layers:
        unit = unit_bound(pattern, [layer])
        assert layer.n_pruned <= hi * layer.numel + 1e-9
        assert layer.n_pruned >= lo * layer.numel - unit
    total = sum(layer.numel for layer in layers)
    achieved = sum(layer.n_pruned for layer in layers)
    assert abs(achieved - t * total) <= unit_bound(pattern, layers) * len(layers)


def test_global_redistributes_what_a_capped_layer_cannot_take():
    # Layer a's weights are tiny: a plain global threshold would prune it entirely.
    model = Stack(scales=(1e-3, 1.0, 1e3))
    pruner = Pruner(model, {"pattern": "1x1", "target_sparsity": 0.5, "max_sparsity_ratio_per_op": 0.7,
                            "min_sparsity_ratio_per_op": 0.2, "pruning_type": "magnitude"})
    pruner.on_train_begin()
    sp = pruner.layer_sparsity()
    assert sp["a"] == pytest.approx(0.7, abs=1 / 512)
    assert sp["c"] == pytest.approx(0.2, abs=1 / 384)
    assert pruner.current_sparsity() == pytest.approx(0.5, abs=1 / 1408)
    unbounded = Pruner(Stack(scales=(1e-3, 1.0, 1e3)), {"pattern": "1x1", "target_sparsity": 0.5,
                                                         "max_sparsity_ratio_per_op": 1.0,
                                                         "pruning_type": "magnitude"})
    unbounded.on_train_begin()
    assert unbounded.layer_sparsity()["a"] == 1.0  # the bounds above are what made the difference


# ---------------------------------------------------------------- training loops


def test_masks_survive_50_adamw_steps_with_weight_decay():
    model = tiny_bert()
    pruner = Pruner(model, {"target_sparsity": 0.7, "pattern": "4x1", "start_step": 5, "end_step": 35,
                            "pruning_frequency": 5})
    history = []
    resurrection_pressure = []

    def check(pruner, optimizer):
        masks = {name: layer.pruned.clone() for name, layer in pruner.layers.items()}
        for name, layer in pruner.layers.items():
            assert bool((layer.weight.detach()[layer.pruned] == 0.0).all()), name
            if layer.n_pruned:
                state = optimizer.state[layer.weight]
                resurrection_pressure.append(float(state["exp_avg"][layer.pruned].abs().max()))
        if history:
            for name, mask in masks.items():
                assert not bool((history[-1][0][name] & ~mask).any()), "a pruned weight came back"
            assert pruner.current_sparsity() >= history[-1][1]
        history.append((masks, pruner.current_sparsity()))

    train(model, pruner, batches(50), lr=5e-3, weight_decay=0.1, after_step=check)
    assert pruner.step == 50
    assert pruner.current_sparsity() == pytest.approx(0.7, abs=4 / 17408)
    # AdamW's momentum would have moved the pruned weights: enforcement is what keeps them at 0.
    assert max(resurrection_pressure) > 0
    assert history[33][1] < pruner.current_sparsity() == history[34][1] == history[-1][1]  # cool-down


def test_gradient_accumulation_counts_optimizer_steps_and_scores_once_per_step():
    model = tiny_bert()
    pruner = Pruner(model, {"target_sparsity": 0.5, "pattern": "1x1", "start_step": 6, "end_step": 6,
                            "pruning_scope": "local"})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    layer = pruner.layers["bert.encoder.layer.0.attention.self.query"]
    expected = torch.zeros_like(pruner.score_of(layer.name))
    pruner.on_train_begin()
    sparsity = []
    data = batches(48)
    for i, batch in enumerate(data):
        (model(**batch).loss / 4).backward()
        if (i + 1) % 4:
            continue  # a micro-batch: no hook, no score update
        expected = 0.9 * expected + (layer.weight.detach() * layer.weight.grad).abs()
        pruner.on_before_optimizer_step()
        if pruner.step < 5:
            assert torch.allclose(pruner.score_of(layer.name), expected)
        optimizer.step()
        pruner.on_after_optimizer_step()
        optimizer.zero_grad()
        sparsity.append(pruner.current_sparsity())
    assert pruner.step == 12
    assert sparsity[4] == 0.0 and sparsity[5] == pytest.approx(0.5)  # the oneshot event at optimizer step 6


def test_same_seed_same_masks():
    def run():
        model = tiny_bert(seed=3)
        pruner = Pruner(model, {"target_sparsity": 0.5, "pattern": "2:4", "start_step": 2, "end_step": 10,
                                "pruning_frequency": 2})
        train(model, pruner, batches(12, seed=5))
        return pruner.keep_masks()

    first, second = run(), run()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_resumed_run_ends_with_the_same_masks(tmp_path):
    recipe = {"target_sparsity": 0.8, "pattern": "4x1", "start_step": 3, "end_step": 21, "pruning_frequency": 3,
              "pruning_type": "snip_momentum_progressive"}
    data = batches(24, seed=7)

    model = tiny_bert(seed=1)
    straight = Pruner(model, recipe)
    train(model, straight, data)

    model = tiny_bert(seed=1)
    first = Pruner(model, recipe)
    optimizer = train(model, first, data[:11])
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": optimizer.state_dict(), "pruner": first.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)  # plain tensors and numbers only

    model = tiny_bert(seed=99)
    model.load_state_dict(saved["model"])
    resumed = Pruner(model, recipe)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    optimizer.load_state_dict(saved["opt"])
    resumed.load_state_dict(saved["pruner"])
    assert resumed.step == 11
    train(model, resumed, data[11:], optimizer=optimizer)
    assert resumed.step == straight.step == 24
    for name, layer in straight.layers.items():
        assert torch.equal(layer.pruned, resumed.layers[name].pruned), name
    assert straight.current_sparsity() == pytest.approx(0.8, abs=4 / 17408)


def test_state_of_another_recipe_is_refused():
    pruner = Pruner(tiny_bert(), {"op_names": ["query"]})
    other = Pruner(tiny_bert(), {"op_names": ["key"]})
    with pytest.raises(CheckpointError):
        other.load_state_dict(pruner.state_dict())
    with pytest.raises(CheckpointError):
        other.load_state_dict({"step": 3})


def test_pattern_lock_keeps_existing_zeros_and_prunes_nothing_new():
    model = tiny_bert()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                module.weight.mul_(torch.rand(module.weight.shape, generator=g) > 0.3)
    zeros = {name: p.detach() == 0 for name, p in model.named_parameters() if name.endswith("weight")}
    pruner = Pruner(model, {"pruning_type": "pattern_lock"})
    train(model, pruner, batches(10), lr=1e-2)
    for name, layer in pruner.layers.items():
        assert torch.equal(layer.weight.detach() == 0, zeros[name + ".weight"]), name
    assert pruner.current_sparsity() == pytest.approx(0.3, abs=0.02)


def test_progressive_prunes_each_event_over_stages_and_ends_whole():
    model = tiny_bert()
    pruner = Pruner(model, {"target_sparsity": 0.5, "pattern": "1xchannel", "start_step": 0, "end_step": 40,
                            "pruning_frequency": 8, "pruning_type": "snip_momentum_progressive",
                            "excluded_op_names": ["pooler"]})
    (group,) = pruner.plan()
    assert group["progressive"] and group["num_events"] == 6
    partial_rows_seen = []

    def check(pruner, optimizer):
        rows = [layer.pruned.any(1) & ~layer.pruned.all(1) for layer in pruner.layers.values()]
        partial_rows_seen.append(any(bool(r.any()) for r in rows))

    sparsity = []
    train(model, pruner, batches(44), after_step=lambda p, o: (check(p, o), sparsity.append(p.current_sparsity())))
    assert all(b >= a for a, b in zip(sparsity, sparsity[1:], strict=False))
    assert any(partial_rows_seen)  # between stages a channel is partly pruned (that is the point)
    assert not partial_rows_seen[-1]
    # Within an event interval sparsity rises in several stages, not at once.
    assert len(set(sparsity[8:16])) > 2
    for layer in pruner.layers.values():
        assert_conforms(parse_pattern("1xchannel"), layer.pruned)
    assert pruner.current_sparsity() == pytest.approx(0.5, abs=64 / 16384)


def test_oneshot_at_step_zero():
    model = tiny_bert()
    pruner = Pruner(model, {"target_sparsity": 0.5, "pruning_type": "magnitude"})
    pruner.on_train_begin()
    assert pruner.current_sparsity() == pytest.approx(0.5, abs=4 / 17408)  # no gradient needed
    model = tiny_bert()
    pruner = Pruner(model, {"target_sparsity": 0.5})  # snip_momentum needs one gradient first
    pruner.on_train_begin()
    assert pruner.current_sparsity() == 0.0
    train(model, pruner, batches(1))
    assert pruner.current_sparsity() == pytest.approx(0.5, abs=4 / 17408)


def test_snip_scores_only_before_events_and_nothing_after_the_last():
    model = tiny_bert()
    pruner = Pruner(model, {"target_sparsity": 0.5, "pruning_type": "snip", "start_step": 6, "end_step": 6})
    layer = pruner.layers["bert.encoder.layer.1.output.dense"]
    train(model, pruner, batches(5))
    assert not pruner.score_of(layer.name).any()  # nothing scored on steps that end no event
    train(model, pruner, batches(1))
    assert pruner.score_of(layer.name).any() and pruner.current_sparsity() > 0.4
    model = tiny_bert()
    pruner = Pruner(model, {"target_sparsity": 0.5, "start_step": 2, "end_step": 4, "pruning_frequency": 2})
    train(model, pruner, batches(4))
    score = pruner.score_of("bert.encoder.layer.1.output.dense").clone()
    train(model, pruner, batches(3, seed=1))
    assert torch.equal(score, pruner.score_of("bert.encoder.layer.1.output.dense"))  # cool-down: no scoring


def test_pruned_gradients_are_zeroed_before_the_optimizer_step():
    model = tiny_bert()
    pruner = Pruner(model, {"target_sparsity": 0.5, "pruning_type": "magnitude"})
    pruner.on_train_begin()
    model(**batches(1)[0]).loss.backward()
    pruner.on_before_optimizer_step()
    for layer in pruner.layers.values():
        assert not layer.weight.grad[layer.pruned].any()


# ---------------------------------------------------------------- reporting


def test_plan_log_values_and_resolved_recipe():
    model = tiny_bert()
    pruner = Pruner(model, str(REPO / "recipes" / "mixed.json"))
    plan = pruner.plan()
    assert [p["pruning_scope"] for p in plan] == ["local", "global"]
    assert plan[0]["layers"][0] == "bert.encoder.layer.0.attention.output.dense" and len(plan[1]["layers"]) == 6
    assert plan[0]["oneshot"] and plan[0]["pattern"] == "1x1" and plan[1]["target_sparsity"] == 0.9
    values = pruner.log_values()
    assert set(values) == {"sparsity", "target_sparsity", "sparsity/group0", "sparsity/group1"}
    assert all(isinstance(v, float) for v in values.values())
    resolved = pruner.resolved_recipe()
    assert resolved["excluded_heads"] == ["classifier"]
    assert resolved["pruning_configs"][1]["layers"] == plan[1]["layers"]
    assert resolved["pruning_configs"][1]["min_sparsity_ratio_per_op"] == 0.5
    again = Pruner(tiny_bert(), resolved)  # the saved recipe is a valid recipe for the same model
    assert list(again.layers) == list(pruner.layers)
    resolved["pruning_configs"][1]["layers"] = resolved["pruning_configs"][1]["layers"][:2]
    with pytest.raises(RecipeError) as info:
        Pruner(tiny_bert(), Recipe.from_dict(resolved))
    assert info.value.path == "pruning_configs[1].layers"


def test_shipped_recipes_build_a_pruner():
    from transformers import BertForSequenceClassification

    # the compaction recipes keep 2 heads and 64-128 neurons per layer: a model with more of both
    wide = BertForSequenceClassification(tiny_bert_config(num_attention_heads=8, intermediate_size=512))
    for path in sorted((REPO / "recipes").glob("*.json")):
        if path.name != "schema.json":
            pruner = Pruner(wide if path.name in ("compact.json", "heads_neurons.json") else tiny_bert(), path)
            assert "bert.pooler.dense" not in pruner.layers or path.name == "mixed.json", path.name


def test_python_api_example_runs(tiny_bert_dir):
    text = (REPO / "docs" / "python_api.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    namespace = {"model_dir": str(tiny_bert_dir), "batches": batches(24)}
    import contextlib
    import os

    cwd = os.getcwd()
    try:
        os.chdir(tiny_bert_dir.parent)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, "docs/python_api.md", "exec"), namespace)
    finally:
        os.chdir(cwd)
    assert out.getvalue().strip() == "sparsity 0.800"
    assert namespace["pruner"].current_sparsity() == pytest.approx(0.8, abs=4 / 17408)


@pytest.mark.parametrize("pattern", ["2:4", "4x1", "1x1"])
def test_nan_weights_score_zero_and_counts_stay_exact(pattern):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 16))
    with torch.no_grad():
        model[0].weight[0, [0, 5, 9]] = float("nan")  # three different 2:4 groups
        model[2].weight[5, 1] = float("inf")
    recipe = Recipe.from_dict({"pattern": pattern, "target_sparsity": 0.5, "pruning_type": "magnitude",
                               "start_step": 0, "end_step": 0, "excluded_op_names": []})
    pruner = Pruner(model, recipe)
    pruner.on_train_begin()
    weights = [model[0].weight.detach(), model[2].weight.detach()]
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeros / sum(w.numel() for w in weights) == pytest.approx(0.5)
    assert pruner.log_values()["sparsity"] == pytest.approx(0.5)  # the counted sparsity is the real one
    for layer_weight, masks in zip(weights, pruner.keep_masks().values(), strict=True):
        assert torch.equal(layer_weight[~masks] == 0, torch.ones_like(layer_weight[~masks], dtype=torch.bool))
        if pattern == "2:4":
            assert_conforms(parse_pattern(pattern), masks)
    if pattern == "1x1":  # single weights: a NaN scores 0 and goes first
        assert not torch.isnan(weights[0]).any()
