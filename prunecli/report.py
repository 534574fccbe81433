"""Sparsity statistics of a state dict: how sparse a model is and what structure its zeros have.

Used by `prunecli inspect`, by `prune`'s final summary (`sparsity_report.json`) and by the model
card. The report reads tensors only (memory-mapped safetensors, `torch.load(weights_only=True)`),
never builds an `nn.Module`, so it works for any architecture and costs about one tensor of memory
at a time. torch is imported inside the functions that touch tensors, so rendering a saved report
(`render_report`, `markdown_table`) needs no torch at all.

The report is a plain JSON-ready dict with a stable, versioned schema (`SCHEMA_VERSION`,
`REPORT_SCHEMA`, documented in docs/inspect.md). Rules it applies, all decided from tensor names,
shapes and dtypes (there is no model to ask):

* A *layer* is every floating-point tensor named `*.weight` with 2 or more dimensions.
* A layer is a *matmul* weight (INC's "matmul, Gemm, conv") unless it is an embedding table
  (`EMBEDDING_NAME_RE` on the module's last name segment: `*embedding`, `*embeddings`, `embed_*`,
  `wte`, `wpe`, `shared`, `relative_attention_bias`).
* Rows are dim 0 (output features / channels), columns dim 1 (input features). A conv weight
  `[out, in, *kernel]` is viewed as `[out, kernel..., in]` flattened to 2-D, so N:M groups run along
  input channels as in INC and NVIDIA's 2:4.
* Without a recipe, a matmul weight is *pruned* when at least `PRUNED_MIN_SPARSITY` of it is zero;
  with a recipe, the pruned layers are exactly the recipe's layers.
"""

from __future__ import annotations

import functools
import json
import math
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunecli.errors import CheckpointError, UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from rich.console import Console

SCHEMA_VERSION = 1
PRUNED_MIN_SPARSITY = 0.01
NM_GROUP = 4  # N:M conformance is measured on groups of 4 consecutive input weights ...
NM_KEEP = 2  # ... holding at most 2 non-zeros (2:4)
RECIPE_FILE = "prune_recipe.json"

SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_FILE = "pytorch_model.bin"
TORCH_INDEX = "pytorch_model.bin.index.json"
_INPUT_HINT = (
    "Pass a checkpoint folder (model.safetensors, a sharded model.safetensors.index.json or pytorch_model.bin), "
    "a .safetensors file or a .bin file. inspect reads local files only."
)

# Layer kinds, in the order the table shows them, with their titles.
KIND_TITLES = {
    "attention": "Attention",
    "ffn": "Feed-forward",
    "linear": "Other linear",
    "head": "Head",
    "conv": "Conv",
    "embedding": "Embedding",
}
MATMUL_KINDS = ("attention", "ffn", "linear", "head", "conv")
OTHER_KINDS = ("norm", "bias", "other", "buffer")

EMBEDDING_NAME_RE = re.compile(r"(embeddings?|^embed_\w*|^wte|^wpe|^shared|^relative_attention_bias)$", re.IGNORECASE)
_HEAD_SEGMENTS = {"classifier", "pooler", "pre_classifier", "score", "lm_head", "qa_outputs", "cls", "head"}
_ATTENTION_SEGMENTS = {
    "query", "key", "value", "q_proj", "k_proj", "v_proj", "o_proj", "out_proj", "qkv", "qkv_proj", "c_attn",
    "q_lin", "k_lin", "v_lin", "out_lin", "query_key_value", "wqkv", "q", "k", "v", "o",
}
_FFN_SEGMENTS = {
    "intermediate", "output", "mlp", "ffn", "feed_forward", "fc1", "fc2", "c_fc", "up_proj", "down_proj",
    "gate_proj", "wi", "wo", "wi_0", "wi_1", "lin1", "lin2", "dense_h_to_4h", "dense_4h_to_h", "densereludense",
}
_PATTERN_NXM = re.compile(r"^(\d+)x(\d+)$")
_PATTERN_NM = re.compile(r"^(\d+):(\d+)$")


# ----------------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------------


class TensorSource(Mapping):
    """Read-only mapping name -> tensor over checkpoint files; a tensor is read only when it is looked up.

    Safetensors files stay memory-mapped by `safe_open`; `.bin` files are `torch.load`ed with
    `mmap=True` where the file format allows it. `format` names what was read (`safetensors`,
    `safetensors-sharded`, `torch`, `torch-sharded`) and `files` the files behind it.
    """

    def __init__(self, fetchers: dict[str, Callable[[], Any]], fmt: str, files: list[Path]):
        self._fetchers = fetchers
        self.format = fmt
        self.files = files

    def __getitem__(self, name: str):
        fetch = self._fetchers[name]
        try:
            return fetch()
        except Exception as err:  # a header that lies about its data: corrupted file
            raise CheckpointError(
                f"cannot read tensor {name!r} from {_files_text(self.files)}: {err}",
                "The file is corrupted or truncated; save or download it again.",
            ) from err

    def __iter__(self) -> Iterator[str]:
        return iter(self._fetchers)

    def __len__(self) -> int:
        return len(self._fetchers)


def _files_text(files: list[Path]) -> str:
    return str(files[0]) if len(files) == 1 else f"{files[0].parent} ({len(files)} files)"


def load_tensors(path: str | Path) -> TensorSource:
    """Open a checkpoint for reading without building a model; raises CheckpointError on bad input.

    `path` is a folder (our checkpoints or any Hugging Face model folder), a `.safetensors` file, a
    sharded folder (`model.safetensors.index.json`), or a torch file (`.bin`, `.pt`, ...). In a folder,
    safetensors are preferred over `pytorch_model.bin` when both exist.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"{path} does not exist", _INPUT_HINT)
    if path.is_dir():
        return _load_folder(path)
    if path.name.endswith(".index.json"):
        return _load_sharded(path)
    return _load_file(path)


def _load_folder(folder: Path) -> TensorSource:
    for name in (SAFETENSORS_FILE, SAFETENSORS_INDEX):
        if (folder / name).is_file():
            return load_tensors(folder / name)
    others = sorted(folder.glob("*.safetensors"))
    if len(others) == 1:
        return _load_file(others[0])
    for name in (TORCH_FILE, TORCH_INDEX):
        if (folder / name).is_file():
            return load_tensors(folder / name)
    found = ", ".join(sorted(p.name for p in folder.iterdir())[:8]) or "nothing"
    raise CheckpointError(
        f"no model weights in {folder} (found: {found})",
        f"Expected {SAFETENSORS_FILE}, {SAFETENSORS_INDEX}, {TORCH_FILE} or {TORCH_INDEX}. " + _INPUT_HINT,
    )


def _sniff(path: Path) -> str:
    """`safetensors`, `torch` or `unknown`, from the first bytes (file names can lie)."""
    with path.open("rb") as fh:
        head = fh.read(9)
    if len(head) == 9 and head[8:9] == b"{":
        return "safetensors"
    if head[:2] == b"PK" or head[:1] == b"\x80":  # torch zip archive, or a legacy pickle
        return "torch"
    return "unknown"


def _load_file(path: Path) -> TensorSource:
    kind = _sniff(path)
    if kind == "unknown":
        kind = "safetensors" if path.suffix == ".safetensors" else "torch" if path.suffix in (".bin", ".pt") else kind
    if kind == "safetensors":
        return TensorSource(_safetensors_fetchers(path), "safetensors", [path])
    if kind == "torch":
        return TensorSource(_torch_fetchers(path), "torch", [path])
    raise CheckpointError(f"{path} is not a model weights file (neither safetensors nor a torch checkpoint)",
                          _INPUT_HINT)


# safetensors dtype names -> torch dtype attribute names (tensors of other dtypes are read by safetensors itself).
_SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2", "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
    "BOOL": "bool",
}


def _safetensors_fetchers(path: Path, only: set[str] | None = None) -> dict[str, Callable[[], Any]]:
    """Fetchers that memory-map one tensor each, zero-copy.

    `safe_open` validates the file (header, truncation, coverage); the tensors themselves are mapped one
    window at a time with `torch.frombuffer`, so a tensor's pages leave memory when the tensor is freed.
    (`safe_open.get_tensor` copies every tensor and keeps the whole file mapped, which made inspecting a
    checkpoint cost more peak memory than loading the model.)
    """
    from safetensors import safe_open

    try:
        handle = safe_open(str(path), framework="pt", device="cpu")
        names = list(handle.keys())
        with path.open("rb") as fh:
            header_len = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(header_len))
    except Exception as err:  # SafetensorError: truncated file, bad header, not safetensors at all
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}",
                              "The file is truncated or corrupted; save or download it again.") from err
    if only is not None:
        names = [n for n in names if n in only]
    fetchers: dict[str, Callable[[], Any]] = {}
    for name in names:
        info = header[name]
        dtype = _SAFETENSORS_DTYPES.get(info["dtype"])
        begin, end = info["data_offsets"]
        if dtype is None or sys.byteorder != "little":
            fetchers[name] = functools.partial(handle.get_tensor, name)
        else:
            fetchers[name] = functools.partial(_map_tensor, path, 8 + header_len + begin, end - begin, dtype,
                                               tuple(info["shape"]))
    return fetchers


def _map_tensor(path: Path, offset: int, nbytes: int, dtype_name: str, shape: tuple[int, ...]):
    """One tensor as a private (copy-on-write) memory map of its bytes; unmapped when the tensor is freed."""
    import mmap

    import torch

    dtype = getattr(torch, dtype_name)
    if nbytes == 0:
        return torch.empty(shape, dtype=dtype)
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    with path.open("rb") as fh:
        window = mmap.mmap(fh.fileno(), offset - start + nbytes, offset=start, access=mmap.ACCESS_COPY)
    count = nbytes // dtype.itemsize
    return torch.frombuffer(window, dtype=dtype, count=count, offset=offset - start).view(shape)


def _torch_state_dict(path: Path) -> dict:
    import torch

    try:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):  # legacy (non-zip) files cannot be memory-mapped: read them whole
                raise
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, pickle of arbitrary objects (refused by weights_only), garbage
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {_first_line(err)}",
                              "The file is truncated, corrupted, or holds objects other than tensors "
                              "(only weights_only=True files are read).") from err
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):  # Lightning / training-loop checkpoints
            inner = obj.get(key)
            if isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
        tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise CheckpointError(f"{path} holds no tensors (a {type(obj).__name__}), so it is not a model", _INPUT_HINT)


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _torch_fetchers(path: Path) -> dict[str, Callable[[], Any]]:
    state = _torch_state_dict(path)
    return {name: functools.partial(state.__getitem__, name) for name in state}


def _load_sharded(index: Path) -> TensorSource:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError("empty weight_map")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{index} is not a valid shard index: {err}",
                              "A shard index is JSON with a `weight_map` of tensor name -> shard file.") from err
    shards: dict[str, set[str]] = {}
    for name, shard in weight_map.items():
        shards.setdefault(str(shard), set()).add(name)
    fetchers: dict[str, Callable[[], Any]] = {}
    files = []
    for shard, names in shards.items():
        file = index.parent / shard
        if not file.is_file():
            raise CheckpointError(f"shard {shard} listed in {index.name} is missing from {index.parent}",
                                  "Copy or download every shard of the checkpoint.")
        files.append(file)
        part = _safetensors_fetchers(file, names) if _sniff(file) == "safetensors" else {
            n: f for n, f in _torch_fetchers(file).items() if n in names}
        missing = names - part.keys()
        if missing:
            raise CheckpointError(f"shard {shard} lacks {len(missing)} tensor(s) its index lists, e.g. "
                                  f"{sorted(missing)[0]!r}", "The shard is corrupted or from another checkpoint.")
        fetchers.update(part)
    fmt = "safetensors-sharded" if all(_sniff(f) == "safetensors" for f in files) else "torch-sharded"
    return TensorSource(dict(sorted(fetchers.items())), fmt, files)


def load_recipe_file(folder: str | Path) -> dict | None:
    """The `prune_recipe.json` saved beside a checkpoint, or None when there is none (errors: CheckpointError)."""
    file = Path(folder) / RECIPE_FILE
    if not file.is_file():
        return None
    try:
        recipe = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{file} is not valid JSON: {err}", "Fix or delete the recipe file.") from err
    return recipe


# ----------------------------------------------------------------------------------------------------------
# Classification and structure
# ----------------------------------------------------------------------------------------------------------


def tensor_kind(name: str, tensor) -> str:
    """The kind of a tensor from its name, shape and dtype: a layer kind (`KIND_TITLES`) or one of `OTHER_KINDS`."""
    if not tensor.is_floating_point():
        return "buffer"
    segments = name.split(".")
    if segments[-1] == "weight" and tensor.dim() >= 2:
        module = segments[:-1]
        if module and EMBEDDING_NAME_RE.search(module[-1]):
            return "embedding"
        if tensor.dim() > 2:
            return "conv" if tensor.dim() <= 5 else "other"
        return _matmul_role(module)
    if segments[-1] == "bias":
        return "bias"
    if segments[-1] == "weight" and tensor.dim() == 1:
        return "norm"
    return "other"


def _matmul_role(module: list[str]) -> str:
    lowered = [s.lower() for s in module]
    if any(s in _HEAD_SEGMENTS for s in lowered):
        return "head"
    if any("attn" in s or "attention" in s or s in _ATTENTION_SEGMENTS for s in lowered):
        return "attention"
    if any(s in _FFN_SEGMENTS for s in lowered):
        return "ffn"
    return "linear"


def _zero_views(weight):
    """Zero mask of a layer as `[out, kernel, in]` (kernel 1 for 2-D weights)."""
    zeros = weight == 0
    out, inp = zeros.shape[0], zeros.shape[1]
    if zeros.dim() == 2:
        return zeros.view(out, 1, inp)
    return zeros.movedim(1, -1).reshape(out, -1, inp)


def _count_nonzero(tensor):
    import torch

    return torch.count_nonzero(tensor)


def _largest_run(zeros2d, axis: int, n_zeros: int) -> int:
    """Largest run length b (power of two or the whole axis) such that every aligned run of b elements along
    `axis` is either all zero or free of zeros. Halving any/all reductions, so O(numel); a size whose
    multiples cannot add up to `n_zeros` is rejected without touching the mask."""
    n = zeros2d.shape[axis]
    any_z = all_z = zeros2d
    size = 1
    while any_z.shape[axis] % 2 == 0 and size * 2 <= n and n_zeros % (size * 2) == 0:
        shape = list(any_z.shape)
        shape[axis : axis + 1] = [shape[axis] // 2, 2]
        next_any = any_z.reshape(shape).any(axis + 1)
        next_all = all_z.reshape(shape).all(axis + 1)
        if not _runs_ok(next_any, next_all):
            return size  # a failed run size also fails for the whole axis, which contains such runs
        any_z, all_z, size = next_any, next_all, size * 2
    if size < n and n_zeros % n == 0 and _runs_ok(any_z.any(axis), all_z.all(axis)):
        return n  # the whole axis (when it is not a power of two)
    return size


def _runs_ok(any_z, all_z) -> bool:
    import torch

    return bool(torch.equal(any_z, all_z))


def tensor_structure(weight) -> dict:
    """Zeros and their structure in one layer weight (2-D, or conv 3-D to 5-D).

    Returns `numel`, `zeros`, `sparsity` and:
    `structure`: `dense` (no zeros), `empty` (all zeros), `1xchannel` (every zero lies in an all-zero output
    row/channel), `channelx1` (... in an all-zero input column/channel), `RxC` (the largest block shape, in
    powers of two or a whole dimension, such that every aligned block holding a zero is all zero; only when
    larger than 1x1), `1:4`/`2:4` (every group of 4 consecutive input weights has at most 1/2 non-zeros) or
    `unstructured`. `block`: `[R, C]` of that largest block shape (null when it is 1x1 or there are no zeros).
    `nm_conformance`: share of groups of 4 with at most 2 non-zeros (null when the input size is not a
    multiple of 4). `empty_rows` / `empty_cols`: all-zero output rows (channels) / input columns (channels).
    """
    import torch

    numel = weight.numel()
    n_zeros = numel - int(torch.count_nonzero(weight))  # no mask: most layers are dense
    out, inp = weight.shape[0], weight.shape[1]
    has_groups = inp % NM_GROUP == 0 and numel > 0
    stats = {
        "numel": numel,
        "zeros": n_zeros,
        "sparsity": n_zeros / numel if numel else 0.0,
        "structure": "dense",
        "block": None,
        "nm_conformance": 0.0 if has_groups else None,  # dense: every group has 4 non-zeros
        "empty_rows": 0,
        "empty_cols": 0,
    }
    if n_zeros == 0:
        return stats
    # Memory: bool masks only, counted with count_nonzero (a bool .sum() makes an int64 copy, 8x the mask).
    # Counting arguments skip passes over the mask: an empty row needs K*I zeros, an empty column O*K, and
    # "every zero lies in an empty row" holds exactly when the empty rows hold all the zeros.
    zeros3 = _zero_views(weight)
    kernel = zeros3.shape[1]
    width = kernel * inp
    if n_zeros >= width:
        stats["empty_rows"] = int(torch.count_nonzero(zeros3.all(2).all(1)))
    if n_zeros >= out * kernel:
        stats["empty_cols"] = int(torch.count_nonzero(zeros3.all(1).all(0)))
    groups = None
    if has_groups:  # non-zeros per group as uint8
        groups = NM_GROUP - zeros3.view(out, kernel, inp // NM_GROUP, NM_GROUP).sum(-1, dtype=torch.uint8)
        stats["nm_conformance"] = int(torch.count_nonzero(groups <= NM_KEEP)) / groups.numel()
    if n_zeros == numel:
        stats.update(structure="empty", block=[out, width])
        return stats
    zeros2 = zeros3.reshape(out, width)
    rows, cols = _largest_run(zeros2, 0, n_zeros), _largest_run(zeros2, 1, n_zeros)
    if rows * cols > 1:
        stats["block"] = [rows, cols]
    if n_zeros == stats["empty_rows"] * width:
        stats["structure"] = "1xchannel"
    elif n_zeros == stats["empty_cols"] * out * kernel:
        stats["structure"] = "channelx1"
    elif rows * cols > 1:
        stats["structure"] = f"{rows}x{cols}"
    elif groups is not None and stats["nm_conformance"] == 1.0:
        stats["structure"] = "1:4" if int(groups.max()) <= 1 else "2:4"
    else:
        stats["structure"] = "unstructured"
    return stats


def pattern_sparsity(weight, pattern: str) -> float | None:
    """Share of a layer's weights that lie in entirely-zero units of `pattern` (INC's block-wise sparsity).

    Units: `RxC` aligned blocks of the 2-D view (edge blocks of a layer the block does not divide are partial
    blocks, as the pruner makes them); `1xchannel` output rows; `channelx1` input columns (channels for conv);
    for `N:M` the pruned unit is a single weight, so this is the element-wise sparsity. None for a pattern
    that is not recognised.
    """
    import torch

    zeros3 = _zero_views(weight)
    out, kernel, inp = zeros3.shape
    numel = zeros3.numel()
    pattern = pattern.strip().lower()
    if not numel:
        return None
    if pattern == "1xchannel":
        return int(torch.count_nonzero(zeros3.all(2).all(1))) / out
    if pattern == "channelx1":
        return int(torch.count_nonzero(zeros3.all(1).all(0))) / inp
    if _PATTERN_NM.match(pattern):
        return int(torch.count_nonzero(zeros3)) / numel
    match = _PATTERN_NXM.match(pattern)
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        return None
    rows, cols = int(match.group(1)), int(match.group(2))
    width = kernel * inp
    zeros2 = zeros3.reshape(out, width)
    if out % rows == 0 and width % cols == 0:
        blocks = zeros2.reshape(out // rows, rows, width // cols, cols).all(3).all(1)
        return int(torch.count_nonzero(blocks)) * rows * cols / numel
    # Partial edge blocks: pad with "zero" so that a partial block is judged on its own weights only.
    padded_rows, padded_cols = -(-out // rows) * rows, -(-width // cols) * cols
    padded = torch.ones(padded_rows, padded_cols, dtype=torch.bool, device=zeros2.device)
    padded[:out, :width] = zeros2
    blocks = padded.reshape(padded_rows // rows, rows, padded_cols // cols, cols).all(3).all(1)
    in_zero_blocks = blocks.repeat_interleave(rows, 0).repeat_interleave(cols, 1)[:out, :width]
    return int(torch.count_nonzero(in_zero_blocks)) / numel


# ----------------------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------------------


def _aggregate(tensors: int = 0, numel: int = 0, zeros: int = 0) -> dict:
    return {"tensors": tensors, "numel": numel, "zeros": zeros, "sparsity": zeros / numel if numel else 0.0}


def _add(agg: dict, numel: int, zeros: int) -> None:
    agg["tensors"] += 1
    agg["numel"] += numel
    agg["zeros"] += zeros
    agg["sparsity"] = agg["zeros"] / agg["numel"] if agg["numel"] else 0.0


def _recipe_groups(recipe: Any) -> list[dict]:
    """Groups of a resolved recipe, each with `pattern`, `target_sparsity` and `layers` as weight names.

    The groups are under `pruning_configs` (what the pruner's `resolved_recipe()` writes, INC's key) or
    `groups`; other keys are ignored. Every group must list its `layers` (module names, or weight names):
    an unresolved recipe (only `op_names` regexes) cannot say which layers were pruned.
    """
    groups = None
    if isinstance(recipe, Mapping):
        groups = recipe.get("groups", recipe.get("pruning_configs"))
    if not isinstance(groups, list):
        raise UserError("the recipe has no `pruning_configs` (or `groups`) list")
    out = []
    for i, group in enumerate(groups):
        if not isinstance(group, Mapping) or not isinstance(group.get("layers"), list):
            raise UserError(f"recipe group {i} has no `layers` list (not a resolved recipe written by prune)")
        weights = []
        for layer in group["layers"]:
            layer = str(layer)
            weights.append(layer if layer.endswith(".weight") else f"{layer}.weight")
        target = group.get("target_sparsity")
        out.append({
            "index": i,
            "name": group.get("name") if isinstance(group.get("name"), str) else None,
            "pattern": str(group.get("pattern")) if group.get("pattern") is not None else None,
            "target_sparsity": float(target) if isinstance(target, int | float) else None,
            "weights": weights,
        })
    return out


def sparsity_report(source: str | Path | Mapping[str, torch.Tensor], recipe: dict | None = None) -> dict:
    """The sparsity report of a checkpoint path or an in-memory state dict (see the module doc and docs/inspect.md).

    With `recipe` (the resolved recipe: `{"pruning_configs" or "groups": [{"pattern", "target_sparsity",
    "layers": [module names]}, ...]}`) or, for a folder, its `prune_recipe.json`, the pruned layers are the
    recipe's and the report adds the block-wise ratio and each group's achieved vs target sparsity.
    Raises CheckpointError for bad files; a malformed in-memory recipe is a caller's bug (ValueError), a
    malformed `prune_recipe.json` only a warning.
    """
    warnings: list[str] = []
    if isinstance(source, Mapping):
        tensors, fmt, src = source, "memory", None
    else:
        tensors = load_tensors(source)
        fmt, src = tensors.format, str(source)
        if recipe is None and Path(source).is_dir():
            try:
                recipe = load_recipe_file(source)
            except CheckpointError as err:
                warnings.append(f"{err.message}; ignored")
    groups: list[dict] = []
    if recipe is not None:
        try:
            groups = _recipe_groups(recipe)
        except UserError as err:
            if fmt == "memory":  # the prune job passed a malformed recipe: a bug, not a user error
                raise ValueError(err.message) from err
            warnings.append(f"{RECIPE_FILE}: {err.message}; ignored")
            recipe = None
    weight_group = {w: g["index"] for g in groups for w in g["weights"]}

    layers, others = [], {kind: _aggregate() for kind in OTHER_KINDS}
    totals = {"matmul": _aggregate(), "all": _aggregate(), "pruned": _aggregate()}
    group_stats = [{"numel": 0, "zeros": 0, "block_numel": 0, "block_zeros": 0.0, "found": set()} for _ in groups]
    block_zero_weighted = 0.0
    for name in tensors:
        tensor = tensors[name]
        if hasattr(tensor, "detach"):
            tensor = tensor.detach()
        kind = tensor_kind(name, tensor)
        if kind in OTHER_KINDS:
            zeros = tensor.numel() - int(_count_nonzero(tensor))
            _add(others[kind], tensor.numel(), zeros)
            if kind != "buffer":
                _add(totals["all"], tensor.numel(), zeros)
            continue
        stats = tensor_structure(tensor)
        group = weight_group.get(name)
        matmul = kind in MATMUL_KINDS
        pruned = group is not None if groups else (matmul and stats["sparsity"] >= PRUNED_MIN_SPARSITY)
        layers.append({
            "name": name,
            "module": name[: -len(".weight")] if name.endswith(".weight") else name,
            "kind": kind,
            "matmul": matmul,
            "shape": list(tensor.shape),
            "dtype": str(tensor.dtype).removeprefix("torch."),
            **stats,
            "pruned": pruned,
            "group": group,
        })
        _add(totals["all"], stats["numel"], stats["zeros"])
        if matmul:
            _add(totals["matmul"], stats["numel"], stats["zeros"])
        if pruned:
            _add(totals["pruned"], stats["numel"], stats["zeros"])
        if group is not None:
            gs = group_stats[group]
            gs["found"].add(name)
            gs["numel"] += stats["numel"]
            gs["zeros"] += stats["zeros"]
            pattern = groups[group]["pattern"]
            block = pattern_sparsity(tensor, pattern) if pattern else None
            if block is None and pattern:
                warnings.append(f"group {group}: pattern {pattern!r} is not recognised; no block-wise ratio for it")
            else:
                gs["block_numel"] += stats["numel"]
                gs["block_zeros"] += block * stats["numel"]
                block_zero_weighted += block * stats["numel"]
        del tensor

    recipe_out = None
    if groups:
        recipe_out = {"groups": []}
        for g, gs in zip(groups, group_stats, strict=True):
            missing = [w for w in g["weights"] if w not in gs["found"]]
            if missing:
                warnings.append(f"group {g['index']}: {len(missing)} layer(s) of the recipe are not in the "
                                f"checkpoint, e.g. {missing[0]}")
            recipe_out["groups"].append({
                "index": g["index"],
                "name": g["name"],
                "pattern": g["pattern"],
                "target_sparsity": g["target_sparsity"],
                "layers": len(gs["found"]),
                "missing": missing,
                "numel": gs["numel"],
                "zeros": gs["zeros"],
                "sparsity": gs["zeros"] / gs["numel"] if gs["numel"] else 0.0,
                "blockwise_sparsity": gs["block_zeros"] / gs["block_numel"] if gs["block_numel"] else None,
            })
    matmul_numel = totals["matmul"]["numel"]
    model = {
        **totals,
        "blockwise_matmul": (block_zero_weighted / matmul_numel if matmul_numel else 0.0) if groups else None,
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "source": src,
        "format": fmt,
        "pruned_rule": "recipe" if groups else f"sparsity>={PRUNED_MIN_SPARSITY}",
        "filter": None,
        "model": model,
        "recipe": recipe_out,
        "layers": sorted(layers, key=lambda layer: natural_key(layer["name"])),
        "others": [{"kind": kind, **agg} for kind, agg in others.items() if agg["tensors"]],
        "warnings": list(dict.fromkeys(warnings)),
    }


def natural_key(name: str) -> list:
    """Sort key that puts `layer.2` before `layer.10`."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


def select_layers(report: dict, pattern: str | None = None, sort: str = "name") -> dict:
    """A copy of a report (or comparison) with only the layers whose name matches `pattern` (`re.search`),
    ordered by `name` (natural order) or `sparsity` (highest first; for a comparison, the second checkpoint's).
    Model-level figures are left as they are: they describe the whole checkpoint."""
    if sort not in ("name", "sparsity"):
        raise UserError(f"unknown --sort {sort!r}", "Use --sort name or --sort sparsity.")
    layers = report["layers"]
    if pattern:
        try:
            regex = re.compile(pattern)
        except re.error as err:
            raise UserError(f"--filter {pattern!r} is not a valid regular expression: {err}") from err
        layers = [layer for layer in layers if regex.search(layer["name"])]
        if not layers:
            examples = ", ".join(layer["name"] for layer in report["layers"][:3])
            raise UserError(f"no layer matches --filter {pattern!r}", f"Layer names look like: {examples}")
    if sort == "sparsity":
        def by_sparsity(layer):
            value = layer.get("sparsity", layer.get("sparsity_b"))
            return (-(value if value is not None else -1.0), natural_key(layer["name"]))

        layers = sorted(layers, key=by_sparsity)
    else:
        layers = sorted(layers, key=lambda layer: natural_key(layer["name"]))
    return {**report, "layers": layers, "filter": pattern}


# ----------------------------------------------------------------------------------------------------------
# Comparison of two checkpoints
# ----------------------------------------------------------------------------------------------------------


def compare_reports(source_a: str | Path | Mapping, source_b: str | Path | Mapping) -> dict:
    """Two checkpoints side by side per layer: sparsity in each and the number of weights that differ.

    `changed` is null when a layer is missing from one side or the shapes differ. JSON-ready, with
    `schema_version` and `"kind": "compare"` (see docs/inspect.md).
    """
    import torch

    report_a, report_b = sparsity_report(source_a), sparsity_report(source_b)
    tensors_a = source_a if isinstance(source_a, Mapping) else load_tensors(source_a)
    tensors_b = source_b if isinstance(source_b, Mapping) else load_tensors(source_b)
    by_name_a = {layer["name"]: layer for layer in report_a["layers"]}
    by_name_b = {layer["name"]: layer for layer in report_b["layers"]}
    rows, changed_total, compared = [], 0, 0
    for name in sorted(by_name_a.keys() | by_name_b.keys(), key=natural_key):
        a, b = by_name_a.get(name), by_name_b.get(name)
        changed = None
        if a is not None and b is not None and a["shape"] == b["shape"]:
            ta, tb = tensors_a[name], tensors_b[name]
            changed = int(torch.count_nonzero(ta.detach() != tb.detach().to(ta.device)))
            changed_total += changed
            compared += a["numel"]
        rows.append({
            "name": name,
            "kind": (a or b)["kind"],
            "shape_a": a["shape"] if a else None,
            "shape_b": b["shape"] if b else None,
            "sparsity_a": a["sparsity"] if a else None,
            "sparsity_b": b["sparsity"] if b else None,
            "structure_a": a["structure"] if a else None,
            "structure_b": b["structure"] if b else None,
            "changed": changed,
        })
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "compare",
        "filter": None,
        "a": {"source": report_a["source"], "format": report_a["format"], "model": report_a["model"]},
        "b": {"source": report_b["source"], "format": report_b["format"], "model": report_b["model"]},
        "layers": rows,
        "changed": {"weights": changed_total, "compared": compared},
        "warnings": [f"a: {w}" for w in report_a["warnings"]] + [f"b: {w}" for w in report_b["warnings"]],
    }


# ----------------------------------------------------------------------------------------------------------
# Schema
# ----------------------------------------------------------------------------------------------------------

_NUM = {"type": "number"}
_INT = {"type": "integer"}
_RATIO = {"type": "number", "minimum": 0, "maximum": 1}
_AGG = {
    "type": "object",
    "required": ["tensors", "numel", "zeros", "sparsity"],
    "additionalProperties": False,
    "properties": {"tensors": _INT, "numel": _INT, "zeros": _INT, "sparsity": _RATIO},
}
_NULLABLE_RATIO = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
_SHAPE = {"type": "array", "items": _INT}

REPORT_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "prunecli sparsity report",
    "type": "object",
    "additionalProperties": False,
    "required": ["schema_version", "source", "format", "pruned_rule", "filter", "model", "recipe", "layers",
                 "others", "warnings"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "source": {"type": ["string", "null"]},
        "format": {"enum": ["safetensors", "safetensors-sharded", "torch", "torch-sharded", "memory"]},
        "pruned_rule": {"type": "string"},
        "filter": {"type": ["string", "null"]},
        "model": {
            "type": "object",
            "additionalProperties": False,
            "required": ["matmul", "all", "pruned", "blockwise_matmul"],
            "properties": {"matmul": _AGG, "all": _AGG, "pruned": _AGG, "blockwise_matmul": _NULLABLE_RATIO},
        },
        "recipe": {
            "type": ["object", "null"],
            "additionalProperties": False,
            "required": ["groups"],
            "properties": {"groups": {"type": "array", "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["index", "name", "pattern", "target_sparsity", "layers", "missing", "numel", "zeros",
                             "sparsity", "blockwise_sparsity"],
                "properties": {
                    "index": _INT, "name": {"type": ["string", "null"]}, "pattern": {"type": ["string", "null"]},
                    "target_sparsity": {"type": ["number", "null"]}, "layers": _INT,
                    "missing": {"type": "array", "items": {"type": "string"}}, "numel": _INT, "zeros": _INT,
                    "sparsity": _RATIO, "blockwise_sparsity": _NULLABLE_RATIO,
                },
            }}},
        },
        "layers": {"type": "array", "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "module", "kind", "matmul", "shape", "dtype", "numel", "zeros", "sparsity",
                         "structure", "block", "nm_conformance", "empty_rows", "empty_cols", "pruned", "group"],
            "properties": {
                "name": {"type": "string"}, "module": {"type": "string"}, "kind": {"enum": list(KIND_TITLES)},
                "matmul": {"type": "boolean"}, "shape": _SHAPE, "dtype": {"type": "string"}, "numel": _INT,
                "zeros": _INT, "sparsity": _RATIO, "structure": {"type": "string"},
                "block": {"type": ["array", "null"], "items": _INT}, "nm_conformance": _NULLABLE_RATIO,
                "empty_rows": _INT, "empty_cols": _INT, "pruned": {"type": "boolean"},
                "group": {"type": ["integer", "null"]},
            },
        }},
        "others": {"type": "array", "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["kind", "tensors", "numel", "zeros", "sparsity"],
            "properties": {"kind": {"enum": list(OTHER_KINDS)}, **_AGG["properties"]},
        }},
        "warnings": {"type": "array", "items": {"type": "string"}},
    },
}


def validate_report(report: Any, schema: dict | None = None, where: str = "$") -> None:
    """Check a report against `REPORT_SCHEMA` (the subset of JSON Schema it uses); raises ValueError at the
    first mismatch, naming its JSON path. Kept here so tests and consumers need no jsonschema package."""
    schema = REPORT_SCHEMA if schema is None else schema
    if "const" in schema and report != schema["const"]:
        raise ValueError(f"{where}: expected {schema['const']!r}, got {report!r}")
    if "enum" in schema and report not in schema["enum"]:
        raise ValueError(f"{where}: {report!r} is not one of {schema['enum']}")
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(_is_type(report, t) for t in types):
            raise ValueError(f"{where}: expected {'/'.join(types)}, got {type(report).__name__}")
    if report is None:
        return
    if isinstance(report, int | float) and not isinstance(report, bool):
        if "minimum" in schema and report < schema["minimum"] or "maximum" in schema and report > schema["maximum"]:
            raise ValueError(f"{where}: {report} is out of range")
        if isinstance(report, float) and not math.isfinite(report):
            raise ValueError(f"{where}: {report} is not finite")
    if isinstance(report, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in report:
                raise ValueError(f"{where}: missing {key!r}")
        for key, value in report.items():
            if key in props:
                validate_report(value, props[key], f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                raise ValueError(f"{where}: unexpected key {key!r}")
    if isinstance(report, list) and "items" in schema:
        for i, item in enumerate(report):
            validate_report(item, schema["items"], f"{where}[{i}]")


def _is_type(value: Any, name: str) -> bool:
    return {
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "null": value is None,
    }[name]


# ----------------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _shape(shape: list[int] | None) -> str:
    return "-" if shape is None else "x".join(str(d) for d in shape)


def _by_kind(layers: list[dict]) -> list[tuple[str, list[dict]]]:
    return [(kind, [layer for layer in layers if layer["kind"] == kind]) for kind in KIND_TITLES
            if any(layer["kind"] == kind for layer in layers)]


def _model_rows(model: dict) -> list[tuple[str, str, str, str, str]]:
    """(figure, ratio, zeros, elements, tensors) rows of the model-level figures, for tables and Markdown."""
    rows = []
    for label, key in (("Element-wise over matmul/Gemm/conv weights", "matmul"),
                       ("Element-wise over all parameters", "all"), ("Element-wise over pruned layers", "pruned")):
        agg = model[key]
        rows.append((label, _ratio(agg["sparsity"]), f"{agg['zeros']:,}", f"{agg['numel']:,}", str(agg["tensors"])))
    if model.get("blockwise_matmul") is not None:
        rows.append(("Block-wise (recipe patterns) over matmul/Gemm/conv", _ratio(model["blockwise_matmul"]),
                     "", "", ""))
    return rows


def render_report(report: dict, console: Console, *, title: str | None = None, show_others: bool = True) -> None:
    """Print a report as rich tables: layers grouped by kind with a totals row over the shown layers, the other
    tensors summarised, the model-level ratios and the recipe groups' achieved vs target sparsity."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title or f"Sparsity of {report['source'] or 'the model'}"), title_justify="left",
                  show_footer=False, header_style="bold")
    table.add_column("Layer", overflow="fold")
    table.add_column("Shape", justify="right")
    table.add_column("Zeros", justify="right")
    table.add_column("Sparsity", justify="right")
    table.add_column("Structure")
    table.add_column("2:4 conf.", justify="right")
    table.add_column("Empty rows/cols", justify="right")
    shown = report["layers"]
    for kind, layers in _by_kind(shown):
        table.add_row(f"[bold cyan]{KIND_TITLES[kind]}[/bold cyan] ({len(layers)})")
        for layer in layers:
            mark = " [magenta]*[/magenta]" if layer["pruned"] else ""
            table.add_row(
                f"{escape(layer['name'])}{mark}", _shape(layer["shape"]), f"{layer['zeros']:,}",
                _pct(layer["sparsity"]), layer["structure"], _pct(layer["nm_conformance"]),
                f"{layer['empty_rows']}/{layer['empty_cols']}",
            )
        table.add_section()
    numel = sum(layer["numel"] for layer in shown)
    zeros = sum(layer["zeros"] for layer in shown)
    table.add_row(f"[bold]Total ({len(shown)} layers{', filtered' if report.get('filter') else ''})[/bold]",
                  f"{numel:,}", f"{zeros:,}", f"[bold]{_pct(zeros / numel if numel else 0.0)}[/bold]", "", "", "")
    console.print(table)
    if report["layers"] and any(layer["pruned"] for layer in shown):
        rule = "in the recipe" if report["pruned_rule"] == "recipe" else f"at least {PRUNED_MIN_SPARSITY:.0%} zeros"
        console.print(f"[magenta]*[/magenta] pruned layer ({rule})", highlight=False)
    if show_others and report["others"]:
        others = Table(title="Other tensors", title_justify="left", header_style="bold")
        for col in ("Kind", "Tensors", "Elements", "Zeros", "Sparsity"):
            others.add_column(col, justify="left" if col == "Kind" else "right")
        for row in report["others"]:
            others.add_row(row["kind"], str(row["tensors"]), f"{row['numel']:,}", f"{row['zeros']:,}",
                           _pct(row["sparsity"]))
        console.print(others)
    summary = Table(title="Model (whole checkpoint)", title_justify="left", header_style="bold")
    for col in ("Figure", "Sparsity", "Zeros", "Elements", "Tensors"):
        summary.add_column(col, justify="left" if col == "Figure" else "right")
    for row in _model_rows(report["model"]):
        summary.add_row(*row)
    console.print(summary)
    if report.get("recipe"):
        groups = Table(title="Recipe groups", title_justify="left", header_style="bold")
        for col in ("Group", "Pattern", "Layers", "Target", "Achieved", "Block-wise", "Missing"):
            groups.add_column(col, justify="left" if col in ("Group", "Pattern") else "right")
        for g in report["recipe"]["groups"]:
            groups.add_row(escape(g["name"] or str(g["index"])), escape(g["pattern"] or "-"), str(g["layers"]),
                           _ratio(g["target_sparsity"]), _ratio(g["sparsity"]), _ratio(g["blockwise_sparsity"]),
                           str(len(g["missing"])))
        console.print(groups)
    for warning in report.get("warnings", []):
        console.print(f"[yellow]Warning:[/yellow] {escape(warning)}", highlight=False)


def render_comparison(comparison: dict, console: Console) -> None:
    """Print a comparison: per layer, sparsity in A and B and the number of changed weights, plus totals."""
    from rich.markup import escape
    from rich.table import Table

    a, b = comparison["a"], comparison["b"]
    table = Table(title=escape(f"A: {a['source']}\nB: {b['source']}"), title_justify="left", header_style="bold")
    table.add_column("Layer", overflow="fold")
    table.add_column("Shape", justify="right")
    table.add_column("Sparsity A", justify="right")
    table.add_column("Sparsity B", justify="right")
    table.add_column("Structure A -> B")
    table.add_column("Changed", justify="right")
    for kind, layers in _by_kind(comparison["layers"]):
        table.add_row(f"[bold cyan]{KIND_TITLES[kind]}[/bold cyan] ({len(layers)})")
        for row in layers:
            shape = _shape(row["shape_a"]) if row["shape_a"] == row["shape_b"] else \
                f"{_shape(row['shape_a'])} / {_shape(row['shape_b'])}"
            changed = "-" if row["changed"] is None else f"{row['changed']:,}"
            table.add_row(escape(row["name"]), shape, _pct(row["sparsity_a"]), _pct(row["sparsity_b"]),
                          f"{row['structure_a'] or '-'} -> {row['structure_b'] or '-'}", changed)
        table.add_section()
    changed = sum(row["changed"] or 0 for row in comparison["layers"])
    table.add_row(f"[bold]Total ({len(comparison['layers'])} layers)[/bold]", "",
                  _ratio(a["model"]["matmul"]["sparsity"]), _ratio(b["model"]["matmul"]["sparsity"]),
                  "matmul element-wise", f"[bold]{changed:,}[/bold]")
    console.print(table)
    for warning in comparison.get("warnings", []):
        console.print(f"[yellow]Warning:[/yellow] {escape(warning)}", highlight=False)


def markdown_table(report: dict) -> str:
    """The report as Markdown for a model card: model-level ratios, recipe groups, then one row per layer."""
    lines = ["| Figure | Sparsity | Zeros | Elements |", "|---|---:|---:|---:|"]
    for label, ratio, zeros, numel, _ in _model_rows(report["model"]):
        lines.append(f"| {label} | {ratio} | {zeros} | {numel} |")
    if report.get("recipe"):
        lines += ["", "| Group | Pattern | Layers | Target | Achieved | Block-wise |", "|---|---|---:|---:|---:|---:|"]
        for g in report["recipe"]["groups"]:
            lines.append(f"| {g['name'] or g['index']} | {g['pattern'] or '-'} | {g['layers']} | "
                         f"{_ratio(g['target_sparsity'])} | {_ratio(g['sparsity'])} | "
                         f"{_ratio(g['blockwise_sparsity'])} |")
    lines += ["", "| Layer | Kind | Shape | Sparsity | Structure | Pruned |", "|---|---|---:|---:|---|:---:|"]
    for layer in report["layers"]:
        lines.append(f"| `{layer['name']}` | {KIND_TITLES[layer['kind']]} | {_shape(layer['shape'])} | "
                     f"{_pct(layer['sparsity'])} | {layer['structure']} | {'yes' if layer['pruned'] else ''} |")
    return "\n".join(lines) + "\n"
