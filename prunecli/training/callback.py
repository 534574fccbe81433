"""`PruningCallback`: training-time pruning for `transformers.Trainer` in one line.

The callback owns a `Pruner` and maps the Trainer's events onto the pruner's four hooks::

    on_train_begin        build the Pruner on the unwrapped model (steps from epochs; resume its state)
    on_pre_optimizer_step pruner.on_before_optimizer_step()   (gradients final, unscaled and clipped)
    on_optimizer_step     pruner.on_after_optimizer_step()    (count, prune if due, zero pruned weights)
    on_save               <checkpoint-N>/prunecli_pruner.pt   (step, scores, masks)
    on_log                adds sparsity, target_sparsity (and per-group sparsity) to the logs
    on_train_end          pruner.on_train_end()

Why these events: transformers 5.x calls `on_pre_optimizer_step` and `on_optimizer_step` once per
*optimizer* step (only on the micro-batch that syncs gradients, after gradient accumulation),
after `accelerator.clip_grad_norm_` (which also unscales fp16 gradients), around `optimizer.step()`
and before `lr_scheduler.step()`, `model.zero_grad()` and `state.global_step += 1`: the order of
prunecli's own training loop. So `pruner.step` equals `state.global_step` at every checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from prunecli.errors import CheckpointError, UserError
from prunecli.sparsity.pruner import Pruner
from prunecli.sparsity.recipe import Recipe, load_recipe
from prunecli.sparsity.schedule import AUTO_FREQUENCY, window_for

logger = logging.getLogger(__name__)

#: The pruner's state inside each Trainer checkpoint folder (rotated with it by `save_total_limit`).
STATE_FILE = "prunecli_pruner.pt"
CALLBACK_FORMAT = "prunecli.callback/1"
_TRAINER_STATE = "trainer_state.json"


class PruningCallback(TrainerCallback):
    """Prune a model while `transformers.Trainer` fine-tunes it, following a prunecli recipe.

    Usage::

        from transformers import Trainer
        import prunecli

        trainer = Trainer(model=model, args=args, train_dataset=train,
                          callbacks=[prunecli.PruningCallback("mrpc_4x1", cooldown_epochs=1)])
        trainer.train()                     # or trainer.train(resume_from_checkpoint=True)
        trainer.save_model("sparse_model")  # the zeros are in the weights

    Contract:

    - `recipe` is a path to a JSON recipe, a dict or a `Recipe`; it is validated here, so a bad path
      or key raises `RecipeError` (a `UserError`) at construction, before any model is loaded. Bad
      option values raise `UserError`; a recipe that matches no layer raises `RecipeError` when
      training begins (`Pruner` is built then, on the model the Trainer trains).
    - Pruning window, as `prunecli prune` computes it, in optimizer steps: steps per epoch are the
      Trainer's (its train dataloader's length divided by `gradient_accumulation_steps`, rounded up);
      `start_step = sparsity_warm_epochs x steps per epoch`, `end_step = (epochs - cooldown_epochs) x
      steps per epoch`, where epochs is `args.num_train_epochs`, or `state.max_steps / steps per epoch`
      when `args.max_steps > 0` (a run with no dataloader length counts as one epoch). These fill the
      recipe's top-level `start_step`/`end_step` only where the recipe does not set them (a group's own
      keys always win). `pruning_frequency`: this argument (overrides the recipe's top level), else the
      recipe's, else -1 (about 40 events, resolved by `prunecli.sparsity.schedule`).
    - Every process runs the same hooks on the unwrapped model (DDP shares the parameters; masks are
      deterministic, so ranks agree without communicating). FSDP and DeepSpeed ZeRO are not supported.
    - Checkpoints: after the Trainer saves `<output_dir>/checkpoint-<N>`, the pruner's state (tensors,
      numbers and strings) goes to `<output_dir>/checkpoint-<N>/prunecli_pruner.pt` (written by the
      processes for which `args.should_save`), so it is rotated with its checkpoint.
    - Resume: when the Trainer resumes (`state.global_step > 0` at `on_train_begin`), the state file is
      taken from `resume_from` if given (a checkpoint folder or the file), else from
      `args.resume_from_checkpoint` if that checkpoint is at the resumed step, else from
      `<args.output_dir>/checkpoint-<global_step>` (what `resume_from_checkpoint=True` and the usual
      explicit path resume from). It is loaded with `torch.load(..., weights_only=True)` and checked: a
      missing file, another step, another schedule, another recipe or model, or masks whose weights are
      not zero in the resumed model raise `CheckpointError`. A resumed run ends with the same masks as
      an uninterrupted one.
    - With `load_best_model_at_end`, the pruner's state is reloaded from the best checkpoint after the
      Trainer loads its weights, so the final masks are the best model's (not the last step's).
    - Logs: `pruner.log_values()` are added to every log the Trainer makes after training begins, and
      to the matching `trainer.state.log_history` entry. The Trainer calls the report_to integrations
      before user callbacks; to send sparsity to them too, put this callback first (see
      docs/python_api.md).
    - After training, `callback.pruner` is the `Pruner` (plan, report, masks) and `callback.steps` the
      derived window (`start_step`, `end_step`, `pruning_frequency`, `steps_per_epoch`, `num_train_epochs`).
    """

    def __init__(
        self,
        recipe: Recipe | dict | str | os.PathLike,
        *,
        sparsity_warm_epochs: float = 0.0,
        cooldown_epochs: float = 0.0,
        pruning_frequency: int | None = None,
        resume_from: str | os.PathLike | None = None,
    ):
        self.recipe = _as_recipe(recipe)
        for name, value in (("sparsity_warm_epochs", sparsity_warm_epochs), ("cooldown_epochs", cooldown_epochs)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise UserError(f"PruningCallback({name}={value!r}): must be a number of epochs >= 0")
        if pruning_frequency is not None and (
            isinstance(pruning_frequency, bool) or not isinstance(pruning_frequency, int)
            or not (pruning_frequency >= 1 or pruning_frequency == AUTO_FREQUENCY)
        ):
            raise UserError(
                f"PruningCallback(pruning_frequency={pruning_frequency!r}): must be an integer >= 1 "
                "(optimizer steps between pruning events) or -1 (about 40 events)"
            )
        self.sparsity_warm_epochs = float(sparsity_warm_epochs)
        self.cooldown_epochs = float(cooldown_epochs)
        self.pruning_frequency = pruning_frequency
        self.resume_from = resume_from
        # As `prunecli prune` does: validate the recipe with the options now; a typo should cost a second.
        self.recipe.with_steps({"start_step": 0, "end_step": 2**31 - 1, "pruning_frequency": AUTO_FREQUENCY},
                               pruning_frequency=pruning_frequency).resolve()
        self.pruner: Pruner | None = None
        self.steps: dict[str, Any] | None = None

    # ------------------------------------------------------------------ Trainer events
    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        if model is None:
            raise TypeError("PruningCallback.on_train_begin needs the Trainer's model (call it from a Trainer)")
        model = _unwrap(model)
        steps_per_epoch, epochs = run_geometry(args, state, train_dataloader)
        start, end = window_for("PruningCallback(sparsity_warm_epochs, cooldown_epochs)", steps_per_epoch, epochs,
                                warm_epochs=self.sparsity_warm_epochs, cooldown_epochs=self.cooldown_epochs)
        steps = {"start_step": start, "end_step": end, "pruning_frequency": AUTO_FREQUENCY}
        recipe = self.recipe.with_steps(steps, pruning_frequency=self.pruning_frequency)
        self.pruner = pruner = Pruner(model, recipe)
        self.steps = {**steps, "steps_per_epoch": steps_per_epoch, "num_train_epochs": epochs}
        plan = pruner.plan()
        if state.global_step > 0:  # the Trainer resumed from a checkpoint (a fresh TrainerState starts at 0)
            self._load(self._resume_file(args, state), expect_step=state.global_step)
        pruner.on_train_begin()
        events = pruner.event_steps()
        if events and events[-1] > state.max_steps:
            logger.warning(
                "PruningCallback: the recipe's last pruning event is at step %d, after the run's last step %d: "
                "the target sparsity will not be reached (check the recipe's end_step)", events[-1], state.max_steps,
            )
        if state.is_world_process_zero:
            windows = ", ".join(f"{g['start_step']}..{g['end_step']} every {g['pruning_frequency']}" for g in plan)
            logger.info("PruningCallback: %s optimizer steps per epoch, %d in all; pruning steps %s; %d layers",
                        f"{steps_per_epoch:g}", state.max_steps, windows, len(pruner.layers))

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if self.pruner is not None:
            self.pruner.on_before_optimizer_step()

    def on_optimizer_step(self, args, state, control, **kwargs):
        if self.pruner is not None:
            self.pruner.on_after_optimizer_step()

    def on_save(self, args, state, control, **kwargs):
        if self.pruner is None or not args.should_save:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not folder.is_dir():  # e.g. a hyperparameter-search trial, saved under output_dir/run-<id>/
            logger.warning("PruningCallback: no checkpoint folder %s; the pruner's state was not saved", folder)
            return
        state_dict = self.pruner.state_dict()
        state_dict["callback"] = {"format": CALLBACK_FORMAT, "global_step": int(state.global_step),
                                  "schedule": _schedule_key(self.pruner)}
        target = folder / STATE_FILE
        partial = folder / (STATE_FILE + ".partial")
        torch.save(state_dict, partial)
        os.replace(partial, target)  # a run killed while writing leaves no truncated state file

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.pruner is None or logs is None:
            return
        values = self.pruner.log_values()
        logs.update(values)
        # Trainer.log appends a copy of `logs` to log_history *before* calling on_log: update that copy too.
        history = state.log_history
        if history and isinstance(history[-1], dict) and history[-1].get("step") == state.global_step:
            history[-1].update(values)

    def on_train_end(self, args, state, control, **kwargs):
        if self.pruner is None:
            return
        best = state.best_model_checkpoint
        if args.load_best_model_at_end and best is not None:
            # The Trainer has just loaded the best checkpoint's weights: take its masks, not the last step's.
            file = Path(best) / STATE_FILE
            if file.is_file():
                self._load(file, expect_step=None)
            else:
                logger.warning("PruningCallback: the best checkpoint %s has no %s; keeping the last masks",
                               best, STATE_FILE)
        self.pruner.on_train_end()

    # ------------------------------------------------------------------ resume
    def _resume_file(self, args, state) -> Path:
        step = state.global_step
        if self.resume_from is not None:
            given = Path(self.resume_from)
            file = given if given.is_file() else given / STATE_FILE
            if not file.is_file():
                raise CheckpointError(f"PruningCallback(resume_from={str(given)!r}): no {STATE_FILE} there",
                                      "Pass the checkpoint folder the Trainer resumes from (checkpoint-<step>).")
            return file
        candidates = []
        if isinstance(args.resume_from_checkpoint, str) and _checkpoint_step(Path(args.resume_from_checkpoint)) == step:
            candidates.append(Path(args.resume_from_checkpoint))
        default = Path(args.output_dir) / f"checkpoint-{step}"
        candidates.append(default)
        for folder in candidates:
            if (folder / STATE_FILE).is_file():
                return folder / STATE_FILE
        raise CheckpointError(
            f"the Trainer resumed at step {step}, but {default / STATE_FILE} does not exist: the pruner's state "
            "(scores and masks) cannot be restored",
            "Resume from a checkpoint written with PruningCallback; if it is not under "
            "TrainingArguments.output_dir, pass it as PruningCallback(..., resume_from=<checkpoint folder>).",
        )

    def _load(self, file: Path, *, expect_step: int | None) -> None:
        assert self.pruner is not None
        pruner = self.pruner
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as err:  # truncated, corrupted, or not a plain tensor file
            raise CheckpointError(f"{file}: cannot read the pruner's state ({type(err).__name__}: {err})",
                                  "Resume from an intact checkpoint.") from None
        extra = state.get("callback") if isinstance(state, dict) else None
        if not isinstance(extra, dict) or extra.get("format") != CALLBACK_FORMAT:
            raise CheckpointError(f"{file} is not a PruningCallback state file")
        if expect_step is not None and extra.get("global_step") != expect_step:
            raise CheckpointError(
                f"{file} holds the pruner's state at step {extra.get('global_step')}, the Trainer resumed at step "
                f"{expect_step}", "Resume from the checkpoint folder the state file is in.",
            )
        if extra.get("schedule") != _schedule_key(pruner):
            raise CheckpointError(
                f"{file} was written with another pruning schedule (start/end steps, frequency, target or pattern) "
                "than this run computes",
                "Resume with the recipe, PruningCallback options and TrainingArguments (epochs, batch size, "
                "gradient accumulation) the checkpoint was written with.",
            )
        layers = state.get("layers")
        if isinstance(layers, dict) and set(layers) == set(pruner.layers):
            for name, layer in pruner.layers.items():
                pruned = layers[name].get("pruned") if isinstance(layers[name], dict) else None
                if not isinstance(pruned, torch.Tensor) or tuple(pruned.shape) != tuple(layer.weight.shape):
                    continue  # load_state_dict reports it
                weight = layer.weight.detach()
                if torch.count_nonzero(weight[pruned.to(device=weight.device, dtype=torch.bool)]):
                    raise CheckpointError(
                        f"{file}: weights the pruner's state marks as pruned in {name} are not zero in the model "
                        "the Trainer resumed: the state file belongs to another checkpoint",
                        "Resume from the checkpoint folder the state file is in.",
                    )
        pruner.load_state_dict(state)  # CheckpointError for another recipe or model


# ---------------------------------------------------------------------- shared arithmetic
def run_geometry(args, state, train_dataloader=None) -> tuple[float, float]:
    """(optimizer steps per epoch, epochs) of a Trainer run, as `Trainer.set_initial_training_values` counts.

    Steps per epoch: ceil(len(train_dataloader) / gradient_accumulation_steps) (at least 1). Epochs:
    `args.num_train_epochs` when they drive the run; with `args.max_steps > 0`, `state.max_steps / steps per
    epoch` (fractional: the window then ends within the run), and a dataloader with no length makes the
    whole run one epoch (as the Trainer does). Should the dataloader's length not give the Trainer's
    `state.max_steps` (e.g. sequence parallelism), steps per epoch become `state.max_steps / epochs`.
    """
    max_steps = int(state.max_steps)
    accumulation = max(1, int(args.gradient_accumulation_steps))
    length = _length(train_dataloader)
    per_epoch: float | None = None
    if length:
        per_epoch = max(length // accumulation + int(length % accumulation > 0), 1)
    if args.max_steps > 0:
        if per_epoch is None:
            per_epoch = max_steps
        return per_epoch, max_steps / per_epoch
    epochs = float(args.num_train_epochs)
    if per_epoch is None or math.ceil(epochs * per_epoch) != max_steps:
        per_epoch = max_steps / epochs
    return per_epoch, epochs


# ---------------------------------------------------------------------- helpers
def _as_recipe(recipe: Any) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, dict):
        return Recipe.from_dict(recipe, source="PruningCallback recipe")
    if isinstance(recipe, (str, os.PathLike)):
        return load_recipe(recipe)
    raise UserError(f"PruningCallback(recipe=...): expected a recipe path, dict or Recipe, got {type(recipe).__name__}")


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(model, keep_torch_compile=False)


def _length(loader: Any) -> int | None:
    try:
        return len(loader) if loader is not None else None
    except TypeError:  # an iterable dataset
        return None


def _schedule_key(pruner: Pruner) -> list[list[Any]]:
    """What must agree between a checkpoint and the run resuming it, beyond the layers: each group's schedule."""
    return [[g["start_step"], g["end_step"], g["pruning_frequency"], g["target_sparsity"], g["pattern"],
             g["pruning_type"]] for g in pruner.plan()]


def _checkpoint_step(folder: Path) -> int | None:
    try:
        return int(json.loads((folder / _TRAINER_STATE).read_text(encoding="utf-8"))["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
