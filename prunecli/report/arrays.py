"""Tensors as numpy arrays for the report: the float dtypes numpy lacks, zero masks, and torch tensors.

The report works on numpy only, because importing torch costs seconds and `prunecli inspect` of a
safetensors checkpoint should not wait for it. A tensor reaches the statistics as either

* a numpy array, for every dtype numpy has (float16/32/64, integers, bool, complex64), or
* a `RawFloat`: the bit patterns of a float dtype numpy has no type for (bfloat16, the float8 formats),
  with the dtype's name. Zero tests on the bits are exact (a float is zero iff every bit but the sign is
  0), and `values()` decodes to float32, which holds every bfloat16 and float8 value exactly.

`as_array` turns anything the report accepts (these two, or a torch tensor of an in-memory state dict)
into one of them; torch is touched only when a torch tensor is passed in.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _float8_table(exp_bits: int, man_bits: int, bias: int, special: str) -> np.ndarray:
    """The float32 value of each of the 256 bytes of an 8-bit float format.

    `special`: `ieee` (all-ones exponent is inf/NaN: e5m2), `fn` (only S.1111.111 is NaN, no inf: e4m3fn),
    `fnuz` (0x80, "negative zero", is the only NaN; no inf) or `e8m0` (unsigned powers of two, 0xFF NaN).
    """
    b = np.arange(256, dtype=np.int64)
    if special == "e8m0":
        values = np.ldexp(1.0, b - bias)
        values[0xFF] = np.nan
        return values.astype(np.float32)
    exp = (b >> man_bits) & ((1 << exp_bits) - 1)
    man = (b & ((1 << man_bits) - 1)) / float(1 << man_bits)
    magnitude = np.where(exp == 0, np.ldexp(man, 1 - bias), np.ldexp(1.0 + man, exp - bias))
    values = np.where(b & 0x80, -magnitude, magnitude)
    if special == "ieee":
        top = exp == (1 << exp_bits) - 1
        values = np.where(top & (man == 0), np.copysign(np.inf, values), values)
        values = np.where(top & (man != 0), np.nan, values)
    elif special == "fn":
        values = np.where((b & 0x7F) == 0x7F, np.nan, values)
    else:  # fnuz
        values = np.where(b == 0x80, np.nan, values)
    return values.astype(np.float32)


class _Codec:
    """How to read one raw float dtype: its storage integer type, zero test and decoder to float32."""

    def __init__(self, storage: str, zero_mask: int | None, table: np.ndarray | None = None):
        self.storage = np.dtype(storage)
        self.zero_mask = zero_mask  # bits & zero_mask == 0 <=> the value is zero; None: no zero exists
        self.table = table

    def zeros(self, bits: np.ndarray) -> np.ndarray:
        if self.zero_mask is None:
            return np.zeros(bits.shape, dtype=bool)
        return (bits & self.zero_mask) == 0

    def decode(self, bits: np.ndarray) -> np.ndarray:
        if self.table is None:  # bfloat16 is the top half of a float32
            return (bits.astype(np.uint32) << 16).view(np.float32)
        return self.table[bits]


#: Raw float dtypes by their torch name (what the report's `dtype` field says).
CODECS = {
    "bfloat16": _Codec("<u2", 0x7FFF),
    "float8_e4m3fn": _Codec("u1", 0x7F, _float8_table(4, 3, 7, "fn")),
    "float8_e5m2": _Codec("u1", 0x7F, _float8_table(5, 2, 15, "ieee")),
    "float8_e4m3fnuz": _Codec("u1", 0xFF, _float8_table(4, 3, 8, "fnuz")),
    "float8_e5m2fnuz": _Codec("u1", 0xFF, _float8_table(5, 2, 16, "fnuz")),
    "float8_e8m0fnu": _Codec("u1", None, _float8_table(8, 0, 127, "e8m0")),
}


class RawFloat:
    """A float tensor of a dtype numpy lacks, held as its bit patterns (`bits`, an unsigned integer array).

    Supports what the statistics need: `shape`, `ndim`, `size`, `dtype` (the torch-style name), `zeros()`
    (a bool mask, computed on the bits) and `values()` (float32, exact).
    """

    __slots__ = ("bits", "dtype")

    def __init__(self, bits: np.ndarray, dtype: str):
        if dtype not in CODECS:
            raise ValueError(f"unsupported raw float dtype {dtype!r}")
        self.bits = bits
        self.dtype = dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return self.bits.shape

    @property
    def ndim(self) -> int:
        return self.bits.ndim

    @property
    def size(self) -> int:
        return self.bits.size

    def zeros(self) -> np.ndarray:
        return CODECS[self.dtype].zeros(self.bits)

    def values(self) -> np.ndarray:
        return CODECS[self.dtype].decode(self.bits)

    def __repr__(self) -> str:
        return f"RawFloat(shape={self.shape}, dtype={self.dtype})"


Array = np.ndarray | RawFloat


def from_torch(tensor: Any) -> Array:
    """A torch tensor as an `Array`, sharing its memory where possible (detached, moved to the CPU).

    bfloat16 and float8 tensors become `RawFloat` views of their bits (no copy, exact); every other dtype
    goes through `.numpy()`.
    """
    import torch

    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    name = str(tensor.dtype).removeprefix("torch.")
    if name in CODECS:
        storage = CODECS[name].storage
        int_type = torch.int16 if storage.itemsize == 2 else torch.uint8
        return RawFloat(tensor.view(int_type).numpy().view(storage), name)
    if tensor.dtype in (torch.uint16, torch.uint32, torch.uint64):  # numpy has them; older torch cannot convert
        signed = {torch.uint16: torch.int16, torch.uint32: torch.int32, torch.uint64: torch.int64}[tensor.dtype]
        return tensor.view(signed).numpy().view(name)
    return tensor.numpy()


def as_array(tensor: Any) -> Array:
    """A numpy array or `RawFloat` as is; a torch tensor converted (see `from_torch`); else `np.asarray`."""
    if isinstance(tensor, np.ndarray | RawFloat):
        return tensor
    if type(tensor).__module__.startswith("torch"):
        return from_torch(tensor)
    return np.asarray(tensor)


def dtype_name(array: Array) -> str:
    """The dtype as the report names it (torch's spelling: `float32`, `bfloat16`, `int64`, `bool`)."""
    return array.dtype if isinstance(array, RawFloat) else array.dtype.name


def is_float(array: Array) -> bool:
    """True for real floating-point tensors (complex and integer tensors are not, as in torch)."""
    return isinstance(array, RawFloat) or np.issubdtype(array.dtype, np.floating)


def zero_mask(array: Array) -> np.ndarray:
    """Bool mask of the exact zeros (+0 and -0; NaN is not zero) of an array, same shape."""
    if isinstance(array, RawFloat):
        return array.zeros()
    if array.dtype == np.float16:  # numpy's float16 arithmetic is emulated: test the bits, 10x faster
        return (array.view(np.uint16) & 0x7FFF) == 0
    return array == 0


def count_zeros(array: Array) -> int:
    """The number of exact zeros (for bool tensors: of False values)."""
    if array.size == 0:
        return 0
    return int(np.count_nonzero(zero_mask(array)))


def values(array: Array) -> np.ndarray:
    """The values as a numpy array numpy can compare (RawFloat decoded to float32)."""
    return array.values() if isinstance(array, RawFloat) else array
