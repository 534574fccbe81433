"""Reading checkpoint tensors without building a model: safetensors (memory-mapped), sharded folders, `.bin`.

A `TensorSource` maps tensor names to fetchers; a tensor is read only when it is looked up, and comes back
as a numpy array or a `RawFloat` (bfloat16/float8 bits, see `prunecli.report.arrays`).

Safetensors files are parsed here with numpy alone: importing torch takes seconds, several times the
whole of `prunecli inspect` on a safetensors checkpoint. torch is imported only for torch files (`.bin`,
`.pt`), read with `torch.load(weights_only=True)`, which refuses anything but tensors.
"""

from __future__ import annotations

import functools
import json
import math
import mmap
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np

from prunecli.errors import CheckpointError
from prunecli.report.arrays import Array, RawFloat, from_torch

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
    """Read-only mapping name -> array over checkpoint files; a tensor is read only when it is looked up.

    Values are numpy arrays, or `RawFloat` for dtypes numpy lacks. A safetensors tensor is memory-mapped
    on each lookup and unmapped when the caller drops it; `.bin` files are `torch.load`ed once (with
    `mmap=True` where the file format allows it) and each tensor shared with numpy without a copy.
    `format` names what was read (`safetensors`, `safetensors-sharded`, `torch`, `torch-sharded`) and
    `files` the files behind it.
    """

    def __init__(self, fetchers: dict[str, Callable[[], Array]], fmt: str, files: list[Path]):
        self._fetchers = fetchers
        self.format = fmt
        self.files = files

    def __getitem__(self, name: str) -> Array:
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


# safetensors dtype -> (numpy storage type, torch-style name of a RawFloat, or None for numpy-native dtypes).
_SAFETENSORS_DTYPES: dict[str, tuple[str, str | None]] = {
    "F64": ("<f8", None), "F32": ("<f4", None), "F16": ("<f2", None), "BF16": ("<u2", "bfloat16"),
    "F8_E4M3": ("u1", "float8_e4m3fn"), "F8_E5M2": ("u1", "float8_e5m2"), "F8_E4M3FNUZ": ("u1", "float8_e4m3fnuz"),
    "F8_E5M2FNUZ": ("u1", "float8_e5m2fnuz"), "F8_E8M0": ("u1", "float8_e8m0fnu"), "I64": ("<i8", None),
    "I32": ("<i4", None), "I16": ("<i2", None), "I8": ("i1", None), "U64": ("<u8", None), "U32": ("<u4", None),
    "U16": ("<u2", None), "U8": ("u1", None), "BOOL": ("?", None), "C64": ("<c8", None),
}
# Sub-byte dtypes safetensors knows (bits per element): their files are validated, their tensors not read.
_SUBBYTE_DTYPES = {"F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}
_MAX_HEADER = 100_000_000  # safetensors' own limit on the JSON header


def _read_header(path: Path) -> tuple[int, dict[str, dict]]:
    """(header length, tensor entries) of a safetensors file, checked as `safetensors` itself checks it.

    Format: an 8-byte little-endian header length N, N bytes of JSON `{name: {dtype, shape, data_offsets}}`
    (plus an optional `__metadata__`), then the data; offsets are relative to the data and must tile it
    exactly, so a truncated or padded file is rejected here rather than by a read of garbage later.
    Raises ValueError with what is wrong.
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ValueError(f"the file has {size} bytes, fewer than the 8-byte header length")
        header_len = int.from_bytes(head, "little")
        if header_len > min(size - 8, _MAX_HEADER):
            raise ValueError(f"the header claims {header_len} bytes but the file has {size}")
        raw = fh.read(header_len)
    if not raw.startswith(b"{"):
        raise ValueError("the header is not a JSON object")
    header = json.loads(raw)
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    header.pop("__metadata__", None)
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict) or not isinstance(info.get("dtype"), str):
            raise ValueError(f"tensor {name!r} has no dtype")
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ValueError(f"tensor {name!r} has an invalid shape {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1]):
            raise ValueError(f"tensor {name!r} has invalid data_offsets {offsets!r}")
        numel = math.prod(shape)
        if info["dtype"] in _SAFETENSORS_DTYPES:
            nbytes = numel * np.dtype(_SAFETENSORS_DTYPES[info["dtype"]][0]).itemsize
        elif info["dtype"] in _SUBBYTE_DTYPES:
            nbytes = -(-numel * _SUBBYTE_DTYPES[info["dtype"]] // 8)
        else:
            raise ValueError(f"tensor {name!r} has an unknown dtype {info['dtype']!r}")
        if nbytes != offsets[1] - offsets[0]:
            raise ValueError(f"tensor {name!r}: {info['dtype']} {shape} needs {nbytes} bytes, its offsets span "
                             f"{offsets[1] - offsets[0]}")
        spans.append((offsets[0], offsets[1], name))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise ValueError(f"tensor {name!r} starts at byte {begin} of the data, expected {end}")
        end = stop
    if 8 + header_len + end != size:
        raise ValueError(f"the tensors take {end} bytes of data, the file holds {size - 8 - header_len}"
                         + (" (truncated)" if 8 + header_len + end > size else ""))
    return header_len, header


def _safetensors_fetchers(path: Path, only: set[str] | None = None) -> dict[str, Callable[[], Array]]:
    """Fetchers that memory-map one tensor each, zero-copy, with numpy (no torch, no `safetensors` package).

    Each tensor is its own private (copy-on-write) map of just its bytes, so its pages leave memory when the
    array is freed: inspecting a checkpoint costs about its largest tensor, not the file.
    """
    try:
        header_len, header = _read_header(path)
    except (OSError, ValueError) as err:  # truncated file, bad header, not safetensors at all
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}",
                              "The file is truncated or corrupted; save or download it again.") from err
    fetchers: dict[str, Callable[[], Array]] = {}
    for name, info in header.items():
        if only is not None and name not in only:
            continue
        begin, end = info["data_offsets"]
        fetchers[name] = functools.partial(_map_tensor, path, 8 + header_len + begin, end - begin, info["dtype"],
                                           tuple(info["shape"]))
    return fetchers


def _map_tensor(path: Path, offset: int, nbytes: int, dtype: str, shape: tuple[int, ...]) -> Array:
    """One tensor as a private (copy-on-write) memory map of its bytes; unmapped when the array is freed."""
    if dtype not in _SAFETENSORS_DTYPES:
        raise ValueError(f"dtype {dtype} is not supported by inspect")
    storage, raw_name = _SAFETENSORS_DTYPES[dtype]
    if nbytes == 0:
        array = np.empty(shape, dtype=storage)
    else:
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        with path.open("rb") as fh:
            window = mmap.mmap(fh.fileno(), offset - start + nbytes, offset=start, access=mmap.ACCESS_COPY)
        array = np.frombuffer(window, dtype=storage, count=nbytes // np.dtype(storage).itemsize,
                              offset=offset - start).reshape(shape)
    return RawFloat(array, raw_name) if raw_name else array


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


def _torch_fetchers(path: Path) -> dict[str, Callable[[], Array]]:
    state = _torch_state_dict(path)
    return {name: functools.partial(_from_state, state, name) for name in state}


def _from_state(state: dict, name: str) -> Array:
    return from_torch(state[name])


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
    fetchers: dict[str, Callable[[], Array]] = {}
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
