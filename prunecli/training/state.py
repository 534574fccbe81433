"""The training loop's running state: one object that `fit()` updates and a resumable checkpoint stores.

`TrainState` holds the position (optimizer steps, epoch, batches into the epoch), the running totals
(training seconds, examples seen), the per-epoch metrics, and the loss being accumulated over the
micro-batches of the current optimizer step. `to_json()` is the `trainer_state.json` payload (with
the settings a resume must share); `TrainState.from_json()` restores it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Settings a resumed run must share with the run that wrote the checkpoint, or the data position is meaningless.
RESUME_INVARIANTS = ("num_processes", "per_device_train_batch_size", "gradient_accumulation_steps", "seed",
                     "train_examples", "update_steps_per_epoch")


@dataclass
class TrainState:
    completed_steps: int = 0  # optimizer steps done
    epoch: int = 0  # the epoch being trained (or, in a checkpoint, the one to resume in)
    batches_in_epoch: int = 0  # batches of `epoch` already consumed
    train_seconds: float = 0.0  # time in training steps (evaluation and saving excluded)
    examples_seen: int = 0  # over all processes
    epoch_results: list[dict[str, Any]] = field(default_factory=list)
    evaluated_at: int = -1  # the step of the latest evaluation
    train_ended: bool = False  # plug-ins' on_train_end has run
    # the optimizer step being accumulated (one entry per micro-batch of gradient accumulation)
    step_loss: float = 0.0
    step_micro: int = 0
    step_parts: dict[str, float] = field(default_factory=dict)

    def add_micro_batch(self, loss: float, parts: dict[str, float]) -> None:
        self.step_loss += loss
        self.step_micro += 1
        for key, value in parts.items():
            self.step_parts[key] = self.step_parts.get(key, 0.0) + value

    def finish_step(self) -> tuple[float, dict[str, float]]:
        """The mean loss and loss parts of the optimizer step just taken; the accumulators restart."""
        n = max(1, self.step_micro)
        loss, parts = self.step_loss / n, {k: v / n for k, v in self.step_parts.items()}
        self.completed_steps += 1
        self.step_loss, self.step_micro, self.step_parts = 0.0, 0, {}
        return loss, parts

    @property
    def examples_per_second(self) -> float:
        return self.examples_seen / self.train_seconds if self.train_seconds > 0 else 0.0

    def to_json(self, *, resume_epoch: int, resume_batches: int, settings: dict[str, Any]) -> dict[str, Any]:
        """The resume payload: where to continue (`resume_epoch`, `resume_batches`), totals, and `settings`
        (RESUME_INVARIANTS plus the run's size) for the consistency check."""
        return {
            "completed_steps": self.completed_steps, "epoch": resume_epoch, "batches_in_epoch": resume_batches,
            **settings, "epoch_results": self.epoch_results, "train_seconds": self.train_seconds,
            "examples_seen": self.examples_seen,
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> TrainState:
        return cls(
            completed_steps=int(payload["completed_steps"]), epoch=int(payload.get("epoch", 0)),
            batches_in_epoch=int(payload.get("batches_in_epoch", 0)),
            train_seconds=float(payload.get("train_seconds", 0.0)), examples_seen=int(payload.get("examples_seen", 0)),
            epoch_results=list(payload.get("epoch_results", [])),
        )
