"""The training loop's parts for question answering and token classification: the collator, and distillation
from start/end and per-token logits with the teacher cache keyed by window."""

from __future__ import annotations

import pytest
import torch

from prunecli.config import DistillConfig
from prunecli.training.distill import Distiller, kl_with_temperature
from prunecli.training.setup import PaddingCollator
from tests.helpers import tiny_bert_config


class _Tok:
    pad_token_id, pad_token_type_id, padding_side = 0, 0, "right"


def test_collator_pads_token_labels_with_ignore_and_passes_spans():
    rows = [{"input_ids": [2, 5, 3], "attention_mask": [1, 1, 1], "labels": [-100, 1, -100], "example_id": 7},
            {"input_ids": [2, 3], "attention_mask": [1, 1], "labels": [-100, -100], "example_id": 8}]
    batch = PaddingCollator(_Tok(), is_regression=False)(rows)
    assert batch["labels"].tolist() == [[-100, 1, -100], [-100, -100, -100]]
    assert batch["example_id"].tolist() == [7, 8]
    spans = [{"input_ids": [2, 5, 3], "start_positions": 1, "end_positions": 1, "example_id": 0},
             {"input_ids": [2, 3], "start_positions": 0, "end_positions": 0, "example_id": 1}]
    batch = PaddingCollator(_Tok(), is_regression=False)(spans)
    assert batch["start_positions"].tolist() == [1, 0] and "labels" not in batch
    assert batch["input_ids"].tolist() == [[2, 5, 3], [2, 3, 0]]


def _qa_batch(window_ids, lengths, pad_to=12):
    input_ids = torch.zeros(len(window_ids), pad_to, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for row, (i, n) in enumerate(zip(window_ids, lengths, strict=True)):
        input_ids[row, :n] = torch.randint(5, 30, (n,), generator=torch.Generator().manual_seed(100 + i))
        mask[row, :n] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(input_ids),
            "start_positions": torch.tensor([1] * len(window_ids)),
            "end_positions": torch.tensor([2] * len(window_ids)),
            "example_id": torch.tensor(window_ids)}


def test_qa_distillation_caches_each_window_and_matches_fresh_outputs():
    from transformers import BertForQuestionAnswering

    torch.manual_seed(0)
    student = BertForQuestionAnswering(tiny_bert_config(num_labels=2))
    torch.manual_seed(1)
    teacher = BertForQuestionAnswering(tiny_bert_config(num_labels=2))
    cfg = DistillConfig(distill_loss_weight=1.0, distill_type="logits_kl")
    cached = Distiller(teacher, cfg, task_type="question_answering")
    fresh = Distiller(teacher, cfg, use_cache=False, task_type="question_answering")
    # two windows of one question are two rows with their own ids (a window's index), of other lengths
    first, again = _qa_batch([0, 1], [9, 6]), _qa_batch([1, 0], [6, 9], pad_to=10)
    out = student(**{k: v for k, v in first.items() if k != "example_id"})
    loss, parts = cached(first, out)
    assert loss.requires_grad and parts["distill_loss"] > 0
    calls = cached.teacher_forward_calls
    out_again = student(**{k: v for k, v in again.items() if k != "example_id"})
    loss_cached, _ = cached(again, out_again)
    assert cached.teacher_forward_calls == calls  # served from the cache, keyed by window
    loss_fresh, _ = fresh(again, out_again)
    assert loss_cached.item() == pytest.approx(loss_fresh.item(), rel=1e-5)


def test_qa_kl_leaves_padding_out():
    """Padded positions carry no probability: changing their logits does not move the loss."""
    cfg = DistillConfig(distill_loss_weight=1.0, distill_type="logits_kl")
    distiller = Distiller(torch.nn.Linear(1, 1), cfg, use_cache=False, task_type="question_answering")
    batch = {"attention_mask": torch.tensor([[1, 1, 1, 0]])}
    student, target = torch.randn(1, 4, 2), torch.randn(1, 4, 2)
    base = distiller.logits_kl(batch, student, target)
    student[0, 3], target[0, 3] = 50.0, -50.0
    assert distiller.logits_kl(batch, student, target).item() == pytest.approx(base.item(), rel=1e-5)


def test_ner_kl_counts_labelled_tokens_only():
    cfg = DistillConfig(distill_loss_weight=1.0, distill_type="logits_kl")
    distiller = Distiller(torch.nn.Linear(1, 1), cfg, use_cache=False, task_type="token_classification")
    labels = torch.tensor([[-100, 2, -100, 0]])
    student, target = torch.randn(1, 4, 3), torch.randn(1, 4, 3)
    expected = kl_with_temperature(student[0, [1, 3]], target[0, [1, 3]], cfg.distill_temperature)
    got = distiller.logits_kl({"labels": labels, "attention_mask": torch.ones(1, 4)}, student, target)
    assert got.item() == pytest.approx(expected.item())
