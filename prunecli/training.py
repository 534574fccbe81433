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

from prunecli import checkpoint as ckpt
from prunecli.data import EXAMPLE_ID, TokenizedData, metric_suffix
from prunecli.errors import CheckpointError, UserError
from prunecli.metrics import compute_metrics
from prunecli.sampling import LengthGroupedBatchSampler, SortedBatchSampler, example_lengths

if TYPE_CHECKING:  # pragma: no cover
    from prunecli.config import RunConfig

logger = logging.getLogger("prunecli")

METRIC_DRIVEN_SCHEDULERS = ("reduce_lr_on_plateau", "greedy")
# Schedulers that need an extra argument get a documented default (docs/training.md).
SCHEDULER_DEFAULTS: dict[str, Callable[[int], dict[str, Any]]] = {
    "cosine_with_min_lr": lambda total: {"min_lr_rate": 0.1},
    "cosine_warmup_with_min_lr": lambda total: {"min_lr_rate": 0.1},
    "warmup_stable_decay": lambda total: {"num_decay_steps": max(1, total // 10)},
}
# Settings a resumed run must share with the run that wrote the checkpoint, or the data position is meaningless.
RESUME_INVARIANTS = ("num_processes", "per_device_train_batch_size", "gradient_accumulation_steps", "seed",
                     "train_examples", "update_steps_per_epoch")


class TrainerPlugin(Protocol):
    def on_train_begin(self) -> None: ...
    def on_before_optimizer_step(self) -> None: ...
    def on_after_optimizer_step(self) -> None: ...
    def on_train_end(self) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
    def log_values(self) -> dict[str, float]: ...


LossFn = Callable[[dict[str, torch.Tensor], Any], tuple[torch.Tensor, dict[str, float]]]


# ---- building blocks ----------------------------------------------------------------------------------


class PaddingCollator:
    """Pad a list of tokenized rows to the longest one (dynamic padding) and pass labels and example_id through.

    Padding is done here rather than with `tokenizer.pad` so the rule is explicit: input_ids get the
    tokenizer's pad id, attention_mask 0, token_type_ids the pad type id, on the tokenizer's padding side.
    """

    def __init__(self, tokenizer, is_regression: bool, pad_to_multiple_of: int | None = None):
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.pad_type_id = getattr(tokenizer, "pad_token_type_id", 0) or 0
        self.left = getattr(tokenizer, "padding_side", "right") == "left"
        self.is_regression = is_regression
        self.multiple = pad_to_multiple_of

    def _pad_value(self, key: str) -> int:
        return {"input_ids": self.pad_id, "token_type_ids": self.pad_type_id, "special_tokens_mask": 1}.get(key, 0)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        length = max(len(f["input_ids"]) for f in features)
        if self.multiple:
            length = math.ceil(length / self.multiple) * self.multiple
        batch: dict[str, torch.Tensor] = {}
        for key in features[0]:
            if key in ("labels", EXAMPLE_ID):
                continue
            value = self._pad_value(key)
            rows = []
            for f in features:
                padding = [value] * (length - len(f[key]))
                rows.append(padding + list(f[key]) if self.left else list(f[key]) + padding)
            batch[key] = torch.tensor(rows, dtype=torch.long)
        batch["labels"] = torch.tensor([f["labels"] for f in features],
                                       dtype=torch.float32 if self.is_regression else torch.long)
        batch[EXAMPLE_ID] = torch.tensor([f[EXAMPLE_ID] for f in features], dtype=torch.long)
        return batch


def fused_adamw_kwargs(model: torch.nn.Module, device: torch.device) -> dict[str, Any]:
    """`fused=True` where torch has a fused AdamW kernel for these parameters (CPU, CUDA; float dtypes).

    Same update rule, one kernel over all tensors instead of a dozen small ops per tensor: on this
    project's CPU the MiniLM step went from 60 ms to 14 ms (12% of a training step).
    """
    if device.type not in ("cpu", "cuda"):
        return {}
    floats = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
    if all(p.dtype in floats for p in model.parameters() if p.requires_grad):
        return {"fused": True}
    return {}


def _is_norm(module: torch.nn.Module) -> bool:
    return isinstance(module, torch.nn.LayerNorm | torch.nn.GroupNorm) or "norm" in type(module).__name__.lower()


def optimizer_param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on weights; none on biases and normalisation layers.

    Every trainable parameter is in exactly one group, the classifier head included (the reference
    example's groups matched only part of the model, so its head was never updated).
    """
    norm_params = {id(p) for m in model.modules() if _is_norm(m) for p in m.parameters(recurse=False)}
    decay, no_decay, decay_names, no_decay_names = [], [], [], []
    seen: set[int] = set()
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        if name.endswith("bias") or id(param) in norm_params:
            no_decay.append(param)
            no_decay_names.append(name)
        else:
            decay.append(param)
            decay_names.append(name)
    return [
        {"params": decay, "weight_decay": weight_decay, "param_names": decay_names},
        {"params": no_decay, "weight_decay": 0.0, "param_names": no_decay_names},
    ]


def resolve_mixed_precision(requested: str) -> str:
    """no / fp16 / bf16, lowered to what the device can do (with a warning), so one command works everywhere."""
    value = (requested or "no").lower()
    if value not in ("no", "fp16", "bf16"):
        raise UserError(f"--mixed_precision {requested!r} is not one of no, fp16, bf16.")
    if value == "fp16" and not (torch.cuda.is_available() or _has_accelerator("mps") or _has_accelerator("xpu")):
        logger.warning("fp16 needs a GPU; training in full precision on this machine.")
        return "no"
    if value == "bf16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        logger.warning("this GPU has no bf16; training in full precision.")
        return "no"
    return value


def _has_accelerator(name: str) -> bool:
    backend = getattr(torch.backends, name, None) if name == "mps" else getattr(torch, name, None)
    return bool(backend is not None and getattr(backend, "is_available", lambda: False)())


def cpu_only() -> bool:
    """True where no GPU-like device exists. accelerate treats `torchrun` workers as one distributed CPU job
    (MULTI_CPU, gloo) only when told it runs on CPU; otherwise each worker trains alone."""
    return not (torch.cuda.is_available() or _has_accelerator("mps") or _has_accelerator("xpu"))


def partial_state():
    """The process's distributed state (created once; torchrun / accelerate launch environments are detected)."""
    from accelerate import PartialState

    return PartialState(cpu=cpu_only())


def resolve_trackers(report_to: str | None) -> list[str]:
    """Validate --report_to (comma-separated accelerate tracker names, or `all`) against what is installed."""
    if not report_to or report_to.lower() == "none":
        return []
    from accelerate.utils import LoggerType
    from accelerate.utils.imports import is_tensorboard_available

    names = [n.strip().lower() for n in report_to.split(",") if n.strip()]
    if names == ["all"]:
        return ["all"]
    known = {t.value for t in LoggerType}
    for name in names:
        if name not in known:
            raise UserError(f"--report_to {name!r} is not an accelerate tracker.",
                            hint=f"use one of: {', '.join(sorted(known - {'all'}))}, or all.")
    if "tensorboard" in names and not is_tensorboard_available():
        raise UserError("--report_to tensorboard needs the tensorboard package.", hint="pip install tensorboard")
    return names


def parse_checkpointing(value: str | None) -> int | str | None:
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip().lower()
    if text == "epoch":
        return "epoch"
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise UserError(f"--checkpointing_steps {value!r} must be a positive number of optimizer steps or `epoch`.")


def _validate(cfg: RunConfig) -> None:
    tc = cfg.train
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        if getattr(tc, name) < 1:
            raise UserError(f"--{name} must be at least 1 (got {getattr(tc, name)}).")
    if tc.num_train_epochs < 1 and not tc.max_train_steps:
        raise UserError(f"--num_train_epochs must be at least 1 (got {tc.num_train_epochs}).")
    if tc.max_train_steps is not None and tc.max_train_steps < 1:
        raise UserError(f"--max_train_steps must be at least 1 (got {tc.max_train_steps}).")
    if tc.learning_rate <= 0:
        raise UserError(f"--learning_rate must be positive (got {tc.learning_rate}).")
    if tc.num_warmup_steps < 0:
        raise UserError(f"--num_warmup_steps cannot be negative (got {tc.num_warmup_steps}).")
    if not tc.adam_epsilon > 0:
        raise UserError(f"--adam_epsilon must be positive (got {tc.adam_epsilon}).", hint="1e-8 is the default")
    for name in ("adam_beta1", "adam_beta2"):
        beta = getattr(tc, name)
        if beta is not None and not 0.0 <= beta < 1.0:
            raise UserError(f"--{name} must be in [0, 1) (got {beta}).")
    if tc.max_grad_norm is not None and tc.max_grad_norm <= 0:
        raise UserError(f"--max_grad_norm must be positive (got {tc.max_grad_norm}).")
    from transformers import SchedulerType

    names = [s.value for s in SchedulerType]
    if tc.lr_scheduler_type not in names:
        raise UserError(f"--lr_scheduler_type {tc.lr_scheduler_type!r} is not a transformers scheduler.",
                        hint=f"use one of: {', '.join(names)}.")


def _scalar_config(cfg: RunConfig) -> dict[str, Any]:
    """Flat, scalar-only copy of the run config (what trackers such as TensorBoard hparams accept)."""
    flat = {}
    for section, values in cfg.to_dict().items():
        for key, value in (values or {}).items():
            if isinstance(value, bool | int | float | str):
                flat[f"{section}.{key}"] = value
    return flat


# ---- the trainer --------------------------------------------------------------------------------------


TRAIN_RESULTS = "train_results.json"
_TRAIN_SUMMARY_KEYS = ("completed_steps", "train_examples_per_second", "train_seconds", "wall_seconds",
                       "num_processes", "epochs", "final_metrics")


def train_summary(results: dict[str, Any]) -> dict[str, Any]:
    """What `train_results.json` records of a fit: throughput, times and the per-epoch metrics."""
    return {key: results[key] for key in _TRAIN_SUMMARY_KEYS if key in results}


def leaves_parameters_unused(cfg: RunConfig) -> bool:
    """True when the loss does not reach every parameter: hidden-state distillation without the label loss
    never touches the classification head (and pooler), which multi-process DDP must be told about."""
    d = cfg.distill
    return bool(d and d.distill_loss_weight > 0 and d.distill_type == "hidden_mse" and not d.distill_label_loss)


class Trainer:
    """Accelerate loop: AdamW, a transformers schedule, gradient accumulation, evaluation, checkpoints.

    With `data.train is None` it is an evaluator: `evaluate()` works, `fit()` refuses.
    """

    def __init__(self, cfg: RunConfig, model, tokenizer, data: TokenizedData, *, adam_beta2: float = 0.999):
        from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
        from accelerate.utils import set_seed

        _validate(cfg)
        tc = cfg.train
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.data = data
        self.adam_beta2 = adam_beta2
        self.output_dir = Path(tc.output_dir).absolute() if tc.output_dir else None
        self.checkpointing = parse_checkpointing(tc.checkpointing_steps)
        if self.checkpointing is not None and self.output_dir is None:
            raise UserError("--checkpointing_steps needs --output_dir (checkpoints are saved there).")
        trackers = resolve_trackers(tc.report_to)
        if trackers and self.output_dir is None:
            raise UserError("--report_to needs --output_dir (tracker logs are written to OUTPUT_DIR/runs).")
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
        self.completed_steps = 0
        self.epoch_results: list[dict[str, Any]] = []
        self.last_eval_loss: float | None = None

        multiple = 8 if self.mixed_precision != "no" else None
        collate = PaddingCollator(tokenizer, data.is_regression, pad_to_multiple_of=multiple)
        # Evaluation batches hold examples of similar length (metrics do not depend on the order): less padding.
        eval_loaders = {
            name: torch.utils.data.DataLoader(
                ds, batch_sampler=SortedBatchSampler(example_lengths(ds), tc.per_device_eval_batch_size),
                collate_fn=collate, generator=torch.Generator().manual_seed(tc.seed),
            )
            for name, ds in data.eval_splits.items()
        }
        names = list(eval_loaders)
        if data.train is None:
            self.model, *prepared = self.accelerator.prepare(model, *eval_loaders.values())
            self.eval_dataloaders = dict(zip(names, prepared, strict=True))
            self.optimizer = self.lr_scheduler = self.train_dataloader = None
            self.update_steps_per_epoch = self.max_train_steps = self.num_train_epochs = 0
            return

        self.length_sampler: LengthGroupedBatchSampler | None = None
        batching: dict[str, Any] = {"batch_size": tc.per_device_train_batch_size, "shuffle": True}
        if tc.group_by_length and not cfg.data.pad_to_max_length:
            self.length_sampler = LengthGroupedBatchSampler(
                example_lengths(data.train), tc.per_device_train_batch_size, seed=tc.seed
            )
            batching = {"batch_sampler": self.length_sampler}
        # a private generator: starting an iteration must not draw from the global RNG (resume exactness)
        train_loader = torch.utils.data.DataLoader(data.train, collate_fn=collate,
                                                   generator=torch.Generator().manual_seed(tc.seed), **batching)
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
        from torch.optim.lr_scheduler import LambdaLR
        from transformers import get_scheduler

        tc = self.cfg.train
        name = tc.lr_scheduler_type
        optimizer = self._raw_optimizer
        if self.metric_driven_scheduler:
            # Stepped once per epoch with the evaluation loss; kept out of accelerate (it would step it per process).
            return get_scheduler(name, optimizer)
        # A prepared scheduler advances once per process at each optimizer step, hence the factor.
        n = self.accelerator.num_processes
        extra = SCHEDULER_DEFAULTS.get(name, lambda total: {})(self.max_train_steps * n)
        scheduler = get_scheduler(name, optimizer, num_warmup_steps=tc.num_warmup_steps * n,
                                  num_training_steps=self.max_train_steps * n, scheduler_specific_kwargs=extra)
        if self.lr_factor is not None:
            factor = self.lr_factor
            base = list(scheduler.lr_lambdas)
            scheduler = LambdaLR(optimizer, [lambda k, f=f: f(k) * factor(k // n) for f in base])
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
        resume = self._prepare_run_folder()
        if self.lr_scheduler is None:
            self.lr_scheduler = self._make_scheduler()  # before a resume: accelerate restores its state
        start_epoch, skip_batches = 0, 0
        train_seconds, examples_seen = 0.0, 0
        if resume is not None:
            state = self._load_resumable(resume)
            start_epoch, skip_batches = state["epoch"], state["batches_in_epoch"]
            train_seconds, examples_seen = state.get("train_seconds", 0.0), state.get("examples_seen", 0)
        if self.trackers:
            acc.init_trackers("prunecli", config=_scalar_config(self.cfg))
        for plugin in self.plugins:
            plugin.on_train_begin()

        logger.info("training: %d examples, %d epochs, %d optimizer steps (%d per epoch per process), "
                    "total batch size %d, %d process(es)", len(self.data.train), self.num_train_epochs,
                    self.max_train_steps, self.update_steps_per_epoch, self.total_train_batch_size,
                    acc.num_processes)
        progress = _Progress(self.max_train_steps, self.completed_steps, enabled=acc.is_local_main_process)
        evaluated_at, train_ended = -1, False
        with progress:
            for epoch in range(start_epoch, self.num_train_epochs):
                if self.completed_steps >= self.max_train_steps:
                    break
                self.model.train()
                loader = self.train_dataloader
                batches_in_epoch = 0
                if epoch == start_epoch and skip_batches:
                    loader = acc.skip_first_batches(self.train_dataloader, skip_batches)
                    batches_in_epoch = skip_batches
                loader.set_epoch(epoch)  # the shuffle order of an epoch depends only on seed + epoch
                if self.length_sampler is not None:  # accelerate does not reach it through its shard wrapper
                    self.length_sampler.set_epoch(epoch)
                step_loss, step_micro, step_parts = 0.0, 0, {}
                segment_start = time.perf_counter()
                for batch in loader:
                    batches_in_epoch += 1
                    examples_seen += int(batch["labels"].shape[0]) * acc.num_processes
                    with acc.accumulate(self.model):
                        loss, parts = self._loss(batch)
                        acc.backward(loss)
                        step_loss += float(loss.detach())
                        step_micro += 1
                        for key, value in parts.items():
                            step_parts[key] = step_parts.get(key, 0.0) + value
                        if acc.sync_gradients:
                            self._optimizer_step()
                    if not acc.sync_gradients:
                        continue
                    self.completed_steps += 1
                    train_seconds += time.perf_counter() - segment_start
                    record = self._log_step(epoch, step_loss / step_micro,
                                            {k: v / step_micro for k, v in step_parts.items()})
                    progress.update(self.completed_steps, record["loss"], record["lr"], examples_seen / train_seconds)
                    step_loss, step_micro, step_parts = 0.0, 0, {}
                    if isinstance(self.checkpointing, int) and self.completed_steps % self.checkpointing == 0:
                        self.save_resumable(ckpt.resumable_name("step", self.completed_steps), epoch,
                                            batches_in_epoch, train_seconds, examples_seen)
                    segment_start = time.perf_counter()
                    if self.completed_steps >= self.max_train_steps:
                        break
                if self.completed_steps >= self.max_train_steps and not train_ended:
                    train_ended = True
                    for plugin in self.plugins:
                        plugin.on_train_end()
                metrics = self.evaluate()
                evaluated_at = self.completed_steps
                self._record_epoch(epoch, metrics)
                progress.note(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
                if self.metric_driven_scheduler and self.last_eval_loss is not None:
                    self.lr_scheduler.step(self.last_eval_loss)
                if self.checkpointing == "epoch":
                    self.save_resumable(ckpt.resumable_name("epoch", epoch), epoch + 1, 0, train_seconds,
                                        examples_seen)
        if not train_ended:  # resumed from the last step: nothing left to train
            for plugin in self.plugins:
                plugin.on_train_end()
        if evaluated_at != self.completed_steps or not self.epoch_results:
            final_metrics = self.evaluate()
        else:
            final_metrics = dict(self.epoch_results[-1]["metrics"])
        if self.trackers:
            acc.end_training()
        self.results = {
            "epochs": self.epoch_results,
            "final_metrics": final_metrics,
            "completed_steps": self.completed_steps,
            "train_examples_per_second": examples_seen / train_seconds if train_seconds > 0 else 0.0,
            "train_seconds": train_seconds,
            "wall_seconds": time.perf_counter() - wall_start,
            "num_processes": acc.num_processes,
        }
        return self.results

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

    def _record_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        entry = {"epoch": epoch, "step": self.completed_steps, "metrics": metrics}
        if self.last_eval_loss is not None:
            entry["eval_loss"] = self.last_eval_loss
        self.epoch_results.append(entry)
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

    # -- checkpoints --------------------------------------------------------------------------------------

    def _prepare_run_folder(self) -> Path | None:
        """Resolve the resume checkpoint; on a fresh run, clear a previous run's log and resumable states."""
        tc = self.cfg.train
        resume = ckpt.resolve_resume_path(tc.resume_from_checkpoint, self.output_dir) \
            if tc.resume_from_checkpoint else None
        if self.output_dir is not None and self.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            log = self.output_dir / ckpt.TRAIN_LOG
            if resume is None:
                for _, old in ckpt.list_resumable(self.output_dir):
                    _remove_tree(old)
                log.unlink(missing_ok=True)
        self.accelerator.wait_for_everyone()
        return resume

    def _resume_state(self, epoch: int, batches_in_epoch: int, train_seconds: float, examples_seen: int) -> dict:
        tc = self.cfg.train
        return {
            "completed_steps": self.completed_steps, "epoch": epoch, "batches_in_epoch": batches_in_epoch,
            "max_train_steps": self.max_train_steps, "num_train_epochs": self.num_train_epochs,
            "num_processes": self.accelerator.num_processes,
            "per_device_train_batch_size": tc.per_device_train_batch_size,
            "gradient_accumulation_steps": tc.gradient_accumulation_steps, "seed": tc.seed,
            "train_examples": len(self.data.train), "update_steps_per_epoch": self.update_steps_per_epoch,
            "epoch_results": self.epoch_results, "train_seconds": train_seconds, "examples_seen": examples_seen,
        }

    def save_resumable(self, name: str, epoch: int, batches_in_epoch: int, train_seconds: float = 0.0,
                       examples_seen: int = 0) -> Path:
        """Write a resumable state OUTPUT_DIR/<name> atomically (all processes must call this)."""
        acc = self.accelerator
        target = self.output_dir / name
        staging = self.output_dir / f".{name}.staging-shared"  # one name that every process knows
        if acc.is_main_process:
            ckpt.recover_interrupted_save(target)  # also removes a stale staging folder of this name
            staging.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(staging))
        if acc.is_main_process:
            extra = {"plugins": [p.state_dict() for p in self.plugins]}
            if self.metric_driven_scheduler:
                extra["lr_scheduler"] = self.lr_scheduler.state_dict()
            ckpt.save_torch_state(staging / ckpt.PLUGINS_STATE, extra)
            state = self._resume_state(epoch, batches_in_epoch, train_seconds, examples_seen)
            (staging / ckpt.TRAINER_STATE).write_text(ckpt.json_text(state), encoding="utf-8")
            ckpt.commit_directory(staging, target)
        acc.wait_for_everyone()
        return target

    def _load_resumable(self, path: Path) -> dict[str, Any]:
        state = ckpt.read_trainer_state(path)
        current = self._resume_state(0, 0, 0.0, 0)
        mismatched = [k for k in RESUME_INVARIANTS if k in state and state[k] != current[k]]
        if mismatched:
            details = ", ".join(f"{k}: checkpoint {state[k]} vs now {current[k]}" for k in mismatched)
            raise CheckpointError(f"{path} was written by a run with other settings ({details}).",
                                  hint="resume with the same data, batch size, accumulation, seed and process count.")
        self.accelerator.load_state(str(path))
        extra = ckpt.load_torch_state(path / ckpt.PLUGINS_STATE)
        plugin_states = extra.get("plugins", [])
        if len(plugin_states) != len(self.plugins):
            raise CheckpointError(f"{path} holds {len(plugin_states)} plug-in state(s); this run has "
                                  f"{len(self.plugins)}.", hint="resume with the same command (prune vs finetune).")
        for plugin, plugin_state in zip(self.plugins, plugin_states, strict=True):
            plugin.load_state_dict(plugin_state)
        if self.metric_driven_scheduler and "lr_scheduler" in extra:
            self.lr_scheduler.load_state_dict(extra["lr_scheduler"])
        self.completed_steps = int(state["completed_steps"])
        self.epoch_results = list(state.get("epoch_results", []))
        if self.is_main_process and self.output_dir is not None:
            self._truncate_log(self.completed_steps)
        logger.info("resumed from %s at optimizer step %d (epoch %d)", path, self.completed_steps, state["epoch"])
        return state

    def _truncate_log(self, step: int) -> None:
        """Drop log lines a killed run wrote after the checkpoint we resume from (they will be written again)."""
        log = self.output_dir / ckpt.TRAIN_LOG
        if not log.is_file():
            return
        kept = []
        for line in log.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by the kill
            if record.get("step", 0) < step or (record.get("step") == step and "eval" not in record):
                kept.append(line)
        ckpt.write_file_atomic(log, "".join(k + "\n" for k in kept))

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


def _remove_tree(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


# ---- progress display ---------------------------------------------------------------------------------


class _Progress:
    """Progress on stderr, main process only: a live rich bar on a terminal; in a log file (CI, nohup), one
    plain line per 5% of the steps, since a live bar would show nothing until the run ends."""

    def __init__(self, total: int, completed: int, enabled: bool):
        self.progress = None
        self.console = None
        self.total = total
        self.every = max(1, total // 20)
        if not enabled:
            return
        from rich.console import Console

        self.console = Console(stderr=True)
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                TextColumn("{task.fields[stats]}"), console=self.console,
            )
            self.task = self.progress.add_task("train", total=total, completed=completed, stats="")

    def __enter__(self):
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()

    def update(self, step: int, loss: float, lr: float, examples_per_second: float) -> None:
        stats = f"loss {loss:.4f}  lr {lr:.2e}  {examples_per_second:.1f} ex/s"
        if self.progress is not None:
            self.progress.update(self.task, completed=step, stats=stats)
        elif self.console is not None and (step % self.every == 0 or step == self.total):
            self.console.print(f"step {step}/{self.total}  {stats}", highlight=False)

    def note(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text, highlight=False)
