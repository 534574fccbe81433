"""When to prune and how far: optimizer step -> target sparsity.

Steps count *optimizer* steps (not micro-batches). Pruning events happen at
`start_step, start_step + f, ...` up to `end_step` (f = `pruning_frequency`); event `k` of `K`
(`K = (end_step - start_step) // f`) aims at the target given by `sparsity_decay_type`, with
`s0 = initial` and `t = target`:

- exp (default): `1 - (1 - s0) * ((1 - t) / (1 - s0)) ** (k / K)`
- cos:           `(t - s0) * (1 - cos(k / K * pi / 2)) + s0`
- linear:        `(t - s0) * k / K + s0`
- cube:          `(t - s0) * (k / K) ** 3 + s0`

Event 0 aims at `s0` (nothing new is pruned), the last event (k = K) reaches `t` exactly, and
after it the target stays fixed (cool-down). When `K == 0` (start_step == end_step, or a
frequency longer than the pruning window) the single event is *oneshot*: it reaches `t` at once.
These are the formulas and event placement of Intel Neural Compressor 2.x.

`frequency = -1` means "about 40 events": `max(1, (end_step - start_step + 1) // 40)`, the rule
of the reference example's `--pruning_frequency -1` (which divided by zero on short runs). It is
the one frequency rule: the CLI, the Trainer callback and the Python API all resolve -1 here.

`pruning_window` turns the reference's epoch options into optimizer steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DECAY_TYPES = ("exp", "cos", "linear", "cube")
AUTO_FREQUENCY = -1
AUTO_EVENTS = 40


def resolve_frequency(frequency: int, start_step: int, end_step: int) -> int:
    """The effective frequency: `-1` becomes about 40 events between start and end, never below 1."""
    if frequency == AUTO_FREQUENCY:
        return max(1, (end_step - start_step + 1) // AUTO_EVENTS)
    if frequency < 1:
        raise ValueError(f"pruning_frequency must be >= 1 or -1, got {frequency}")
    return frequency


def pruning_window(steps_per_epoch: int, num_train_epochs: float, *, warm_epochs: float = 0.0,
                   cooldown_epochs: float = 0.0) -> tuple[int, int]:
    """(start_step, end_step) of pruning from epoch options: start = warm_epochs x steps per epoch,
    end = (epochs - cooldown_epochs) x steps per epoch (the reference example's arithmetic, in optimizer
    steps). Raises ValueError when the window is empty or an option is negative."""
    if warm_epochs < 0 or cooldown_epochs < 0:
        raise ValueError("the sparsity warm-up and cool-down epochs must be >= 0")
    start = int(round(warm_epochs * steps_per_epoch))
    end = int(round((num_train_epochs - cooldown_epochs) * steps_per_epoch))
    if end < start:
        raise ValueError(
            f"pruning would end (step {end}) before it starts (step {start}): {num_train_epochs:g} epochs leave no "
            f"room for {warm_epochs:g} warm-up and {cooldown_epochs:g} cool-down epochs"
        )
    return start, end


def window_for(options: str, steps_per_epoch: int, num_train_epochs: float, *, warm_epochs: float,
               cooldown_epochs: float) -> tuple[int, int]:
    """`pruning_window`, with its ValueError turned into the user's error about `options` (what they set)."""
    from prunecli.errors import UserError

    try:
        return pruning_window(steps_per_epoch, num_train_epochs, warm_epochs=warm_epochs,
                              cooldown_epochs=cooldown_epochs)
    except ValueError as err:
        raise UserError(f"{options}: {err}",
                        hint="train for more epochs, or shorten the warm-up or cool-down") from None


def decayed_sparsity(decay: str, fraction: float, target: float, initial: float = 0.0) -> float:
    """The target of an event at `fraction` = k/K of the way; monotone in `fraction`, exact at 0 and 1."""
    if fraction >= 1.0:
        return target
    if fraction <= 0.0:
        return initial
    if decay == "exp":
        value = 1.0 - (1.0 - initial) * ((1.0 - target) / (1.0 - initial)) ** fraction
    elif decay == "cos":
        value = (target - initial) * (1.0 - math.cos(fraction * math.pi / 2)) + initial
    elif decay == "linear":
        value = (target - initial) * fraction + initial
    elif decay == "cube":
        value = (target - initial) * fraction**3 + initial
    else:
        raise ValueError(f"unknown sparsity_decay_type {decay!r}; expected one of {DECAY_TYPES}")
    return min(max(value, initial), target)


@dataclass(frozen=True)
class Schedule:
    """Pruning events between `start_step` and `end_step` and the target sparsity at each.

    Contract: `target_sparsity_at(step)` is non-decreasing in `step`, is 0 before the
    first event, `initial` at it, equals `target` from the last event on, and only changes at event steps.
    """

    start_step: int
    end_step: int
    frequency: int
    target: float
    decay: str = "exp"
    initial: float = 0.0

    def __post_init__(self):
        if self.start_step < 0 or self.end_step < self.start_step:
            raise ValueError(f"need 0 <= start_step <= end_step, got {self.start_step}..{self.end_step}")
        object.__setattr__(self, "frequency", resolve_frequency(self.frequency, self.start_step, self.end_step))
        if self.decay not in DECAY_TYPES:
            raise ValueError(f"unknown sparsity_decay_type {self.decay!r}; expected one of {DECAY_TYPES}")
        if not (0.0 <= self.initial <= self.target < 1.0):
            raise ValueError(f"need 0 <= initial <= target < 1, got initial={self.initial}, target={self.target}")

    @property
    def num_events(self) -> int:
        """Events in the run, event 0 included (1 for oneshot)."""
        return (self.end_step - self.start_step) // self.frequency + 1

    @property
    def is_oneshot(self) -> bool:
        return self.num_events == 1

    @property
    def last_event_step(self) -> int:
        return self.start_step + (self.num_events - 1) * self.frequency

    def event_steps(self) -> range:
        return range(self.start_step, self.last_event_step + 1, self.frequency)

    def is_event(self, step: int) -> bool:
        return self.start_step <= step <= self.last_event_step and (step - self.start_step) % self.frequency == 0

    def event_index_at(self, step: int) -> int:
        """Index of the latest event at or before `step` (-1 before the first)."""
        if step < self.start_step:
            return -1
        return min((step - self.start_step) // self.frequency, self.num_events - 1)

    def target_at_event(self, index: int) -> float:
        if index < 0:
            return 0.0  # before the first event nothing is pruned; event 0 jumps to `initial`
        last = self.num_events - 1
        if index >= last:
            return self.target
        return decayed_sparsity(self.decay, index / last, self.target, self.initial)

    def target_sparsity_at(self, step: int) -> float:
        """The target in force after optimizer step `step` (fixed after the last event: cool-down)."""
        return self.target_at_event(self.event_index_at(step))
