"""Evaluation of the tasks with per-token outputs (question answering, token classification) in the training loop.

The loader batches rows by length, and several processes each see a share: per-token outputs are padded
across processes, gathered, and put back in row order by `example_id` before the task's module scores them
(`prunecli.tasks.qa.score_split`: windows -> answers -> EM/F1; `prunecli.tasks.ner.score_split`: first
sub-tokens -> tags -> seqeval).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from prunecli.data.examples import EXAMPLE_ID, TokenizedData


def token_task_scores(accelerator, loader, forward: Callable[[dict], Any], data: TokenizedData, split: str,
                      data_cfg, id2label: dict[int, str]) -> tuple[dict[str, float], float | None]:
    """(scores, mean evaluation loss or None) of one evaluation split of a QA or token-classification task."""
    qa = data.task.task_type == "question_answering"
    rows: dict[int, tuple] = {}
    loss_sum, loss_count = 0.0, 0
    for batch in loader:
        with torch.no_grad():
            outputs = forward(batch)
        if qa:
            first, second = outputs.start_logits.float(), outputs.end_logits.float()
        else:
            first, second = outputs.logits.argmax(dim=-1), batch["labels"]
        first = accelerator.pad_across_processes(first, dim=1, pad_index=-100)
        second = accelerator.pad_across_processes(second, dim=1, pad_index=-100)
        ids, first, second = accelerator.gather_for_metrics((batch[EXAMPLE_ID], first, second))
        for i, a, b in zip(ids.tolist(), first.cpu().numpy(), second.cpu().numpy(), strict=True):
            rows[i] = (a, b)
        if outputs.loss is not None:
            loss_sum += float(accelerator.reduce(outputs.loss.detach(), "mean"))
            loss_count += 1
    raw = data.task.eval_splits[split]
    if qa:
        from prunecli.tasks.qa import score_split

        examples, offsets = data.eval_windows[split]
        order = range(len(examples))  # a window's example_id is its index
        scores = score_split(raw, examples, offsets, [rows[i][0] for i in order], [rows[i][1] for i in order],
                             data_cfg)
    else:
        from prunecli.tasks.ner import score_split

        order = raw[EXAMPLE_ID]  # a sentence's example_id is its row's
        scores = score_split(raw, [rows[i][0] for i in order], [rows[i][1] for i in order], id2label)
    return scores, (loss_sum / loss_count if loss_count else None)
