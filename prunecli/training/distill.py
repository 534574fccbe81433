"""Knowledge distillation from the dense teacher: the loss plug-in of the shared training loop.

Two losses:

* ``hidden_mse`` (the reference example's choice, after "Knowledge Distillation with the Reused
  Teacher Classifier", arXiv:2203.14001): ``w * MSE(student last hidden state, teacher last hidden
  state)`` *replacing* the label loss (``distill_label_loss=True`` adds the label loss back).
  Unlike the reference, the MSE is taken over real tokens only by default: which padded positions
  exist depends on the batch's longest example, so their teacher outputs cannot be cached per
  example. ``distill_padding=True`` takes the reference's plain mean over every position (padded
  ones included; their outputs are still functions of the example's real tokens), and the teacher
  then runs on every step.
* ``logits_kl``: ``alpha * w * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * label loss``
  (Hinton et al.; T = ``distill_temperature``).

Question answering and token classification (``task_type``): ``logits_kl`` compares the start and the end
distribution over each window's real tokens (QA), or each labelled token's label distribution (NER); their
per-token teacher logits are cached like hidden states, per real token of a row, and a QA row is one window
(its ``example_id`` is the window's index, so two windows of one question never share an entry).

Avoidable work is removed: the teacher is frozen and in eval mode, so its outputs for an example
never change. They are computed once (first epoch) and cached per ``example_id`` when the cache
fits in ``PRUNECLI_TEACHER_CACHE_GB`` (default 4 GiB); only the teacher's encoder runs for
``hidden_mse`` (no classifier, no intermediate hidden states), only its logits for ``logits_kl``.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F

from prunecli.config import DISTILL_TYPES, HIDDEN_LAYERS, DistillConfig
from prunecli.errors import UserError
from prunecli.tasks import output_logits


def masked_mse(student: torch.Tensor, teacher: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the real (non-padded) tokens of [B, L, H] hidden states."""
    mask = attention_mask.to(student.dtype).unsqueeze(-1)  # [B, L, 1]
    squared = (student - teacher) ** 2 * mask
    denom = mask.sum() * student.shape[-1]
    return squared.sum() / denom.clamp_min(1.0)


def kl_with_temperature(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) of temperature-softened distributions, scaled by T^2 (batch mean)."""
    t = temperature
    return F.kl_div(
        F.log_softmax(student_logits / t, dim=-1),
        F.softmax(teacher_logits / t, dim=-1),
        reduction="batchmean",
    ) * (t * t)


def check_teacher_compatible(student_config: Any, teacher_config: Any, distill_type: str,
                             hidden: bool | None = None) -> None:
    """Refuse a teacher that cannot be distilled from, before any training time is spent.

    `hidden`: whether hidden states are matched (default: for hidden_mse only).
    """
    hidden = distill_type == "hidden_mse" if hidden is None else hidden
    if getattr(student_config, "vocab_size", None) != getattr(teacher_config, "vocab_size", None):
        raise UserError(
            f"the teacher's vocabulary ({teacher_config.vocab_size}) differs from the student's "
            f"({student_config.vocab_size}): both must read the same token ids",
            hint="pass a teacher fine-tuned from the same base model (--teacher_model_name_or_path)",
        )
    if hidden and student_config.hidden_size != teacher_config.hidden_size:
        raise UserError(
            f"matching hidden states needs equal hidden sizes (student {student_config.hidden_size}, "
            f"teacher {teacher_config.hidden_size})",
            hint="use --distill_type logits_kl without --distill_hidden_weight for a teacher of another width",
        )
    if distill_type == "logits_kl" and student_config.num_labels != teacher_config.num_labels:
        raise UserError(
            f"logits_kl needs the same labels (student {student_config.num_labels}, "
            f"teacher {teacher_config.num_labels})",
            hint="pass a teacher fine-tuned on the same task",
        )


class TeacherCache:
    """Per-example teacher outputs, unpadded, keyed by example_id.

    Rows ([len_i, H] hidden states of the real tokens, or [1, C] logits) are copied into a few large
    blocks (64 MiB each) rather than kept as one small tensor per example: thousands of small
    long-lived allocations interleaved with the training step's activations fragment the CPU heap
    and keep freed memory resident (measured: +180 MiB peak RSS for 800 MRPC examples).
    """

    BLOCK_BYTES = 64 * 2**20

    def __init__(self, budget_bytes: int):
        self.budget_bytes = budget_bytes
        self.used_bytes = 0  # bytes of stored rows
        self.allocated_bytes = 0  # bytes of blocks
        self.blocks: list[torch.Tensor] = []
        self.fill = 0  # rows used in the last block
        self.index: dict[int, tuple[int, int, int]] = {}  # example_id -> (block, first row, rows)
        self.full = False  # set once the budget is exceeded: later examples are recomputed each time
        self.hits = 0
        self.misses = 0

    def get_batch(self, example_ids: list[int]) -> list[torch.Tensor] | None:
        """The stored rows of every example, or None (counted as misses) if any is missing."""
        spans = [self.index.get(i) for i in example_ids]
        if any(span is None for span in spans):
            self.misses += len(example_ids)
            return None
        self.hits += len(example_ids)
        return [self.blocks[b][start : start + rows] for b, start, rows in spans]  # type: ignore[misc]

    def _room(self, rows: int, like: torch.Tensor) -> torch.Tensor | None:
        """The block that takes `rows` more rows (a new one if needed), or None when over budget."""
        if self.blocks and self.fill + rows <= self.blocks[-1].shape[0]:
            return self.blocks[-1]
        row_bytes = like.shape[-1] * like.element_size()
        left = self.budget_bytes - self.allocated_bytes
        block_rows = max(rows, min(self.BLOCK_BYTES, left) // row_bytes)
        if block_rows * row_bytes > left:
            return None
        self.blocks.append(torch.empty(block_rows, like.shape[-1], dtype=like.dtype, device=like.device))
        self.allocated_bytes += block_rows * row_bytes
        self.fill = 0
        return self.blocks[-1]

    def put(self, example_id: int, value: torch.Tensor) -> None:
        """Store one example's rows ([rows, width], or [width] for a single row)."""
        if self.full or example_id in self.index:
            return
        rows = value.reshape(-1, value.shape[-1]).detach()
        block = self._room(rows.shape[0], rows)
        if block is None:
            self.full = True
            return
        block[self.fill : self.fill + rows.shape[0]].copy_(rows)
        self.index[example_id] = (len(self.blocks) - 1, self.fill, rows.shape[0])
        self.fill += rows.shape[0]
        self.used_bytes += rows.numel() * rows.element_size()


class Distiller:
    """Callable loss plug-in for `Trainer.set_loss_fn`: ``(batch, student_outputs) -> (loss, parts)``.

    ``batch`` carries ``example_id`` (for the cache), ``attention_mask`` and the model inputs;
    ``student_outputs`` carries ``loss`` (the label loss), ``logits`` and, when hidden states are
    matched, ``hidden_states`` (set ``trainer.output_hidden_states = distiller.output_hidden_states``).

    Hidden states are matched for ``hidden_mse`` and, with ``distill_hidden_weight > 0``, for
    ``logits_kl`` too. ``distill_hidden_layers`` says which: ``last`` (the encoder's output, INC's
    example) or ``all`` (the output of every student layer, each against the teacher layer
    ``layer_map`` assigns it: layer i of an L_s-layer student against layer i * L_t // L_s of an
    L_t-layer teacher, TinyBERT's uniform map). The MSE is the mean over the matched layers.
    """

    def __init__(self, teacher: torch.nn.Module, cfg: DistillConfig, *, use_cache: bool | None = None,
                 task_type: str = "classification"):
        if cfg.distill_type not in DISTILL_TYPES:
            raise UserError(
                f"unknown --distill_type {cfg.distill_type!r}", hint=f"choose one of: {', '.join(DISTILL_TYPES)}"
            )
        if cfg.distill_hidden_layers not in HIDDEN_LAYERS:
            raise UserError(f"unknown --distill_hidden_layers {cfg.distill_hidden_layers!r}",
                            hint=f"choose one of: {', '.join(HIDDEN_LAYERS)}")
        if cfg.distill_loss_weight < 0 or cfg.distill_hidden_weight < 0:
            raise UserError("--distill_loss_weight and --distill_hidden_weight must be >= 0",
                            hint="0 turns distillation off")
        if not 0.0 <= cfg.distill_alpha <= 1.0:
            raise UserError("--distill_alpha must be in [0, 1]", hint="0.5 weighs KL and label loss equally")
        if cfg.distill_temperature <= 0:
            raise UserError("--distill_temperature must be > 0", hint="2 is the usual value")
        if cfg.distill_padding and cfg.distill_type != "hidden_mse":
            raise UserError("--distill_padding applies to --distill_type hidden_mse only",
                            hint="logits_kl compares one prediction per example: there are no positions to pad")
        if cfg.distill_hidden_weight > 0 and cfg.distill_type != "logits_kl":
            raise UserError("--distill_hidden_weight adds a hidden-state term to --distill_type logits_kl",
                            hint="with hidden_mse the hidden-state term is weighted by --distill_loss_weight")
        self.cfg = cfg
        self.task_type = task_type
        # question answering and token classification have logits per token: cached like hidden states, per
        # real token of each row (a question-answering row is one window, so its id is the window's)
        self.token_logits = task_type != "classification"
        self.teacher = teacher
        self.teacher.eval()
        self.teacher.requires_grad_(False)
        self.uses_logits = cfg.distill_type == "logits_kl"
        self.uses_hidden = cfg.distill_type == "hidden_mse" or cfg.distill_hidden_weight > 0
        self.hidden_weight = cfg.distill_loss_weight if cfg.distill_type == "hidden_mse" else cfg.distill_hidden_weight
        self.output_hidden_states = self.uses_hidden
        enabled = cfg.cache_teacher_outputs if use_cache is None else use_cache
        if self.uses_hidden and cfg.distill_padding:
            enabled = False  # the cache keeps real tokens only
        budget = int(float(os.environ.get("PRUNECLI_TEACHER_CACHE_GB", "4")) * 2**30)
        kinds = [k for k, used in (("logits", self.uses_logits), ("hidden", self.uses_hidden)) if used]
        # one budget for all kinds: the hidden states, when matched, take nearly all of it
        self.caches = {k: TeacherCache(budget if k == "hidden" else min(budget, 2**27)) for k in kinds} \
            if enabled else {}
        self.teacher_forward_calls = 0

    @property
    def cache(self) -> TeacherCache | None:
        """The cache of the main teacher output (hidden states for hidden_mse, logits for logits_kl)."""
        return self.caches.get("logits" if self.uses_logits else "hidden")

    def to(self, device: torch.device | str) -> Distiller:
        self.teacher.to(device)
        return self

    def layer_map(self, student_layers: int) -> list[tuple[int, int]]:
        """(student, teacher) indices into `hidden_states` (0 = embeddings) of the matched layers."""
        teacher_layers = int(self.teacher.config.num_hidden_layers)
        if self.cfg.distill_hidden_layers == "last":
            return [(student_layers, teacher_layers)]
        return [(i, i * teacher_layers // student_layers) for i in range(1, student_layers + 1)]

    # -- teacher side -------------------------------------------------------------------------------
    def _teacher_forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The teacher's logits [B, C] and/or matched hidden states [B, L, k * H] (k matched layers)."""
        self.teacher_forward_calls += 1
        out: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            all_layers = self.cfg.distill_hidden_layers == "all"
            if self.uses_logits:
                result = self.teacher(**inputs, output_hidden_states=self.uses_hidden)
                out["logits"] = output_logits(result)
                hidden_states = result.hidden_states
            elif self.uses_hidden:
                # hidden states only: the encoder alone (no pooler or classifier, no intermediate states for `last`)
                encoder = getattr(self.teacher, self.teacher.base_model_prefix, None) or self.teacher.base_model
                result = encoder(**inputs, output_hidden_states=all_layers)
                hidden_states = result.hidden_states if all_layers else (result.last_hidden_state,)
            if self.uses_hidden:
                if all_layers:
                    # before the first loss the student's depth is unknown: assume the teacher's
                    pairs = self._map or self.layer_map(int(self.teacher.config.num_hidden_layers))
                    out["hidden"] = torch.cat([hidden_states[t] for _, t in pairs], dim=-1)
                else:
                    out["hidden"] = hidden_states[-1]
        return out

    def teacher_outputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The teacher's outputs for a batch (`logits` and/or `hidden`), from the cache where it has them."""
        model_inputs = {
            k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids", "position_ids")
        }
        ids = batch.get("example_id")
        if not self.caches or ids is None:
            return self._teacher_forward(model_inputs)
        id_list = [int(i) for i in ids.tolist()]
        real = batch["attention_mask"].bool()  # real tokens, wherever the padding side puts them
        found = {kind: cache.get_batch(id_list) for kind, cache in self.caches.items()}
        if all(rows is not None for rows in found.values()):
            out = {}
            for kind, rows in found.items():
                if kind == "logits" and not self.token_logits:
                    out[kind] = torch.cat(rows).to(real.device)
                else:
                    full = torch.zeros(*real.shape, rows[0].shape[-1], dtype=rows[0].dtype, device=real.device)
                    full[real] = torch.cat(rows).to(real.device)
                    out[kind] = full
            return out
        fresh = self._teacher_forward(model_inputs)
        for kind, cache in self.caches.items():
            if kind == "logits" and not self.token_logits:
                for example_id, logits in zip(id_list, fresh[kind], strict=True):
                    cache.put(example_id, logits)
            else:
                lengths = real.sum(dim=1).tolist()
                for example_id, rows in zip(id_list, fresh[kind][real].split(lengths), strict=True):
                    cache.put(example_id, rows)
        return fresh

    # -- loss -------------------------------------------------------------------------------------------
    _map: list[tuple[int, int]] | None = None

    def logits_kl(self, batch: dict[str, torch.Tensor], student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """KL of the teacher's and student's softened distributions: over labels per example (classification), over
        labels per labelled token (token classification: padding and later sub-tokens left out), over the real
        positions of the window for the start and for the end (question answering, their mean)."""
        t = self.cfg.distill_temperature
        if self.task_type == "question_answering":
            real = batch["attention_mask"].bool().unsqueeze(-1)  # [B, L, 1]
            far = torch.finfo(student.dtype).min / 2
            student, teacher = student.masked_fill(~real, far), teacher.masked_fill(~real, far)
            # positions are the classes: [B, L, 2] -> [2B, L]
            return kl_with_temperature(student.transpose(1, 2).flatten(0, 1), teacher.transpose(1, 2).flatten(0, 1),
                                       t)
        if self.task_type == "token_classification":
            labels = batch.get("labels")
            keep = labels != -100 if labels is not None else batch["attention_mask"].bool()
            return kl_with_temperature(student[keep], teacher[keep], t)
        return kl_with_temperature(student, teacher, t)

    def _hidden_loss(self, batch: dict[str, torch.Tensor], outputs: Any, target: torch.Tensor) -> torch.Tensor:
        student_layers = len(outputs.hidden_states) - 1
        if self._map is None:
            self._map = self.layer_map(student_layers)
        student = torch.cat([outputs.hidden_states[s] for s, _ in self._map], dim=-1)
        target = target.to(student.dtype)
        if self.cfg.distill_padding:
            return F.mse_loss(student, target)
        return masked_mse(student, target, batch["attention_mask"])

    def __call__(self, batch: dict[str, torch.Tensor], outputs: Any) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        label_loss = outputs.loss
        if self.uses_hidden and self._map is None:
            self._map = self.layer_map(len(outputs.hidden_states) - 1)
        target = self.teacher_outputs(batch)
        parts = {"label_loss": float(label_loss.detach())}
        if self.uses_logits:
            student_logits = output_logits(outputs)
            kl = self.logits_kl(batch, student_logits, target["logits"].to(student_logits.dtype))
            loss = cfg.distill_alpha * cfg.distill_loss_weight * kl
            if cfg.distill_alpha < 1.0:
                loss = loss + (1.0 - cfg.distill_alpha) * label_loss
            parts["distill_loss"] = float(kl.detach())
            if self.uses_hidden:
                hidden = self._hidden_loss(batch, outputs, target["hidden"])
                loss = loss + self.hidden_weight * hidden
                parts["hidden_loss"] = float(hidden.detach())
        else:
            hidden = self._hidden_loss(batch, outputs, target["hidden"])
            loss = self.hidden_weight * hidden
            if cfg.distill_label_loss:
                loss = loss + label_loss
            parts["distill_loss"] = float(hidden.detach())
        return loss, parts

    def log_values(self) -> dict[str, float]:
        if not self.caches:
            return {}
        return {"teacher_cache_mb": sum(c.used_bytes for c in self.caches.values()) / 1e6}
