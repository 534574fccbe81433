"""The one Accelerate training loop that `finetune` and `prune` share.

A `Trainer` is built in two phases so that `prune` can size its pruning schedule before training:

1. `Trainer(cfg, model, tokenizer, data)` creates the Accelerator, the dataloaders, AdamW and the
   learning-rate schedule, prepares them, and exposes the resulting sizes (`update_steps_per_epoch`,
   `max_train_steps`, `num_train_epochs`).
2. Optional plug-ins are attached (`add_plugin`, `set_loss_fn`, `output_hidden_states`), then `fit()` runs.

Plug-in contract (the pruner is one)::

    on_train_begin()            once, after a resume has restored the plug-in's state
    on_before_optimizer_step()  once per optimizer step, gradients complete (and clipped), before optimizer.step()
    on_after_optimizer_step()   right after optimizer.step() (masks are re-applied here)
    on_train_end()              once, after the last step and before the final evaluation
    state_dict() / load_state_dict(state)  saved in resumable checkpoints; tensors and plain containers only
    log_values() -> dict[str, float]       added to each train_log.jsonl line (e.g. sparsity)

Plug-in states are stored by the Trainer itself (`plugins.pt`, read with `weights_only=True`) rather than
through `accelerator.register_for_checkpointing`, whose loader unpickles arbitrary objects.

A loss function (distillation) replaces the model's label loss: `fn(batch, outputs) -> (loss, parts)`,
where `batch` still holds `labels` and `example_id` and `outputs` is the student's forward output (with
hidden states when `trainer.output_hidden_states` is set). `parts` (floats) are logged per step.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from prunecli.data.examples import EXAMPLE_ID, TokenizedData
from prunecli.data.glue import metric_suffix
from prunecli.data.metrics import compute_metrics
from prunecli.errors import UserError
from prunecli.tasks.ner import is_per_type_metric
from prunecli.training import checkpoint as ckpt
from prunecli.training import resume as resume_states
from prunecli.training.evaluation import token_task_scores
from prunecli.training.progress import Progress
from prunecli.training.setup import (
    METRIC_DRIVEN_SCHEDULERS,
    PaddingCollator,
    cpu_only,
    eval_dataloaders,
    fused_adamw_kwargs,
    leaves_parameters_unused,
    make_lr_scheduler,
    optimizer_param_groups,
    parse_checkpointing,
    partial_state,
    resolve_mixed_precision,
    resolve_trackers,
    scalar_config,
    train_dataloader,
    validate_train_config,
)
from prunecli.training.state import TrainState

if TYPE_CHECKING:  # pragma: no cover
    from prunecli.config import RunConfig

logger = logging.getLogger("prunecli")

class TrainerPlugin(Protocol):
    def on_train_begin(self) -> None: ...
    def on_before_optimizer_step(self) -> None: ...
    def on_after_optimizer_step(self) -> None: ...
    def on_train_end(self) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
    def log_values(self) -> dict[str, float]: ...


LossFn = Callable[[dict[str, torch.Tensor], Any], tuple[torch.Tensor, dict[str, float]]]


# ---- the trainer --------------------------------------------------------------------------------------


TRAIN_RESULTS = "train_results.json"
_TRAIN_SUMMARY_KEYS = ("completed_steps", "train_examples_per_second", "train_seconds", "wall_seconds",
                       "num_processes", "epochs", "final_metrics")


def train_summary(results: dict[str, Any]) -> dict[str, Any]:
    """What `train_results.json` records of a fit: throughput, times and the per-epoch metrics."""
    return {key: results[key] for key in _TRAIN_SUMMARY_KEYS if key in results}


class Trainer:
    """Accelerate loop: AdamW, a transformers schedule, gradient accumulation, evaluation, checkpoints.

    With `data.train is None` it is an evaluator: `evaluate()` works, `fit()` refuses.
    """

    def __init__(self, cfg: RunConfig, model, tokenizer, data: TokenizedData, *, adam_beta2: float = 0.999):
        from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
        from accelerate.utils import set_seed

        validate_train_config(cfg)
        tc = cfg.train
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.data = data
        self.adam_beta2 = adam_beta2
        self.output_dir = Path(tc.output_dir).absolute() if tc.output_dir else None
        self.checkpointing = parse_checkpointing(tc.checkpointing_steps)  # checked by validate_train_config
        trackers = resolve_trackers(tc.report_to)
        self.mixed_precision = resolve_mixed_precision(tc.mixed_precision)

        partial_state()
        # hidden_mse distillation replaces the label loss, so the head gets no gradient; DDP must allow that.
        ddp = DistributedDataParallelKwargs(find_unused_parameters=leaves_parameters_unused(cfg))
        self.accelerator = Accelerator(
            kwargs_handlers=[ddp],
            cpu=cpu_only(),
            mixed_precision=self.mixed_precision,
            gradient_accumulation_steps=tc.gradient_accumulation_steps,
            log_with=trackers or None,
            project_dir=str(self.output_dir / ckpt.TRACKER_DIR) if trackers else None,
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=tc.seed),
        )
        self.trackers = trackers
        set_seed(tc.seed)
        self.plugins: list[TrainerPlugin] = []
        self.loss_fn: LossFn | None = None
        self.output_hidden_states = False
        self.state = TrainState()  # replaced by fit(): a fresh state, or the one a resume restores
        self.last_eval_loss: float | None = None

        multiple = 8 if self.mixed_precision != "no" else None
        collate = self.collate = PaddingCollator(tokenizer, data.is_regression, pad_to_multiple_of=multiple)
        eval_loaders = eval_dataloaders(data.eval_splits, collate, tc.per_device_eval_batch_size, tc.seed)
        names = list(eval_loaders)
        if data.train is None:
            self.model, *prepared = self.accelerator.prepare(model, *eval_loaders.values())
            self.eval_dataloaders = dict(zip(names, prepared, strict=True))
            self.optimizer = self.lr_scheduler = self.train_dataloader = None
            self.update_steps_per_epoch = self.max_train_steps = self.num_train_epochs = 0
            return

        group = tc.group_by_length and not cfg.data.pad_to_max_length
        train_loader, self.length_sampler = train_dataloader(data.train, collate, tc.per_device_train_batch_size,
                                                             tc.seed, group_by_length=group)
        groups = optimizer_param_groups(model, tc.weight_decay)
        self.param_group_names = [g.pop("param_names") for g in groups]
        raw_optimizer = torch.optim.AdamW(groups, lr=tc.learning_rate, betas=(tc.adam_beta1, adam_beta2),
                                          eps=tc.adam_epsilon, **fused_adamw_kwargs(model, self.accelerator.device))
        self.model, self.optimizer, self.train_dataloader, *prepared = self.accelerator.prepare(
            model, raw_optimizer, train_loader, *eval_loaders.values()
        )
        self.eval_dataloaders = dict(zip(names, prepared, strict=True))

        self.update_steps_per_epoch = max(1, math.ceil(len(self.train_dataloader) / tc.gradient_accumulation_steps))
        if tc.max_train_steps:
            self.max_train_steps = tc.max_train_steps
            self.num_train_epochs = math.ceil(self.max_train_steps / self.update_steps_per_epoch)
        else:
            self.num_train_epochs = tc.num_train_epochs
            self.max_train_steps = self.num_train_epochs * self.update_steps_per_epoch
        self._raw_optimizer = raw_optimizer
        self.metric_driven_scheduler = tc.lr_scheduler_type in METRIC_DRIVEN_SCHEDULERS
        if self.metric_driven_scheduler and not tc.eval_each_epoch:
            raise UserError(f"--lr_scheduler_type {tc.lr_scheduler_type} steps on each epoch's evaluation loss; "
                            "it cannot be combined with --no_eval_each_epoch.",
                            hint="drop --no_eval_each_epoch, or use a step-based scheduler such as linear.")
        self.lr_factor: Callable[[int], float] | None = None
        self.lr_scheduler = None  # built by fit(), once every plug-in has had its say (set_lr_factor)

    # -- construction helpers -----------------------------------------------------------------------------

    def set_lr_factor(self, factor: Callable[[int], float] | None) -> None:
        """Multiply the learning-rate schedule by `factor(optimizer_step)` (e.g. a decay in the cool-down).

        Must be called before `fit()`. The factor is a pure function of the step, so a resumed run gets
        the same learning rates; metric-driven schedulers cannot take one.
        """
        if factor is not None and self.metric_driven_scheduler:
            raise UserError(f"--lr_scheduler_type {self.cfg.train.lr_scheduler_type} sets the learning rate from "
                            "the evaluation loss; it cannot be combined with a learning-rate decay or rewinding "
                            "from the pruning schedule.", hint="use a step-based scheduler such as constant or linear.")
        if self.lr_scheduler is not None:
            raise RuntimeError("set_lr_factor() must be called before fit()")
        self.lr_factor = factor

    def _make_scheduler(self):
        tc = self.cfg.train
        if self.metric_driven_scheduler:
            # Stepped once per epoch with the evaluation loss; kept out of accelerate (it would step it per process).
            from transformers import get_scheduler

            return get_scheduler(tc.lr_scheduler_type, self._raw_optimizer)
        # A prepared scheduler advances once per process at each optimizer step.
        scheduler = make_lr_scheduler(self._raw_optimizer, tc.lr_scheduler_type, num_warmup_steps=tc.num_warmup_steps,
                                      num_training_steps=self.max_train_steps, factor=self.lr_factor,
                                      steps_per_call=self.accelerator.num_processes)
        return self.accelerator.prepare(scheduler)

    @property
    def unwrapped_model(self):
        return self.accelerator.unwrap_model(self.model)

    @property
    def is_main_process(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def total_train_batch_size(self) -> int:
        tc = self.cfg.train
        return tc.per_device_train_batch_size * tc.gradient_accumulation_steps * self.accelerator.num_processes

    def add_plugin(self, plugin: TrainerPlugin) -> None:
        self.plugins.append(plugin)

    def set_loss_fn(self, fn: LossFn | None) -> None:
        self.loss_fn = fn

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # -- forward ------------------------------------------------------------------------------------------

    def _forward(self, batch: dict[str, torch.Tensor]):
        inputs = {k: v for k, v in batch.items() if k != EXAMPLE_ID}
        if self.output_hidden_states:
            inputs["output_hidden_states"] = True
        return self.model(**inputs)

    def _loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        outputs = self._forward(batch)
        if self.loss_fn is None:
            return outputs.loss, {}
        loss, parts = self.loss_fn(batch, outputs)
        return loss, {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in parts.items()}

    # -- evaluation ---------------------------------------------------------------------------------------

    def evaluate(self) -> dict[str, float]:
        """Metrics of every evaluation split; the main split's names are plain, others suffixed (`accuracy_mm`)."""
        self.model.eval()
        metrics: dict[str, float] = {}
        losses = []
        for split, loader in self.eval_dataloaders.items():
            if self.data.task.task_type != "classification":
                id2label = {int(k): v for k, v in self.unwrapped_model.config.id2label.items()}
                scores, loss = token_task_scores(self.accelerator, loader, self._forward, self.data, split,
                                                 self.cfg.data, id2label)
                metrics.update({f"{name}{metric_suffix(split)}": value for name, value in scores.items()})
                if loss is not None:
                    losses.append(loss)
                continue
            predictions, references = [], []
            loss_sum, loss_count = 0.0, 0
            for batch in loader:
                with torch.no_grad():
                    outputs = self._forward(batch)
                logits = outputs.logits
                preds = logits.squeeze(-1) if self.data.is_regression else logits.argmax(dim=-1)
                preds, refs = self.accelerator.gather_for_metrics((preds, batch["labels"]))
                predictions.append(preds.float().cpu() if self.data.is_regression else preds.cpu())
                references.append(refs.cpu())
                if outputs.loss is not None:
                    loss_sum += float(self.accelerator.reduce(outputs.loss.detach(), "mean"))
                    loss_count += 1
            scores = compute_metrics(self.data.task_name, torch.cat(predictions).numpy(),
                                     torch.cat(references).numpy(), self.data.is_regression)
            suffix = metric_suffix(split)
            metrics.update({f"{name}{suffix}": value for name, value in scores.items()})
            if loss_count:
                losses.append(loss_sum / loss_count)
        self.last_eval_loss = sum(losses) / len(losses) if losses else None
        self.model.train()
        return metrics

    # -- training -----------------------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Train for max_train_steps optimizer steps, evaluating after each epoch. Returns the run's results."""
        if self.train_dataloader is None:
            raise RuntimeError("this Trainer was built without training data")
        acc = self.accelerator
        wall_start = time.perf_counter()
        resume = resume_states.prepare_run_folder(self)
        if self.lr_scheduler is None:
            self.lr_scheduler = self._make_scheduler()  # before a resume: accelerate restores its state
        state = self.state = resume_states.load_resumable(self, resume) if resume is not None else TrainState()
        start_epoch, skip_batches = state.epoch, state.batches_in_epoch
        if self.trackers:
            acc.init_trackers("prunecli", config=scalar_config(self.cfg))
        for plugin in self.plugins:
            plugin.on_train_begin()

        logger.info("training: %d examples, %d epochs, %d optimizer steps (%d per epoch per process), "
                    "total batch size %d, %d process(es)", len(self.data.train), self.num_train_epochs,
                    self.max_train_steps, self.update_steps_per_epoch, self.total_train_batch_size,
                    acc.num_processes)
        with Progress(self.max_train_steps, state.completed_steps, enabled=acc.is_local_main_process) as progress:
            for epoch in range(start_epoch, self.num_train_epochs):
                if state.completed_steps >= self.max_train_steps:
                    break
                state.epoch, state.batches_in_epoch = epoch, 0
                self.model.train()
                loader = self.train_dataloader
                if epoch == start_epoch and skip_batches:  # resumed inside this epoch
                    loader = acc.skip_first_batches(self.train_dataloader, skip_batches)
                    state.batches_in_epoch = skip_batches
                loader.set_epoch(epoch)  # the shuffle order of an epoch depends only on seed + epoch
                if self.length_sampler is not None:  # accelerate does not reach it through its shard wrapper
                    self.length_sampler.set_epoch(epoch)
                self._train_epoch(loader, progress)
                if state.completed_steps >= self.max_train_steps and not state.train_ended:
                    state.train_ended = True
                    for plugin in self.plugins:
                        plugin.on_train_end()
                last = epoch == self.num_train_epochs - 1 or state.completed_steps >= self.max_train_steps
                if self.cfg.train.eval_each_epoch or last:
                    progress.note(f"epoch {epoch}: evaluating {self._eval_size()}")
                    eval_start = time.perf_counter()
                    metrics = self.evaluate()
                    state.evaluated_at = state.completed_steps
                    self._record_epoch(epoch, metrics)
                    progress.note(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()
                                                                 if not is_per_type_metric(k))
                                  + f" ({time.perf_counter() - eval_start:.0f} s)")
                    if self.metric_driven_scheduler and self.last_eval_loss is not None:
                        self.lr_scheduler.step(self.last_eval_loss)
                if self.checkpointing == "epoch":
                    resume_states.save_resumable(self, ckpt.resumable_name("epoch", epoch), epoch + 1, 0)
        if not state.train_ended:  # resumed from the last step: nothing left to train
            for plugin in self.plugins:
                plugin.on_train_end()
        if state.evaluated_at != state.completed_steps or not state.epoch_results:
            final_metrics = self.evaluate()
        else:
            final_metrics = dict(state.epoch_results[-1]["metrics"])
        if self.trackers:
            acc.end_training()
        self.results = {
            "epochs": state.epoch_results,
            "final_metrics": final_metrics,
            "completed_steps": state.completed_steps,
            "train_examples_per_second": state.examples_per_second,
            "train_seconds": state.train_seconds,
            "wall_seconds": time.perf_counter() - wall_start,
            "num_processes": acc.num_processes,
        }
        return self.results

    def _train_epoch(self, loader, progress: Progress) -> None:
        """The optimizer steps of one epoch (or of its rest, after a resume), up to max_train_steps."""
        acc, state = self.accelerator, self.state
        segment_start = time.perf_counter()
        for batch in loader:
            state.batches_in_epoch += 1
            state.examples_seen += int(batch["input_ids"].shape[0]) * acc.num_processes
            with acc.accumulate(self.model):
                loss, parts = self._loss(batch)
                acc.backward(loss)
                state.add_micro_batch(float(loss.detach()), parts)
                if acc.sync_gradients:
                    self._optimizer_step()
            if not acc.sync_gradients:
                continue
            step_loss, step_parts = state.finish_step()
            state.train_seconds += time.perf_counter() - segment_start
            record = self._log_step(state.epoch, step_loss, step_parts)
            progress.update(state.completed_steps, record["loss"], record["lr"], state.examples_per_second)
            if isinstance(self.checkpointing, int) and state.completed_steps % self.checkpointing == 0:
                resume_states.save_resumable(self, ckpt.resumable_name("step", state.completed_steps), state.epoch,
                                    state.batches_in_epoch)
            segment_start = time.perf_counter()
            if state.completed_steps >= self.max_train_steps:
                break

    def _optimizer_step(self) -> None:
        """One optimizer step, with the plug-in hooks around it (called only when gradients are synchronised)."""
        max_grad_norm = self.cfg.train.max_grad_norm
        if max_grad_norm:
            self.accelerator.clip_grad_norm_(self.model.parameters(), max_grad_norm)
        for plugin in self.plugins:
            plugin.on_before_optimizer_step()
        self.optimizer.step()
        for plugin in self.plugins:
            plugin.on_after_optimizer_step()
        if not self.metric_driven_scheduler:
            self.lr_scheduler.step()
        self.optimizer.zero_grad()

    @property
    def completed_steps(self) -> int:
        return self.state.completed_steps

    @property
    def epoch_results(self) -> list[dict[str, Any]]:
        return self.state.epoch_results

    def _eval_size(self) -> str:
        """The evaluation sets' sizes, for the progress note (a question answering set counts its windows)."""
        unit = "windows" if self.data.task.task_type == "question_answering" else "examples"
        return " + ".join(f"{len(loader.dataset):,}" for loader in self.eval_dataloaders.values()) + f" {unit}"

    def _record_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        entry = {"epoch": epoch, "step": self.completed_steps, "metrics": metrics}
        if self.last_eval_loss is not None:
            entry["eval_loss"] = self.last_eval_loss
        self.state.epoch_results.append(entry)
        if self.is_main_process and self.output_dir is not None:
            self._append_log({"step": self.completed_steps, "epoch": epoch, "eval": metrics})
        if self.trackers:
            self.accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=self.completed_steps)

    def _log_step(self, epoch: int, loss: float, parts: dict[str, float]) -> dict[str, Any]:
        acc = self.accelerator
        if acc.num_processes > 1:  # the logged loss is the mean over processes
            values = torch.tensor([loss, *parts.values()], device=acc.device)
            values = acc.reduce(values, "mean").tolist()
            loss, parts = values[0], dict(zip(parts, values[1:], strict=True))
        record: dict[str, Any] = {"step": self.completed_steps, "epoch": epoch, "loss": loss, "lr": self.current_lr()}
        record.update(parts)
        for plugin in self.plugins:
            record.update(plugin.log_values())
        if self.is_main_process and self.output_dir is not None:
            self._append_log(record)
        if self.trackers:
            acc.log({f"train/{k}": v for k, v in record.items() if k not in ("step", "epoch")},
                    step=self.completed_steps)
        return record

    def _append_log(self, record: dict[str, Any]) -> None:
        with open(self.output_dir / ckpt.TRAIN_LOG, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(ckpt._finite(record)) + "\n")

    # -- final checkpoint ---------------------------------------------------------------------------------

    def run_args(self) -> dict[str, Any]:
        """The resolved run arguments saved as run_args.json."""
        import transformers

        from prunecli import __version__

        resolved: dict[str, Any] = {
            "num_processes": self.accelerator.num_processes, "mixed_precision": self.mixed_precision,
            "adam_beta2": self.adam_beta2, "distributed_type": str(self.accelerator.distributed_type),
            "max_length": self.data.max_length, "data": self.data.task.describe(),
            "versions": {"prunecli": __version__, "torch": torch.__version__, "transformers": transformers.__version__},
        }
        if self.train_dataloader is not None:
            resolved.update(update_steps_per_epoch=self.update_steps_per_epoch, max_train_steps=self.max_train_steps,
                            num_train_epochs=self.num_train_epochs, total_train_batch_size=self.total_train_batch_size)
        args = self.cfg.to_dict()
        for key in ("data_dir", "train_file", "validation_file"):  # usable from any working folder later
            if args["data"].get(key):
                args["data"][key] = str(Path(args["data"][key]).absolute())
        return {**args, "resolved": resolved}

    def save_final(self, output_dir: str | Path | None = None,
                   extra_files: dict[str, str | bytes] | None = None) -> Path | None:
        """Atomically write the final Hugging Face checkpoint (main process; all processes must call this).

        OUTPUT_DIR gets config (with labels), model.safetensors, the tokenizer, eval_results.json,
        run_args.json, train_results.json (after a fit: throughput, times, per-epoch metrics) and
        `extra_files` (name -> text or bytes, e.g. prune_recipe.json, README.md); the
        run's log, tracker logs and resumable states already there are kept.
        """
        target = Path(output_dir).absolute() if output_dir else self.output_dir
        if target is None:
            return None
        acc = self.accelerator
        acc.wait_for_everyone()
        state_dict = acc.get_state_dict(self.model)
        if acc.is_main_process:
            eval_results = dict(getattr(self, "results", {}).get("final_metrics") or self.evaluate_cached())
            with ckpt.atomic_directory(target, carry=ckpt.is_run_artifact) as staging:
                self.unwrapped_model.save_pretrained(staging, state_dict=state_dict)
                self.tokenizer.save_pretrained(staging)
                (staging / ckpt.EVAL_RESULTS).write_text(ckpt.json_text(eval_results), encoding="utf-8")
                (staging / ckpt.RUN_ARGS).write_text(ckpt.json_text(self.run_args()), encoding="utf-8")
                if getattr(self, "results", None):
                    (staging / TRAIN_RESULTS).write_text(ckpt.json_text(train_summary(self.results)), encoding="utf-8")
                for name, content in (extra_files or {}).items():
                    if Path(name).name != name or name.startswith("."):
                        raise ValueError(f"extra file name {name!r} must be a plain file name")
                    path = staging / name
                    if isinstance(content, bytes):
                        path.write_bytes(content)
                    else:
                        path.write_text(content, encoding="utf-8")
        acc.wait_for_everyone()
        return target

    def evaluate_cached(self) -> dict[str, float]:
        """The last epoch's metrics if any, else a fresh evaluation (used when saving without fit())."""
        if self.epoch_results:
            return dict(self.epoch_results[-1]["metrics"])
        return self.evaluate()
