"""The numpy side of the report: dtypes numpy lacks (bfloat16, float8), the safetensors reader, torch tensors.

torch serves as the reference here: its dtypes define what every bit pattern means, and its safetensors
writer produces the files the numpy reader must read back exactly.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file as save_torch

from prunecli.errors import CheckpointError
from prunecli.report.arrays import CODECS, RawFloat, as_array, count_zeros, dtype_name, from_torch, is_float
from prunecli.report.compare import compare_reports
from prunecli.report.load import load_tensors
from prunecli.report.stats import sparsity_report, tensor_structure
from tests.unit.test_report import EXPECTED_ZEROS, assert_patterned_report, block_pruned, patterned_state, to_torch

FLOAT8 = ["float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu"]


@pytest.mark.parametrize("name", FLOAT8)
def test_float8_decoding_and_zeros_match_torch_for_every_byte(name):
    raw = torch.arange(256, dtype=torch.uint8)
    reference = raw.view(getattr(torch, name)).float().numpy()
    mine = RawFloat(raw.numpy(), name)
    values = mine.values()
    nan = np.isnan(reference)
    assert np.array_equal(nan, np.isnan(values))
    assert np.array_equal(reference[~nan], values[~nan])
    assert np.array_equal(np.signbit(reference[~nan]), np.signbit(values[~nan]))  # -0.0 stays -0.0
    assert np.array_equal(mine.zeros(), reference == 0)


def test_bfloat16_decoding_and_zeros_match_torch_for_every_bit_pattern():
    bits = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    reference = bits.view(torch.bfloat16).float().numpy()
    mine = from_torch(bits.view(torch.bfloat16))
    assert isinstance(mine, RawFloat) and mine.dtype == "bfloat16"
    assert np.array_equal(mine.values(), reference, equal_nan=True)
    assert np.array_equal(mine.zeros(), reference == 0)
    assert count_zeros(mine) == 2  # +0 and -0


def test_float16_zeros_are_read_from_the_bits():
    values = np.array([0.0, -0.0, np.nan, 1e-7, -1.0, np.inf], dtype=np.float16)  # 1e-7: a float16 subnormal
    assert count_zeros(values) == 2 and values[3] != 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64, torch.bfloat16, torch.int64,
                                   torch.int8, torch.uint8, torch.bool, torch.float8_e4m3fn, torch.float8_e5m2,
                                   torch.uint16, torch.complex64])
def test_torch_tensors_convert_with_their_dtype_name(dtype):
    tensor = torch.tensor([[0, 1], [2, 0]]).to(dtype)
    array = as_array(tensor.requires_grad_() if dtype.is_floating_point else tensor)
    assert dtype_name(array) == str(dtype).removeprefix("torch.")
    assert is_float(array) == dtype.is_floating_point
    assert count_zeros(array) == 2


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.float8_e4m3fn,
                                   torch.float8_e5m2])
def test_report_of_any_float_dtype_equals_the_float32_report(tmp_path, dtype):
    """The patterned weights survive every conversion (|w| >= 0.01, zeros stay zeros): same figures, and the
    file, the same file read as torch tensors, and the in-memory state give the same report."""
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in to_torch(patterned_state()).items()}
    save_torch(state, tmp_path / "model.safetensors")
    report = sparsity_report(tmp_path)
    assert_patterned_report(report)
    assert {layer["dtype"] for layer in report["layers"]} == {str(dtype).removeprefix("torch.")}
    memory = sparsity_report(state)
    assert memory["layers"] == report["layers"] and memory["model"] == report["model"]
    torch.save(state, tmp_path / "pytorch_model.bin")
    assert sparsity_report(tmp_path / "pytorch_model.bin")["layers"] == report["layers"]


def test_compare_across_dtypes_counts_values_that_changed():
    w = torch.from_numpy(block_pruned(32, 16, 4, 1, zero_blocks=40))
    half = w.bfloat16()
    expected = int((w != half.float()).sum())  # bfloat16 rounding changes most values, never a zero
    cmp = compare_reports({"a.query.weight": w}, {"a.query.weight": half})
    assert cmp["changed"]["weights"] == expected > 0
    nan = w.clone()
    nan[0, 0] = float("nan")
    assert compare_reports({"a.query.weight": nan}, {"a.query.weight": nan})["changed"]["weights"] == 1
    signed = torch.zeros(2, 2)
    assert compare_reports({"a.query.weight": signed}, {"a.query.weight": -signed})["changed"]["weights"] == 0


def test_numpy_reader_returns_what_safetensors_wrote(tmp_path):
    """Every numpy-native dtype, odd sizes so that later tensors start at unaligned offsets, an empty tensor."""
    rng = np.random.default_rng(0)
    arrays = {
        "a.int8": rng.integers(-5, 5, (3,), dtype=np.int8),
        "b.f32": rng.standard_normal((3, 5), dtype=np.float32),
        "c.f16": rng.standard_normal((7,)).astype(np.float16),
        "d.f64": rng.standard_normal((2, 3)),
        "e.i64": rng.integers(0, 9, (5,)),
        "f.bool": rng.random((3, 3)) < 0.5,
        "g.u16": rng.integers(0, 9, (4,), dtype=np.uint16),
        "h.c64": (rng.standard_normal(3) + 1j).astype(np.complex64),
        "i.empty": np.zeros((0, 4), dtype=np.float32),
    }
    save_numpy(arrays, tmp_path / "x.safetensors", metadata={"format": "np"})
    tensors = load_tensors(tmp_path / "x.safetensors")
    reference = load_numpy(tmp_path / "x.safetensors")
    assert sorted(tensors) == sorted(arrays)
    for name in arrays:
        got = tensors[name]
        assert got.dtype == reference[name].dtype and got.shape == reference[name].shape, name
        assert np.array_equal(got, reference[name]), name


def test_mapped_tensors_are_private_copies_of_the_file(tmp_path):
    save_numpy({"a.weight": np.ones((64, 64), dtype=np.float32)}, tmp_path / "m.safetensors")
    before = (tmp_path / "m.safetensors").read_bytes()
    tensor = load_tensors(tmp_path / "m.safetensors")["a.weight"]
    tensor[:] = 0  # copy-on-write: the file is untouched
    del tensor
    assert (tmp_path / "m.safetensors").read_bytes() == before
    assert tensor_structure(load_tensors(tmp_path / "m.safetensors")["a.weight"])["zeros"] == 0


def _write(path, header: dict, data: bytes) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


@pytest.mark.parametrize(
    ("header", "data", "message"),
    [
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4, "truncated"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 12, "the file holds 12"),
        ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, "needs 12 bytes"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, "starts at byte 4"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
          "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, "expected 4"),
        ({"a": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 1]}}, b"\0", "unknown dtype"),
        ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4, "invalid shape"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, b"\0" * 4, "invalid data_offsets"),
        ({"a": "F32"}, b"", "has no dtype"),
    ],
)
def test_malformed_safetensors_headers_are_checkpoint_errors(tmp_path, header, data, message):
    _write(tmp_path / "bad.safetensors", header, data)
    with pytest.raises(CheckpointError, match="not a readable safetensors file") as info:
        load_tensors(tmp_path / "bad.safetensors")
    assert message in info.value.message


def test_sub_byte_dtypes_are_validated_but_not_read(tmp_path):
    _write(tmp_path / "f4.safetensors", {"a.weight": {"dtype": "F4", "shape": [2, 4], "data_offsets": [0, 4]},
                                         "__metadata__": {"format": "pt"}}, b"\0" * 4)
    tensors = load_tensors(tmp_path / "f4.safetensors")
    assert list(tensors) == ["a.weight"]
    with pytest.raises(CheckpointError, match="cannot read tensor 'a.weight'.*F4 is not supported"):
        tensors["a.weight"]


def test_codecs_cover_every_raw_float_safetensors_can_store():
    from prunecli.report.load import _SAFETENSORS_DTYPES

    raw = {name for _, name in _SAFETENSORS_DTYPES.values() if name}
    assert raw <= set(CODECS) and set(FLOAT8) | {"bfloat16"} == set(CODECS)


def test_patterned_checkpoint_counts_are_exact_through_the_numpy_reader(tmp_path):
    save_numpy(patterned_state(), tmp_path / "model.safetensors")
    report = sparsity_report(tmp_path)
    assert {layer["name"]: (layer["zeros"], layer["structure"]) for layer in report["layers"]} == EXPECTED_ZEROS
