"""Resumable states of the training loop: where a run is written, how a state is saved and restored.

A resumable state (`OUTPUT_DIR/step_N` or `epoch_E`) holds accelerate's state (model, optimizer,
scheduler, RNG), the plug-ins' states (`plugins.pt`, read with `weights_only=True`, never through
accelerate's `register_for_checkpointing`, whose loader unpickles arbitrary objects) and the loop's
position (`trainer_state.json`, a `TrainState`). A resumed run must share RESUME_INVARIANTS with the
run that wrote the state; it then ends with the same weights and masks as an uninterrupted run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunecli.errors import CheckpointError
from prunecli.training import checkpoint as ckpt
from prunecli.training.state import RESUME_INVARIANTS, TrainState

if TYPE_CHECKING:  # pragma: no cover
    from prunecli.training.trainer import Trainer

logger = logging.getLogger("prunecli")


def prepare_run_folder(trainer: Trainer) -> Path | None:
    """Resolve the resume checkpoint; on a fresh run, clear a previous run's log and resumable states."""
    tc = trainer.cfg.train
    resume = ckpt.resolve_resume_path(tc.resume_from_checkpoint, trainer.output_dir) \
        if tc.resume_from_checkpoint else None
    if trainer.output_dir is not None and trainer.is_main_process:
        trainer.output_dir.mkdir(parents=True, exist_ok=True)
        log = trainer.output_dir / ckpt.TRAIN_LOG
        if resume is None:
            for _, old in ckpt.list_resumable(trainer.output_dir):
                ckpt.remove_tree(old)
            log.unlink(missing_ok=True)
    trainer.accelerator.wait_for_everyone()
    return resume

def resume_settings(trainer: Trainer) -> dict[str, Any]:
    """What a resumable checkpoint records of the run besides its position (RESUME_INVARIANTS and sizes)."""
    tc = trainer.cfg.train
    return {
        "max_train_steps": trainer.max_train_steps, "num_train_epochs": trainer.num_train_epochs,
        "num_processes": trainer.accelerator.num_processes,
        "per_device_train_batch_size": tc.per_device_train_batch_size,
        "gradient_accumulation_steps": tc.gradient_accumulation_steps, "seed": tc.seed,
        "train_examples": len(trainer.data.train), "update_steps_per_epoch": trainer.update_steps_per_epoch,
    }

def save_resumable(trainer: Trainer, name: str, epoch: int, batches_in_epoch: int) -> Path:
    """Write a resumable state OUTPUT_DIR/<name> atomically (all processes must call this), to continue at
    batch `batches_in_epoch` of `epoch`; then delete the oldest states beyond --checkpoints_total_limit.

    A full disk (or any other write error) leaves every earlier checkpoint as it was and stops the run
    with one message naming the newest intact one.
    """
    acc = trainer.accelerator
    target = trainer.output_dir / name
    staging = trainer.output_dir / f".{name}.staging-shared"  # one name that every process knows
    try:
        if acc.is_main_process:
            ckpt.recover_interrupted_save(target)  # also removes a stale staging folder of this name
            staging.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(staging))
        if acc.is_main_process:
            extra = {"plugins": [p.state_dict() for p in trainer.plugins]}
            if trainer.metric_driven_scheduler:
                extra["lr_scheduler"] = trainer.lr_scheduler.state_dict()
            ckpt.save_torch_state(staging / ckpt.PLUGINS_STATE, extra)
            payload = trainer.state.to_json(resume_epoch=epoch, resume_batches=batches_in_epoch,
                                         settings=resume_settings(trainer))
            (staging / ckpt.TRAINER_STATE).write_text(ckpt.json_text(payload), encoding="utf-8")
            ckpt.commit_directory(staging, target)
    except OSError as err:
        raise ckpt.save_failed(err, target, staging, trainer.output_dir) from None
    if acc.is_main_process:
        ckpt.rotate_resumable(trainer.output_dir, trainer.cfg.train.checkpoints_total_limit)
    acc.wait_for_everyone()
    return target

def load_resumable(trainer: Trainer, path: Path) -> TrainState:
    payload = ckpt.read_trainer_state(path)
    current = resume_settings(trainer)
    mismatched = [k for k in RESUME_INVARIANTS if k in payload and payload[k] != current[k]]
    if mismatched:
        details = ", ".join(f"{k}: checkpoint {payload[k]} vs now {current[k]}" for k in mismatched)
        raise CheckpointError(f"{path} was written by a run with other settings ({details}).",
                              hint="resume with the same data, batch size, accumulation, seed and process count.")
    trainer.accelerator.load_state(str(path))
    extra = ckpt.load_torch_state(path / ckpt.PLUGINS_STATE)
    plugin_states = extra.get("plugins", [])
    if len(plugin_states) != len(trainer.plugins):
        raise CheckpointError(f"{path} holds {len(plugin_states)} plug-in state(s); this run has "
                              f"{len(trainer.plugins)}.", hint="resume with the same command (prune vs finetune).")
    for plugin, plugin_state in zip(trainer.plugins, plugin_states, strict=True):
        plugin.load_state_dict(plugin_state)
    if trainer.metric_driven_scheduler and "lr_scheduler" in extra:
        trainer.lr_scheduler.load_state_dict(extra["lr_scheduler"])
    state = TrainState.from_json(payload)
    if trainer.is_main_process and trainer.output_dir is not None:
        ckpt.truncate_log(trainer.output_dir / ckpt.TRAIN_LOG, state.completed_steps)
    logger.info("resumed from %s at optimizer step %d (epoch %d)", path, state.completed_steps, state.epoch)
    return state
