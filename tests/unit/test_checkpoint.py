"""Atomic saves, recovery after a kill, output-folder rules, safe loading of resumable states."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prunecli.errors import CheckpointError
from prunecli.training import checkpoint as ckpt


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def _read(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_atomic_directory_replaces_and_carries_run_artifacts(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    _write(target, {"config.json": "old", "stale_shard.safetensors": "old", "train_log.jsonl": "log\n",
                    "step_2/trainer_state.json": "{}", "runs/events": "tb"})
    with ckpt.atomic_directory(target, carry=ckpt.is_run_artifact) as staging:
        assert staging.parent == target.parent and staging != target
        _write(staging, {"config.json": "new", "model.safetensors": "new"})
    assert _read(target) == {"config.json": "new", "model.safetensors": "new", "train_log.jsonl": "log\n",
                             "step_2/trainer_state.json": "{}", "runs/events": "tb"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging or old folders left


def test_failure_while_writing_leaves_previous_checkpoint(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    _write(target, {"config.json": "old", "model.safetensors": "old"})
    with pytest.raises(RuntimeError), ckpt.atomic_directory(target) as staging:
        _write(staging, {"config.json": "half"})
        raise RuntimeError("killed while saving")
    assert _read(target) == {"config.json": "old", "model.safetensors": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_two_rename_fallback_and_recovery_after_kill_between_renames(tmp_path, monkeypatch):
    """Where RENAME_EXCHANGE is missing, a kill between the two renames is repaired by the next run."""
    target = tmp_path / "out"
    target.mkdir()
    _write(target, {"config.json": "old"})
    monkeypatch.setattr(ckpt, "exchange_paths", lambda a, b: False)
    with ckpt.atomic_directory(target) as staging:
        _write(staging, {"config.json": "new"})
    assert _read(target) == {"config.json": "new"}

    real_rename = os.rename
    calls = []

    def rename_then_die(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise KeyboardInterrupt("killed between the renames")
        real_rename(src, dst)

    monkeypatch.setattr(ckpt.os, "rename", rename_then_die)
    with pytest.raises(KeyboardInterrupt), ckpt.atomic_directory(target) as staging:
        _write(staging, {"config.json": "newer"})
    monkeypatch.setattr(ckpt.os, "rename", real_rename)
    assert not target.exists()  # the moment of the kill: the previous folder is parked beside it
    ckpt.recover_interrupted_save(target)
    assert _read(target) == {"config.json": "new"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_exchange_is_used_on_linux(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "f").write_text("a")
    if not ckpt.exchange_paths(a, b):
        pytest.skip("renameat2(RENAME_EXCHANGE) not supported here")
    assert (b / "f").read_text() == "a" and not (a / "f").exists()


def test_check_output_dir_rules(tmp_path):
    out = tmp_path / "out"
    assert ckpt.check_output_dir(str(out), False, None) == out  # missing: fine
    out.mkdir()
    assert ckpt.check_output_dir(str(out), False, None) == out  # empty: fine
    (out / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="not empty") as err:
        ckpt.check_output_dir(str(out), False, None)
    assert "--overwrite_output_dir" in err.value.hint
    assert ckpt.check_output_dir(str(out), True, None) == out
    assert ckpt.check_output_dir(str(out), False, "latest") == out
    assert ckpt.check_output_dir(str(out), False, str(out / "step_4")) == out
    with pytest.raises(CheckpointError):
        ckpt.check_output_dir(str(out), False, str(tmp_path / "elsewhere" / "step_4"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="not a folder"):
        ckpt.check_output_dir(str(tmp_path / "file"), True, None)


def test_latest_resumable_state(tmp_path):
    for name, step in (("step_2", 2), ("step_10", 10), ("epoch_0", 4)):
        _write(tmp_path / name, {ckpt.TRAINER_STATE: f'{{"completed_steps": {step}}}'})
    (tmp_path / "step_12").mkdir()  # incomplete: no trainer_state.json
    assert ckpt.resolve_resume_path("latest", tmp_path) == tmp_path / "step_10"
    assert [p.name for _, p in ckpt.list_resumable(tmp_path)] == ["step_2", "epoch_0", "step_10"]
    with pytest.raises(CheckpointError, match="not a resumable checkpoint"):
        ckpt.resolve_resume_path(str(tmp_path / "step_12"), tmp_path)
    with pytest.raises(CheckpointError, match="no resumable checkpoint"):
        ckpt.resolve_resume_path("latest", tmp_path / "step_12")


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_plugin_states_load_with_weights_only(tmp_path):
    import torch

    ckpt.save_torch_state(tmp_path / "ok.pt", {"mask": torch.ones(2), "step": 3, "names": ["a"]})
    assert ckpt.load_torch_state(tmp_path / "ok.pt")["step"] == 3
    torch.save({"evil": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        ckpt.load_torch_state(tmp_path / "evil.pt")


def test_json_text_is_strict():
    assert ckpt.json_text({"pearson": float("nan"), "x": [float("inf"), 1.5]}) == (
        '{\n  "pearson": null,\n  "x": [\n    null,\n    1.5\n  ]\n}\n'
    )


def test_write_file_atomic(tmp_path):
    ckpt.write_file_atomic(tmp_path / "a.txt", "one")
    ckpt.write_file_atomic(tmp_path / "a.txt", b"two")
    assert (tmp_path / "a.txt").read_text() == "two" and len(list(tmp_path.iterdir())) == 1


def test_a_committed_folder_has_the_modes_of_plain_files_whatever_wrote_them(tmp_path):
    """safetensors' save_file stages through a private 0600 file; the committed folder is 0644/0755 (umask 022)."""
    import torch
    from safetensors.torch import save_file

    from tests.helpers import umask, wrong_modes

    target = tmp_path / "out"
    with umask(0o022), ckpt.atomic_directory(target) as staging:
        save_file({"w": torch.zeros(2)}, str(staging / "model.safetensors"))
        (staging / "sub").mkdir(mode=0o700)
        (staging / "sub" / "private.json").write_text("{}")
        os.chmod(staging / "sub" / "private.json", 0o600)
    assert (target / "model.safetensors").is_file()
    assert wrong_modes(target) == {}
    with umask(0o077), ckpt.atomic_directory(tmp_path / "strict") as staging:
        (staging / "a.json").write_text("{}")
    assert os.stat(tmp_path / "strict" / "a.json").st_mode & 0o777 == 0o600  # the umask still rules
