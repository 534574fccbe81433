"""Criteria: the score formulas, the 0.9 momentum, missing and non-finite gradients."""

from __future__ import annotations

import pytest
import torch

from prunecli.criteria import (
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
    assert isinstance(make_criterion("snip_momentum_progressive"), SnipMomentumCriterion)
    assert isinstance(make_criterion("magnitude_progressive"), MagnitudeCriterion)
    with pytest.raises(ValueError):
        make_criterion("pattern_lock")
    with pytest.raises(ValueError):
        SnipMomentumCriterion(momentum=1.0)
