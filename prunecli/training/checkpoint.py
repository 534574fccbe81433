"""Checkpoint files: atomic directory saves, resumable-state bookkeeping, safe loading.

Atomicity: every save builds the complete new folder beside its target (`.<name>.staging-<id>`) and
then puts it in place with one rename. Where the target already exists, Linux `renameat2(RENAME_EXCHANGE)`
swaps the two folders in one step; elsewhere two renames are used and `recover_interrupted_save` (called
before any output folder is used) puts the previous folder back if a run died between them. So a run killed
at any moment leaves the previous checkpoint or the new one, never a mixture.

Layout of an output folder::

    config.json, model.safetensors, tokenizer files   the final Hugging Face checkpoint
    eval_results.json, run_args.json                  final metrics, resolved run arguments
    train_log.jsonl                                   one JSON object per optimizer step (and per evaluation)
    step_<N>/ or epoch_<E>/                           resumable states (--checkpointing_steps)
    runs/                                             tracker logs (--report_to)

Resumable states are written by `accelerate` (`model.safetensors`, `optimizer.bin`, `scheduler.bin`,
`random_states_<rank>.pkl`) plus `trainer_state.json` (loop position) and `plugins.pt` (pruner,
distiller and metric-driven scheduler states). Every pickle-based file is read with
`torch.load(weights_only=True)`, which refuses anything but tensors and plain containers.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prunecli.errors import CheckpointError

logger = logging.getLogger("prunecli")

TRAINER_STATE = "trainer_state.json"
PLUGINS_STATE = "plugins.pt"
TRAIN_LOG = "train_log.jsonl"
EVAL_RESULTS = "eval_results.json"
RUN_ARGS = "run_args.json"
TRACKER_DIR = "runs"
_RESUMABLE = re.compile(r"^(step|epoch)_(\d+)$")


def is_run_artifact(name: str) -> bool:
    """Entries of an output folder that belong to the run, not to the final model (kept across final saves)."""
    return name in (TRAIN_LOG, TRACKER_DIR) or _RESUMABLE.match(name) is not None


# ---- atomic folder replacement ------------------------------------------------------------------------


def _fsync_tree(folder: Path) -> None:
    """Flush file contents and folder entries, so a power cut after the rename cannot expose empty files."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError), open(os.path.join(root, name), "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(Path(root))


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange_paths(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux renameat2 RENAME_EXCHANGE). False where unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def _link_or_copy_tree(src: Path, dst: Path) -> None:
    """Carry an entry into the staging folder: hard links (instant, no extra space), copies where links fail."""

    def link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    if src.is_dir():
        shutil.copytree(src, dst, copy_function=link, symlinks=True)
    else:
        link(str(src), str(dst))


def recover_interrupted_save(target: Path) -> None:
    """Undo what a save killed half-way left beside `target`: restore the previous folder, drop stale staging."""
    target = Path(target)
    parent = target.parent
    if not parent.is_dir():
        return
    olds = sorted(parent.glob(f".{target.name}.old-*"))
    if olds and not target.exists():
        os.rename(olds[0], target)
        logger.warning("restored %s from an interrupted save", target)
        olds = olds[1:]
    for stale in (*olds, *parent.glob(f".{target.name}.staging-*")):
        shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(target: Path | str, carry: Callable[[str], bool] | None = None) -> Iterator[Path]:
    """Build a folder's new content in a staging folder, then swap it in atomically.

    Yields the staging folder. On a normal exit, entries of the old `target` for which `carry(name)` is true
    (and which the new content lacks) are hard-linked in, and the staging folder replaces `target`. On an
    exception `target` is left untouched and the staging folder removed.
    """
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_interrupted_save(target)
    staging = target.parent / f".{target.name}.staging-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    try:
        yield staging
        commit_directory(staging, target, carry)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _current_umask() -> int:
    """The process's umask (read by setting it and putting it back: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _usual_modes(folder: Path) -> None:
    """Give every file the mode a plain `open()` would (0644 under umask 022) and every folder 0755: writers
    that stage through a private temporary file (safetensors' `save_file`) leave 0600, which a serving user
    cannot read."""
    mask = _current_umask()
    os.chmod(folder, 0o777 & ~mask)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o666 & ~mask)


def commit_directory(staging: Path, target: Path, carry: Callable[[str], bool] | None = None) -> None:
    """Put a fully written `staging` folder in place of `target` (same parent folder) in one atomic step.

    Its files get the modes a plain `open()` gives (0644 under umask 022), whatever wrote them."""
    staging, target = Path(staging).absolute(), Path(target).absolute()
    _usual_modes(staging)
    if carry is not None and target.is_dir():
        for entry in target.iterdir():
            if carry(entry.name) and not (staging / entry.name).exists():
                _link_or_copy_tree(entry, staging / entry.name)
    _fsync_tree(staging)
    if not target.exists():
        os.rename(staging, target)
    elif exchange_paths(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # now holds the previous content
    else:
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:12]}"
        os.rename(target, old)
        os.rename(staging, target)  # a kill between these renames is undone by recover_interrupted_save
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(target.parent)


def write_file_atomic(path: Path | str, content: str | bytes) -> None:
    """Write one file via a temporary sibling and os.replace (readers see the old or the new file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def json_text(obj: Any) -> str:
    """Strict JSON (NaN and infinities become null), indented, with a final newline."""
    return json.dumps(_finite(obj), indent=2, sort_keys=False) + "\n"


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


# ---- resumable states ---------------------------------------------------------------------------------


def resumable_name(kind: str, number: int) -> str:
    return f"{kind}_{number}"


def is_resumable_checkpoint(folder: Path) -> bool:
    return (folder / TRAINER_STATE).is_file()


def read_trainer_state(folder: Path) -> dict[str, Any]:
    path = Path(folder) / TRAINER_STATE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{folder} is not a resumable checkpoint (no {TRAINER_STATE}).",
                              hint="pass a step_N or epoch_N folder written with --checkpointing_steps, "
                                   "or `latest`.") from None
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is unreadable: {err}.") from None


def list_resumable(output_dir: Path) -> list[tuple[int, Path]]:
    """(completed optimizer steps, folder) of every complete resumable state in `output_dir`, oldest first."""
    found = []
    if Path(output_dir).is_dir():
        for entry in Path(output_dir).iterdir():
            if entry.is_dir() and _RESUMABLE.match(entry.name) and is_resumable_checkpoint(entry):
                with contextlib.suppress(CheckpointError):
                    found.append((int(read_trainer_state(entry)["completed_steps"]), entry))
    return sorted(found, key=lambda item: (item[0], item[1].name.startswith("epoch")))


def remove_tree(path: Path) -> None:
    if Path(path).is_dir():
        shutil.rmtree(path, ignore_errors=True)


def rotate_resumable(output_dir: Path, total_limit: int | None) -> list[Path]:
    """Delete the oldest resumable states beyond the newest `total_limit` (None: keep all); returns what went.

    The order is by completed optimizer steps (an epoch_E state after a step_N state of the same step
    counts as newer), so the states kept are always the ones a resume would pick first.
    """
    if total_limit is None:
        return []
    found = list_resumable(output_dir)
    stale = [folder for _, folder in found[: max(0, len(found) - total_limit)]]
    for folder in stale:
        remove_tree(folder)
        logger.debug("removed old resumable checkpoint %s (--checkpoints_total_limit %d)", folder, total_limit)
    return stale


def save_failed(err: OSError, target: Path, staging: Path, output_dir: Path) -> CheckpointError:
    """The error for a resumable save that could not be written (a full disk, most often): the half-written
    staging folder is removed, and the message names the newest checkpoint that is still intact."""
    shutil.rmtree(staging, ignore_errors=True)
    recover_interrupted_save(target)
    intact = list_resumable(output_dir)
    kept = f"the previous checkpoint {intact[-1][1]} is intact" if intact else "no earlier checkpoint exists"
    reason = "the disk is full" if err.errno == errno.ENOSPC else (err.strerror or str(err))
    return CheckpointError(
        f"cannot save the resumable checkpoint {target.name} ({reason}); {kept}.",
        hint="free disk space (or lower --checkpoints_total_limit), then resume with "
             "--resume_from_checkpoint latest." if intact else "free disk space and start the run again.",
    )


def resolve_resume_path(resume: str, output_dir: Path | None) -> Path:
    """`latest` -> the newest resumable state in output_dir; a path -> that folder (checked)."""
    if resume == "latest":
        if output_dir is None:
            raise CheckpointError("--resume_from_checkpoint latest needs --output_dir.")
        recover_interrupted_save(output_dir)
        found = list_resumable(output_dir)
        if not found:
            raise CheckpointError(f"no resumable checkpoint (step_N or epoch_N folder) in {output_dir}.",
                                  hint="checkpoints are written with --checkpointing_steps N or epoch.")
        return found[-1][1]
    path = Path(resume)
    if not path.is_dir():
        raise CheckpointError(f"--resume_from_checkpoint {resume}: no such folder.")
    read_trainer_state(path)
    return path


def truncate_log(log: Path, step: int) -> None:
    """Drop the log lines a killed run wrote after the checkpoint being resumed (they will be written again)."""
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
    write_file_atomic(log, "".join(k + "\n" for k in kept))


def save_torch_state(path: Path, state: Any) -> None:
    import torch

    torch.save(state, path)


def load_torch_state(path: Path) -> Any:
    """Load a torch-serialised state with `weights_only=True`: tensors and plain containers only, no code."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing from the checkpoint.") from None
    except Exception as err:  # an unpickling refusal or a truncated file: the checkpoint is not usable
        raise CheckpointError(f"{path} cannot be loaded safely: {str(err).splitlines()[0][:300]}.",
                              hint="plugin states must hold only tensors, numbers, strings, lists and dicts.") \
            from None


# ---- output folders -----------------------------------------------------------------------------------


def check_output_dir(output_dir: str | None, overwrite: bool, resume: str | None, *,
                     resumable: bool = True) -> Path | None:
    """Refuse a non-empty output folder unless --overwrite_output_dir, or a resume that continues in it
    (`resumable=False`: a command that writes its folder in one go, whose hint offers no resume)."""
    if not output_dir:
        return None
    path = Path(output_dir).absolute()
    recover_interrupted_save(path)
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"--output_dir {output_dir} exists and is not a folder.")
    if not path.is_dir() or not any(path.iterdir()) or overwrite:
        return path
    if resume:
        if resume == "latest":
            return path
        resume_path = Path(resume).absolute()
        if resume_path.parent == path:
            return path
    hint = ("pass --overwrite_output_dir to replace its checkpoint, choose another folder, or "
            "--resume_from_checkpoint latest to continue the run saved there." if resumable else
            "pass --overwrite_output_dir to replace it, or choose another folder.")
    raise CheckpointError(f"--output_dir {output_dir} is not empty.", hint=hint)
