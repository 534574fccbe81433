"""Criteria: the score formulas, the 0.9 momentum, missing and non-finite gradients."""

from __future__ import annotations

import pytest
import torch

from prunecli.sparsity.criteria import (
    GradientCriterion,
    MagnitudeCriterion,
    SnipCriterion,
    SnipMomentumCriterion,
    make_criterion,
)


def tensors(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)


def test_magnitude_reads_the_weights_at_the_event():
    w, _ = tensors()
    c = MagnitudeCriterion()
    assert c.new_score(w) is None and not c.needs_grad
    c.update([], [], [])
    assert torch.equal(c.score(None, w), w.abs())


def test_gradient_and_snip_use_the_latest_step_only():
    w, g = tensors()
    for crit, expected in ((GradientCriterion(), g.abs()), (SnipCriterion(), (w * g).abs())):
        s = crit.new_score(w)
        crit.update([s], [w], [torch.randn(4, 6)])
        crit.update([s], [w], [g])
        assert torch.allclose(crit.score(s, w), expected)
        assert not crit.every_step


def test_snip_momentum_accumulates_with_momentum_0_9():
    c = make_criterion("snip_momentum")
    assert isinstance(c, SnipMomentumCriterion) and c.momentum == 0.9 and c.every_step
    w1, g1 = tensors(1)
    w2, g2 = tensors(2)
    s = c.new_score(w1)
    c.update([s], [w1], [g1])
    c.update([s], [w2], [g2])
    assert torch.allclose(s, 0.9 * (w1 * g1).abs() + (w2 * g2).abs())


def test_missing_gradient_counts_as_zero():
    w, g = tensors()
    mom = SnipMomentumCriterion()
    s = mom.new_score(w)
    mom.update([s], [w], [g])
    before = s.clone()
    mom.update([s], [w], [None])
    assert torch.allclose(s, 0.9 * before)
    snip = SnipCriterion()
    s = snip.new_score(w)
    snip.update([s], [w], [g])
    snip.update([s], [w], [None])
    assert not s.any()


def test_non_finite_contributions_are_dropped():
    w, g = tensors()
    g[0, 0] = float("inf")
    g[1, 1] = float("nan")
    for crit in (SnipMomentumCriterion(), SnipCriterion(), GradientCriterion()):
        s = crit.new_score(w)
        crit.update([s], [w], [g])
        assert torch.isfinite(s).all()
        assert s[0, 0] == 0 and s[1, 1] == 0


def test_bf16_weights_keep_float32_scores():
    w, g = (t.to(torch.bfloat16) for t in tensors())
    c = SnipMomentumCriterion()
    s = c.new_score(w)
    c.update([s], [w], [g])
    assert s.dtype == torch.float32 and torch.allclose(s, (w * g).abs().float())


def test_make_criterion_names():
    assert isinstance(make_criterion("magnitude"), MagnitudeCriterion)
    assert isinstance(make_criterion("gradient"), GradientCriterion)
    assert isinstance(make_criterion("snip"), SnipCriterion)
    assert isinstance(make_criterion("snip_momentum"), SnipMomentumCriterion)
    with pytest.raises(ValueError):  # the suffix is the recipe's to parse (parse_pruning_type), not a criterion
        make_criterion("snip_momentum_progressive")
    with pytest.raises(ValueError):
        make_criterion("pattern_lock")
    with pytest.raises(ValueError):
        SnipMomentumCriterion(momentum=1.0)


def test_pruning_types_are_parsed_in_one_place():
    from prunecli.sparsity.recipe import parse_pruning_type

    parsed = parse_pruning_type("snip_momentum_progressive")
    assert (parsed.name, parsed.criterion, parsed.progressive) == ("snip_momentum_progressive", "snip_momentum", True)
    assert parse_pruning_type("magnitude").criterion == "magnitude" and not parse_pruning_type("magnitude").progressive
    assert parse_pruning_type("pattern_lock").lock
    with pytest.raises(ValueError, match="not a valid"):
        parse_pruning_type("snip_momentum_progressive_progressive")


def test_a_registered_criterion_is_a_pruning_type(monkeypatch):
    """A user's own importance: registered once, then usable in recipes (and as its _progressive form)."""
    import torch
    from torch import nn

    from prunecli.sparsity import criteria
    from prunecli.sparsity.pruner import Pruner
    from prunecli.sparsity.recipe import Recipe

    class SquaredMagnitude(criteria.Criterion):
        name = "squared_magnitude"
        needs_grad = False

        def new_score(self, weight):
            return None

        def update(self, scores, weights, grads):
            return None

        def score(self, stored, weight):
            return weight.detach().float() ** 2

    monkeypatch.setattr(criteria, "_REGISTRY", dict(criteria._REGISTRY))
    criteria.register_criterion("squared_magnitude", SquaredMagnitude)
    with pytest.raises(ValueError, match="already registered"):
        criteria.register_criterion("squared_magnitude", SquaredMagnitude)
    with pytest.raises(ValueError, match="invalid criterion name"):
        criteria.register_criterion("x_progressive", SquaredMagnitude)
    assert Recipe.from_dict({"pruning_type": "squared_magnitude_progressive"})
    model = nn.Sequential(nn.Linear(8, 8))
    with torch.no_grad():
        model[0].weight.copy_(torch.arange(64.0).reshape(8, 8) - 20)
    pruner = Pruner(model, {"target_sparsity": 0.25, "pattern": "1x1", "pruning_type": "squared_magnitude",
                            "excluded_op_names": []})
    pruner.on_train_begin()  # a gradient-free criterion prunes its step-0 event at once
    zeros = model[0].weight == 0
    assert int(zeros.sum()) == 16
    assert float(model[0].weight.detach().abs()[zeros].sum()) == 0.0
    kept = model[0].weight.detach().abs()[~zeros]
    assert float(kept.min()) >= 8  # the 16 smallest squares are |w| <= 7 (w = -20 ... 43)
