from __future__ import annotations

import pytest
import torch

from prunecli.config import DistillConfig
from prunecli.errors import UserError
from prunecli.training.distill import Distiller, check_teacher_compatible, kl_with_temperature, masked_mse
from tests.helpers import tiny_bert_config


def _models(seed_student=1, seed_teacher=2):
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed_student)
    student = BertForSequenceClassification(tiny_bert_config())
    torch.manual_seed(seed_teacher)
    teacher = BertForSequenceClassification(tiny_bert_config())
    return student, teacher


def _batch(ids, lengths, pad_to):
    input_ids = torch.zeros(len(ids), pad_to, dtype=torch.long)
    mask = torch.zeros(len(ids), pad_to, dtype=torch.long)
    for row, (i, n) in enumerate(zip(ids, lengths, strict=True)):
        rowgen = torch.Generator().manual_seed(1000 + i)  # an example's tokens depend only on its id
        input_ids[row, :n] = torch.randint(5, 30, (n,), generator=rowgen)
        mask[row, :n] = 1
    return {
        "input_ids": input_ids,
        "attention_mask": mask,
        "token_type_ids": torch.zeros_like(input_ids),
        "labels": torch.tensor([i % 2 for i in ids]),
        "example_id": torch.tensor(ids),
    }


def test_masked_mse_ignores_padding():
    s = torch.zeros(1, 4, 3)
    t = torch.zeros(1, 4, 3)
    t[0, 3] = 100.0  # a padded position with garbage
    t[0, 0] = 1.0
    mask = torch.tensor([[1, 1, 1, 0]])
    assert masked_mse(s, t, mask).item() == pytest.approx(3 * 1.0 / (3 * 3))


def test_kl_is_zero_for_equal_logits_and_scaled_by_t_squared():
    logits = torch.randn(5, 3)
    assert kl_with_temperature(logits, logits, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    s, t = torch.randn(5, 3), torch.randn(5, 3)
    raw = torch.nn.functional.kl_div(
        torch.log_softmax(s / 4, -1), torch.softmax(t / 4, -1), reduction="batchmean"
    )
    assert kl_with_temperature(s, t, 4.0).item() == pytest.approx(16 * raw.item(), rel=1e-5)


def _student_outputs(student, batch, hidden):
    inputs = {k: v for k, v in batch.items() if k != "example_id"}
    return student(**inputs, output_hidden_states=hidden)


def test_hidden_mse_replaces_label_loss_and_can_add_it():
    student, teacher = _models()
    batch = _batch([0, 1, 2], [5, 3, 7], 7)
    out = _student_outputs(student, batch, True)
    d = Distiller(teacher, DistillConfig(distill_loss_weight=5.0), use_cache=False)
    loss, parts = d(batch, out)
    with torch.no_grad():
        t_hidden = teacher.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                token_type_ids=batch["token_type_ids"]).last_hidden_state
    expected = 5.0 * masked_mse(out.hidden_states[-1], t_hidden, batch["attention_mask"])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert parts["label_loss"] == pytest.approx(out.loss.item(), rel=1e-6)
    d2 = Distiller(teacher, DistillConfig(distill_loss_weight=5.0, distill_label_loss=True), use_cache=False)
    loss2, _ = d2(batch, out)
    assert loss2.item() == pytest.approx(expected.item() + out.loss.item(), rel=1e-5)
    loss.backward()  # gradients flow to the student only
    assert all(p.grad is None for p in teacher.parameters())
    assert student.bert.encoder.layer[0].attention.self.query.weight.grad is not None


def test_distill_padding_is_the_plain_mean_over_every_position_and_skips_the_cache():
    student, teacher = _models()
    batch = _batch([0, 1, 2], [5, 3, 7], 7)
    out = _student_outputs(student, batch, True)
    d = Distiller(teacher, DistillConfig(distill_loss_weight=5.0, distill_padding=True))
    assert d.cache is None  # padded positions depend on the batch's longest example: nothing to cache
    loss, _ = d(batch, out)
    with torch.no_grad():
        t_hidden = teacher.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                token_type_ids=batch["token_type_ids"]).last_hidden_state
    everywhere = ((out.hidden_states[-1] - t_hidden) ** 2).mean()
    assert loss.item() == pytest.approx(5.0 * everywhere.item(), rel=1e-5)
    real_only = masked_mse(out.hidden_states[-1], t_hidden, batch["attention_mask"])
    assert abs(everywhere.item() - real_only.item()) > 1e-4 * real_only.item()  # the two losses do differ here


def test_logits_kl_mixes_with_label_loss():
    student, teacher = _models()
    batch = _batch([3, 4], [4, 6], 6)
    out = _student_outputs(student, batch, False)
    cfg = DistillConfig(distill_type="logits_kl", distill_loss_weight=2.0, distill_alpha=0.25, distill_temperature=3)
    loss, parts = Distiller(teacher, cfg, use_cache=False)(batch, out)
    with torch.no_grad():
        t_logits = teacher(**{k: v for k, v in batch.items() if k not in ("example_id", "labels")}).logits
    kl = kl_with_temperature(out.logits, t_logits, 3.0)
    assert loss.item() == pytest.approx(0.25 * 2.0 * kl.item() + 0.75 * out.loss.item(), rel=1e-5)
    assert parts["distill_loss"] == pytest.approx(kl.item(), rel=1e-5)


@pytest.mark.parametrize("distill_type", ["hidden_mse", "logits_kl"])
def test_cache_is_exact_across_paddings_and_saves_teacher_calls(distill_type):
    student, teacher = _models()
    cfg = DistillConfig(distill_type=distill_type, distill_loss_weight=1.0)
    cached = Distiller(teacher, cfg)
    fresh = Distiller(teacher, cfg, use_cache=False)
    epoch1 = [_batch([0, 1], [4, 6], 6), _batch([2, 3], [3, 5], 5)]
    epoch2 = [_batch([3, 0], [5, 4], 8), _batch([1, 2], [6, 3], 6)]  # reshuffled, other padding
    kind = "hidden" if distill_type == "hidden_mse" else "logits"
    for batch in epoch1:
        cached.teacher_outputs(batch)
    calls_after_first_epoch = cached.teacher_forward_calls
    for batch in epoch2:
        a = cached.teacher_outputs(batch)[kind]
        b = fresh.teacher_outputs(batch)[kind]
        real = batch["attention_mask"].bool()
        if distill_type == "hidden_mse":
            assert torch.allclose(a[real], b[real], atol=1e-5)
        else:
            assert torch.allclose(a, b, atol=1e-5)
    assert calls_after_first_epoch == 2
    assert cached.teacher_forward_calls == 2  # the second epoch ran no teacher forward at all
    assert cached.cache.hits == 4


def _left_padded(batch):
    """The same examples padded on the left (position ids follow the real tokens, as a left-padding tokenizer's)."""
    out = dict(batch)
    real = batch["attention_mask"].bool()
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        rows = []
        for row, keep in zip(batch[key], real, strict=True):
            rows.append(torch.cat([torch.zeros(int((~keep).sum()), dtype=row.dtype), row[keep]]))
        out[key] = torch.stack(rows)
    return out


def test_cache_stores_real_tokens_whatever_the_padding_side():
    _, teacher = _models()
    cfg = DistillConfig(distill_loss_weight=1.0)
    cached = Distiller(teacher, cfg)
    right = _batch([0, 1, 2], [4, 6, 2], 6)
    cached.teacher_outputs(right)  # fills the cache from right-padded rows
    left = _left_padded(_batch([2, 0, 1], [2, 4, 6], 7))
    from_cache = cached.teacher_outputs(left)["hidden"]
    assert cached.teacher_forward_calls == 1
    fresh = Distiller(teacher, cfg, use_cache=False).teacher_outputs(right)["hidden"]
    real_left = left["attention_mask"].bool()
    assert torch.equal(from_cache[~real_left], torch.zeros_like(from_cache[~real_left]))
    for row_left, row_right in ((0, 2), (1, 0), (2, 1)):
        got = from_cache[row_left][real_left[row_left]]
        want = fresh[row_right][right["attention_mask"][row_right].bool()]
        assert torch.equal(got, want)


def test_cache_spreads_examples_over_blocks(monkeypatch):
    from prunecli.training.distill import TeacherCache

    monkeypatch.setattr(TeacherCache, "BLOCK_BYTES", 5 * 4 * 4)  # 5 rows of width 4 per block
    cache = TeacherCache(budget_bytes=2**20)
    values = {i: torch.arange(4.0 * (i + 1)).reshape(i + 1, 4) + 100 * i for i in range(4)}  # 1..4 rows
    for i, value in values.items():
        cache.put(i, value)
    assert len(cache.blocks) == 3 and cache.used_bytes == 10 * 4 * 4
    got = cache.get_batch([3, 0, 2, 1])
    for i, tensor in zip([3, 0, 2, 1], got, strict=True):
        assert torch.equal(tensor, values[i])
    assert cache.get_batch([0, 9]) is None and cache.misses == 2


def test_cache_respects_its_budget(monkeypatch):
    monkeypatch.setenv("PRUNECLI_TEACHER_CACHE_GB", str(1 / 2**30 * 200))  # 200 bytes
    _, teacher = _models()
    d = Distiller(teacher, DistillConfig(distill_loss_weight=1.0))
    d.teacher_outputs(_batch([0, 1], [4, 6], 6))
    assert d.cache.full and d.cache.used_bytes <= 200
    d.teacher_outputs(_batch([0, 1], [4, 6], 6))
    assert d.teacher_forward_calls == 2  # not everything fitted: recomputed, never wrong


def test_bad_options_and_incompatible_teacher():
    _, teacher = _models()
    with pytest.raises(UserError, match="distill_type"):
        Distiller(teacher, DistillConfig(distill_type="mse"))
    with pytest.raises(UserError, match="distill_alpha"):
        Distiller(teacher, DistillConfig(distill_alpha=1.5))
    with pytest.raises(UserError, match="hidden_mse only"):
        Distiller(teacher, DistillConfig(distill_type="logits_kl", distill_padding=True))
    with pytest.raises(UserError, match="hidden sizes"):
        check_teacher_compatible(tiny_bert_config(), tiny_bert_config(hidden_size=64), "hidden_mse")
    check_teacher_compatible(tiny_bert_config(), tiny_bert_config(hidden_size=64), "logits_kl")
    with pytest.raises(UserError, match="vocabulary"):
        check_teacher_compatible(tiny_bert_config(), tiny_bert_config(vocab_size=99), "logits_kl")


def _deeper_teacher():
    from transformers import BertForSequenceClassification

    torch.manual_seed(3)
    return BertForSequenceClassification(tiny_bert_config(num_hidden_layers=4))


def test_all_layers_match_every_student_layer_through_the_uniform_layer_map():
    student, _ = _models()
    teacher = _deeper_teacher()  # 4 layers for a 2-layer student: student 1 -> teacher 2, student 2 -> teacher 4
    batch = _batch([0, 1, 2], [5, 3, 7], 7)
    out = _student_outputs(student, batch, True)
    cfg = DistillConfig(distill_loss_weight=3.0, distill_hidden_layers="all")
    d = Distiller(teacher, cfg, use_cache=False)
    loss, parts = d(batch, out)
    assert d.layer_map(2) == [(1, 2), (2, 4)]
    with torch.no_grad():
        t = teacher.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         token_type_ids=batch["token_type_ids"], output_hidden_states=True).hidden_states
    mask = batch["attention_mask"]
    per_layer = [masked_mse(out.hidden_states[s], t[j], mask) for s, j in ((1, 2), (2, 4))]
    assert loss.item() == pytest.approx(3.0 * sum(x.item() for x in per_layer) / 2, rel=1e-5)
    assert parts["distill_loss"] == pytest.approx(sum(x.item() for x in per_layer) / 2, rel=1e-5)
    last_only = Distiller(teacher, DistillConfig(distill_loss_weight=3.0), use_cache=False)(batch, out)[0]
    assert abs(last_only.item() - loss.item()) > 1e-6  # "all" is not the last layer alone


def test_all_layer_cache_is_exact():
    student, teacher = _models()
    cfg = DistillConfig(distill_loss_weight=1.0, distill_hidden_layers="all")
    cached, fresh = Distiller(teacher, cfg), Distiller(teacher, cfg, use_cache=False)
    out = _student_outputs(student, _batch([0, 1], [4, 6], 6), True)
    first, _ = cached(_batch([0, 1], [4, 6], 6), out)
    again = _batch([1, 0], [6, 4], 9)
    out2 = _student_outputs(student, again, True)
    assert cached(again, out2)[0].item() == pytest.approx(fresh(again, out2)[0].item(), rel=1e-5)
    assert cached.teacher_forward_calls == 1


def test_logits_kl_with_a_hidden_term_and_pure_kd():
    student, teacher = _models()
    batch = _batch([3, 4], [4, 6], 6)
    out = _student_outputs(student, batch, True)
    cfg = DistillConfig(distill_type="logits_kl", distill_loss_weight=1.0, distill_alpha=1.0, distill_temperature=2,
                        distill_hidden_weight=0.5)
    d = Distiller(teacher, cfg, use_cache=False)
    assert d.output_hidden_states
    loss, parts = d(batch, out)
    with torch.no_grad():
        t = teacher(**{k: v for k, v in batch.items() if k not in ("example_id", "labels")}, output_hidden_states=True)
    kl = kl_with_temperature(out.logits, t.logits, 2.0)
    mse = masked_mse(out.hidden_states[-1], t.hidden_states[-1], batch["attention_mask"])
    assert loss.item() == pytest.approx(kl.item() + 0.5 * mse.item(), rel=1e-5)  # alpha 1: no label loss at all
    assert parts["hidden_loss"] == pytest.approx(mse.item(), rel=1e-5)
    with pytest.raises(UserError, match="distill_hidden_weight"):
        Distiller(teacher, DistillConfig(distill_hidden_weight=1.0))
    with pytest.raises(UserError, match="distill_hidden_layers"):
        Distiller(teacher, DistillConfig(distill_hidden_layers="some"))
