"""Reading checkpoint tensors without building a model: safetensors (memory-mapped), sharded folders, `.bin`.

A `TensorSource` maps tensor names to fetchers; a tensor is read only when it is looked up.
`.bin` files are read with `torch.load(weights_only=True)`, which refuses anything but tensors.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from prunecli.errors import CheckpointError

RECIPE_FILE = "prune_recipe.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_FILE = "pytorch_model.bin"
TORCH_INDEX = "pytorch_model.bin.index.json"
_INPUT_HINT = (
    "Pass a checkpoint folder (model.safetensors, a sharded model.safetensors.index.json or pytorch_model.bin), "
    "a .safetensors file or a .bin file. inspect reads local files only."
)


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
