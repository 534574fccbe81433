"""The shared training loop: optimizer groups, padding, sizes, plug-in and loss hooks, accumulation, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from prunecli.config import DataConfig, RunConfig, TrainConfig
from prunecli.data.sources import load_task_data
from prunecli.data.tokenize import tokenize_task_data
from prunecli.errors import CheckpointError, UserError
from prunecli.models.loading import load_model_and_tokenizer
from prunecli.training.setup import PaddingCollator, optimizer_param_groups, resolve_mixed_precision
from prunecli.training.trainer import Trainer
from tests.helpers import make_tiny_bert, sentiment_rows, write_rows


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("data")
    return (str(write_rows(folder / "train.csv", sentiment_rows(64, 1))),
            str(write_rows(folder / "dev.csv", sentiment_rows(32, 2))))


@pytest.fixture(scope="module")
def dropout_bert(tmp_path_factory) -> Path:
    """Dropout on, so that resuming must restore the random number generators to match."""
    return make_tiny_bert(tmp_path_factory.mktemp("bert_dropout"), hidden_dropout_prob=0.1,
                          attention_probs_dropout_prob=0.1)


def make_cfg(model: Path, files, **train) -> RunConfig:
    defaults = dict(model_name_or_path=str(model), per_device_train_batch_size=8, learning_rate=3e-3,
                    num_train_epochs=2, seed=7)
    defaults.update(train)
    return RunConfig(data=DataConfig(train_file=files[0], validation_file=files[1], max_length=32),
                     train=TrainConfig(**defaults))


def make_trainer(cfg: RunConfig) -> Trainer:
    from transformers import set_seed

    data = load_task_data(cfg.data, seed=cfg.train.seed)
    set_seed(cfg.train.seed)
    model, tokenizer = load_model_and_tokenizer(cfg.train.model_name_or_path, data, cfg)
    tokenized = tokenize_task_data(data, tokenizer, cfg.data, model.config.label2id)
    return Trainer(cfg, model, tokenizer, tokenized)


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.unwrapped_model.state_dict().items()}


def log_lines(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]


class Recorder:
    """A plug-in that records the hook order, checks gradients exist before the step, and can 'kill' the run."""

    def __init__(self, trainer: Trainer, die_at: int | None = None):
        self.trainer, self.die_at = trainer, die_at
        self.events: list[str] = []
        self.steps = 0

    def on_train_begin(self):
        self.events.append("begin")

    def on_before_optimizer_step(self):
        head = self.trainer.unwrapped_model.classifier.weight
        assert head.grad is not None and head.grad.abs().sum() > 0
        self.events.append("before")

    def on_after_optimizer_step(self):
        self.events.append("after")
        self.steps += 1
        if self.steps == self.die_at:
            raise KeyboardInterrupt("simulated kill")

    def on_train_end(self):
        self.events.append("end")

    def state_dict(self):
        return {"steps": self.steps, "tensor": torch.full((2,), float(self.steps))}

    def load_state_dict(self, state):
        self.steps = state["steps"]
        assert torch.equal(state["tensor"], torch.full((2,), float(self.steps)))

    def log_values(self):
        return {"plugin_steps": float(self.steps)}


# ---- building blocks ----------------------------------------------------------------------------------


def test_optimizer_groups_train_the_head_and_skip_decay_on_biases_and_layernorm(tiny_bert_dir):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir)
    decay, no_decay = optimizer_param_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert "classifier.weight" in decay["param_names"] and "classifier.bias" in no_decay["param_names"]
    assert all("LayerNorm" not in n for n in decay["param_names"])
    assert "bert.embeddings.LayerNorm.weight" in no_decay["param_names"]
    every = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(decay["param_names"]) | set(no_decay["param_names"]) == every
    assert not set(decay["param_names"]) & set(no_decay["param_names"])


class _Tok:
    pad_token_id, pad_token_type_id = 0, 0

    def __init__(self, side):
        self.padding_side = side


@pytest.mark.parametrize("side", ["right", "left"])
def test_collator_pads_dynamically_and_passes_example_id(side):
    rows = [{"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": 1, "example_id": 4},
            {"input_ids": [5], "attention_mask": [1], "labels": 0, "example_id": 9}]
    batch = PaddingCollator(_Tok(side), is_regression=False)(rows)
    expected = [[5, 6, 7], [5, 0, 0]] if side == "right" else [[5, 6, 7], [0, 0, 5]]
    assert batch["input_ids"].tolist() == expected
    assert batch["attention_mask"].sum().item() == 4
    assert batch["example_id"].tolist() == [4, 9] and batch["labels"].dtype == torch.long
    padded8 = PaddingCollator(_Tok(side), is_regression=True, pad_to_multiple_of=8)(rows)
    assert padded8["input_ids"].shape == (2, 8) and padded8["labels"].dtype == torch.float32


def test_mixed_precision_choice():
    with pytest.raises(UserError):
        resolve_mixed_precision("fp8")
    if not torch.cuda.is_available():
        assert resolve_mixed_precision("fp16") == "no"  # lowered to what the device can do
    assert resolve_mixed_precision("no") == "no"


# ---- the loop -----------------------------------------------------------------------------------------


def test_adam_hyperparameters_reach_the_optimizer(tiny_bert_dir, files):
    trainer = make_trainer(make_cfg(tiny_bert_dir, files, adam_epsilon=1e-6, adam_beta1=0.8))
    for group in trainer.optimizer.param_groups:
        assert (group["eps"], group["betas"]) == (1e-6, (0.8, 0.999))
    default = make_trainer(make_cfg(tiny_bert_dir, files))
    assert {g["eps"] for g in default.optimizer.param_groups} == {1e-8}


def test_sizes_account_for_accumulation_and_max_steps(tiny_bert_dir, files):
    trainer = make_trainer(make_cfg(tiny_bert_dir, files, gradient_accumulation_steps=3, num_train_epochs=2))
    assert len(trainer.train_dataloader) == 8 and trainer.update_steps_per_epoch == 3  # ceil(8 / 3)
    assert (trainer.max_train_steps, trainer.num_train_epochs) == (6, 2)
    capped = make_trainer(make_cfg(tiny_bert_dir, files, max_train_steps=5))
    assert (capped.update_steps_per_epoch, capped.max_train_steps, capped.num_train_epochs) == (8, 5, 1)


def test_plugin_hooks_run_once_per_optimizer_step_and_are_logged(tiny_bert_dir, files, tmp_path):
    trainer = make_trainer(make_cfg(tiny_bert_dir, files, gradient_accumulation_steps=3, output_dir=str(tmp_path)))
    plugin = Recorder(trainer)
    trainer.add_plugin(plugin)
    results = trainer.fit()
    assert results["completed_steps"] == 6
    assert plugin.events == ["begin"] + ["before", "after"] * 6 + ["end"]
    steps = [r for r in log_lines(tmp_path) if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 7))
    assert [r["plugin_steps"] for r in steps] == [float(i) for i in range(1, 7)]
    assert all({"epoch", "loss", "lr"} <= set(r) for r in steps)
    assert [r["step"] for r in log_lines(tmp_path) if "eval" in r] == [3, 6]  # evaluation after each epoch


def test_loss_fn_sees_example_id_and_hidden_states(tiny_bert_dir, files, tmp_path):
    trainer = make_trainer(make_cfg(tiny_bert_dir, files, max_train_steps=2, output_dir=str(tmp_path)))
    seen = []

    def loss_fn(batch, outputs):
        seen.append(batch["example_id"].tolist())
        assert outputs.hidden_states is not None and len(outputs.hidden_states) == 3
        label_loss = torch.nn.functional.cross_entropy(outputs.logits, batch["labels"])
        return 0.5 * label_loss, {"label_loss": label_loss.detach()}

    trainer.output_hidden_states = True
    trainer.set_loss_fn(loss_fn)
    trainer.fit()
    assert len(seen) == 2 and all(len(ids) == 8 for ids in seen)
    assert set(seen[0]).isdisjoint(seen[1]) and max(max(s) for s in seen) < 64
    steps = [r for r in log_lines(tmp_path) if "loss" in r]
    assert [r["loss"] for r in steps] == pytest.approx([0.5 * r["label_loss"] for r in steps])


def test_gradient_accumulation_equals_a_bigger_batch(tiny_bert_dir, files):
    # plain shuffled batches: 2 x 4 are then the same examples as 1 x 8 (length grouping groups per batch size)
    big = make_trainer(make_cfg(tiny_bert_dir, files, per_device_train_batch_size=8, max_train_steps=1,
                                group_by_length=False))
    big.fit()
    accumulated = make_trainer(make_cfg(tiny_bert_dir, files, per_device_train_batch_size=4,
                                        gradient_accumulation_steps=2, max_train_steps=1, group_by_length=False))
    accumulated.fit()
    start = make_trainer(make_cfg(tiny_bert_dir, files))
    a, b, s = weights(big), weights(accumulated), weights(start)
    assert any(not torch.equal(a[k], s[k]) for k in a)  # a step happened
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_learning_rate_warmup_then_linear_decay(tiny_bert_dir, files, tmp_path):
    trainer = make_trainer(make_cfg(tiny_bert_dir, files, max_train_steps=6, num_warmup_steps=2,
                                    learning_rate=1e-3, output_dir=str(tmp_path)))
    trainer.fit()
    lrs = [r["lr"] for r in log_lines(tmp_path) if "lr" in r]
    # lr after step k: k/2 * peak during warm-up, then (6 - k) / 4 * peak
    assert lrs == pytest.approx([5e-4, 1e-3, 7.5e-4, 5e-4, 2.5e-4, 0.0])


def test_metric_driven_scheduler(tiny_bert_dir, files, tmp_path):
    trainer = make_trainer(make_cfg(tiny_bert_dir, files, lr_scheduler_type="reduce_lr_on_plateau",
                                    per_device_train_batch_size=32, output_dir=str(tmp_path),
                                    checkpointing_steps="epoch"))
    trainer.fit()
    lrs = {r["lr"] for r in log_lines(tmp_path) if "lr" in r}
    assert lrs == {3e-3}  # stepped per epoch on the evaluation loss, never per step
    assert (tmp_path / "epoch_1" / "plugins.pt").is_file()


def test_no_eval_each_epoch_evaluates_once_at_the_end(tiny_bert_dir, files, tmp_path):
    trainer = make_trainer(make_cfg(tiny_bert_dir, files, num_train_epochs=3, eval_each_epoch=False,
                                    output_dir=str(tmp_path)))
    calls = []
    evaluate = trainer.evaluate
    trainer.evaluate = lambda: calls.append(trainer.completed_steps) or evaluate()
    results = trainer.fit()
    assert calls == [trainer.max_train_steps]  # one evaluation, after the last step
    assert [e["epoch"] for e in results["epochs"]] == [2]
    assert results["final_metrics"] == results["epochs"][0]["metrics"]
    assert [r["epoch"] for r in log_lines(tmp_path) if "eval" in r] == [2]
    with pytest.raises(UserError, match="--no_eval_each_epoch"):
        make_trainer(make_cfg(tiny_bert_dir, files, eval_each_epoch=False, lr_scheduler_type="reduce_lr_on_plateau"))


def test_resume_after_a_kill_gives_the_same_weights(dropout_bert, files, tmp_path):
    common = dict(gradient_accumulation_steps=2, num_train_epochs=2, checkpointing_steps="3")  # 4 steps/epoch
    straight = make_trainer(make_cfg(dropout_bert, files, output_dir=str(tmp_path / "a"), **common))
    straight.add_plugin(Recorder(straight))
    straight.fit()

    killed = make_trainer(make_cfg(dropout_bert, files, output_dir=str(tmp_path / "b"), **common))
    killed.add_plugin(Recorder(killed, die_at=7))  # after step_6 (mid epoch 1) was saved
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["step_3", "step_6", "train_log.jsonl"]

    resumed = make_trainer(make_cfg(dropout_bert, files, output_dir=str(tmp_path / "b"),
                                    resume_from_checkpoint="latest", **common))
    plugin = Recorder(resumed)
    resumed.add_plugin(plugin)
    results = resumed.fit()
    assert plugin.steps == 8 and plugin.events[:3] == ["begin", "before", "after"]
    assert results["completed_steps"] == 8 and [e["epoch"] for e in results["epochs"]] == [0, 1]
    final_a, final_b = weights(straight), weights(resumed)
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)
    steps = [r["step"] for r in log_lines(tmp_path / "b") if "loss" in r]
    assert steps == list(range(1, 9))  # the killed run's lines after step 6 were replaced, not duplicated
    assert log_lines(tmp_path / "a") == log_lines(tmp_path / "b")


def test_checkpoints_beyond_the_total_limit_are_deleted(tiny_bert_dir, files, tmp_path):
    """--checkpointing_steps 1 on a 16-step run with a limit of 2 keeps only the newest two states."""
    trainer = make_trainer(make_cfg(tiny_bert_dir, files, output_dir=str(tmp_path), num_train_epochs=2,
                                    checkpointing_steps="1", checkpoints_total_limit=2))
    trainer.fit()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("step_")) == ["step_15", "step_16"]
    resumed = make_trainer(make_cfg(tiny_bert_dir, files, output_dir=str(tmp_path), num_train_epochs=2,
                                    checkpointing_steps="1", resume_from_checkpoint="latest"))
    assert resumed.fit()["completed_steps"] == 16  # the newest state is the one kept and resumed


def test_a_full_disk_leaves_the_previous_checkpoint_intact(tiny_bert_dir, files, tmp_path, monkeypatch):
    import errno

    from prunecli.training import checkpoint as ckpt

    trainer = make_trainer(make_cfg(tiny_bert_dir, files, output_dir=str(tmp_path / "run"), num_train_epochs=1,
                                    checkpointing_steps="2"))
    real_save = ckpt.save_torch_state
    calls = []

    def save(path, state):  # the second checkpoint (step_4) finds the disk full while writing
        calls.append(path)
        if len(calls) == 2:
            (path.parent / "partial.bin").write_bytes(b"x" * 10)
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(path, state)

    monkeypatch.setattr(ckpt, "save_torch_state", save)
    with pytest.raises(CheckpointError) as info:
        trainer.fit()
    assert "the disk is full" in info.value.message and "step_2" in info.value.message
    assert "resume_from_checkpoint latest" in info.value.hint
    # no half-written folder is left behind
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["step_2", "train_log.jsonl"]
    assert ckpt.list_resumable(tmp_path / "run")[-1][0] == 2
    ckpt.read_trainer_state(tmp_path / "run" / "step_2")  # still whole


def test_resume_with_other_settings_is_refused(tiny_bert_dir, files, tmp_path):
    first = make_trainer(make_cfg(tiny_bert_dir, files, output_dir=str(tmp_path), max_train_steps=2,
                                  checkpointing_steps="2"))
    first.fit()
    other = make_trainer(make_cfg(tiny_bert_dir, files, output_dir=str(tmp_path), max_train_steps=2,
                                  per_device_train_batch_size=4, resume_from_checkpoint=str(tmp_path / "step_2")))
    with pytest.raises(CheckpointError, match="per_device_train_batch_size"):
        other.fit()


def test_option_errors(tiny_bert_dir, files):
    for bad, match in ((dict(checkpointing_steps="often", output_dir="x"), "checkpointing_steps"),
                       (dict(checkpointing_steps="5"), "needs --output_dir"),
                       (dict(checkpoints_total_limit=0), "checkpoints_total_limit"),
                       (dict(report_to="carrier_pigeon", output_dir="x"), "not an accelerate tracker"),
                       (dict(lr_scheduler_type="sawtooth"), "not a transformers scheduler"),
                       (dict(gradient_accumulation_steps=0), "at least 1"),
                       (dict(adam_epsilon=0.0), "adam_epsilon must be positive"),
                       (dict(adam_beta1=1.0), r"adam_beta1 must be in \[0, 1\)")):
        with pytest.raises(UserError, match=match):
            make_trainer(make_cfg(tiny_bert_dir, files, **bad))


def test_evaluation_only_trainer_and_final_save(tiny_bert_dir, files, tmp_path):
    from transformers import AutoModelForSequenceClassification

    trainer = make_trainer(make_cfg(tiny_bert_dir, files, max_train_steps=2, output_dir=str(tmp_path / "out")))
    trainer.fit()
    trainer.save_final(extra_files={"prune_recipe.json": "{}\n", "blob.bin": b"\x00\x01"})
    out = tmp_path / "out"
    assert {"config.json", "model.safetensors", "tokenizer.json", "eval_results.json", "run_args.json",
            "train_log.jsonl", "prune_recipe.json", "blob.bin"} <= {p.name for p in out.iterdir()}
    run_args = json.loads((out / "run_args.json").read_text())
    assert run_args["train"]["per_device_train_batch_size"] == 8
    assert run_args["resolved"]["max_train_steps"] == 2 and run_args["resolved"]["num_processes"] == 1
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == {0: "0", 1: "1"}
    for key, value in model.state_dict().items():
        assert torch.equal(value, trainer.unwrapped_model.state_dict()[key])


def test_batches_are_grouped_by_length_and_adamw_is_fused(tiny_bert_dir, files):
    def seen_lengths(trainer):
        lengths = []

        def loss_fn(batch, outputs):
            lengths.append(sorted(batch["attention_mask"].sum(dim=1).tolist()))
            return outputs.loss, {}

        trainer.set_loss_fn(loss_fn)
        trainer.fit()
        return lengths

    assert TrainConfig().group_by_length is True  # length-grouped batches unless --no_group_by_length
    grouped = make_trainer(make_cfg(tiny_bert_dir, files, num_train_epochs=1))
    assert all(group.get("fused") for group in grouped.optimizer.param_groups)
    batches = seen_lengths(grouped)
    assert len(batches) == 8
    # 64 examples fit one mega-batch: sorted, then cut, so no two batches' length ranges overlap
    for a in batches:
        for b in batches:
            assert a is b or a[-1] <= b[0] or b[-1] <= a[0]
    plain = seen_lengths(make_trainer(make_cfg(tiny_bert_dir, files, num_train_epochs=1, group_by_length=False)))
    overlapping = sum(1 for a in plain for b in plain if a is not b and a[-1] > b[0] and b[-1] > a[0])
    assert overlapping > 0


def test_pruning_lr_factor_rewinds_at_events_and_decays_in_the_cool_down():
    from prunecli.training.setup import pruning_lr_factor

    assert pruning_lr_factor([10, 20], 40) is None  # nothing asked: the schedule is left alone
    f = pruning_lr_factor([10, 20, 30], 50, cooldown_decay="linear", rewind_ratio=0.1)
    assert [f(k) for k in (0, 9)] == [1.0, 1.0]  # warm-up: untouched
    assert f(10) == 1.0 and f(15) == pytest.approx(0.55) and f(19) == pytest.approx(0.19)
    assert f(20) == 1.0  # rewound at the next event
    assert f(30) == 1.0 and f(40) == pytest.approx(0.5) and f(49) == pytest.approx(0.05)
    cosine = pruning_lr_factor([10], 30, cooldown_decay="cosine")
    assert cosine(5) == 1.0 and cosine(20) == pytest.approx(0.5) and cosine(29) < 0.01
    from prunecli.errors import UserError

    with pytest.raises(UserError, match="cooldown_lr_decay"):
        pruning_lr_factor([1], 2, cooldown_decay="step")
    with pytest.raises(UserError, match="lr_rewind_ratio"):
        pruning_lr_factor([1], 2, rewind_ratio=1.5)
