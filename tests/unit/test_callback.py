"""PruningCallback: prunecli's pruner driven by a real `transformers.Trainer` (tiny BERT, CPU, synthetic data)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import (
    BertForSequenceClassification,
    BertTokenizer,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from prunecli.errors import CheckpointError, RecipeError, UserError
from prunecli.sparsity.recipe import Recipe
from prunecli.training.callback import STATE_FILE, PruningCallback, run_geometry
from tests.helpers import make_tiny_bert, sentiment_rows

STEPS_PER_EPOCH = 8  # 64 rows, batch 8
EPOCHS = 3
RECIPE = {"target_sparsity": 0.5, "pattern": "4x1"}


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("callback_bert"))


def encode(folder: Path, n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    tok = BertTokenizer.from_pretrained(folder)
    rows = sentiment_rows(n, seed)
    enc = tok([r["sentence"] for r in rows], padding="max_length", max_length=12, truncation=True, return_tensors="pt")
    return [{**{k: v[i] for k, v in enc.items()}, "labels": torch.tensor(r["label"])} for i, r in enumerate(rows)]


@pytest.fixture(scope="module")
def train_data(bert_dir) -> list[dict[str, torch.Tensor]]:
    return encode(bert_dir, STEPS_PER_EPOCH * 8, seed=1)


def make_trainer(bert_dir: Path, data, out: Path, callbacks: list, **overrides) -> Trainer:
    set_seed(0)
    model = BertForSequenceClassification.from_pretrained(bert_dir)
    kwargs = dict(output_dir=str(out), per_device_train_batch_size=8, num_train_epochs=EPOCHS, learning_rate=1e-3,
                  save_strategy="no", report_to=[], logging_steps=1, use_cpu=True, disable_tqdm=True, seed=0,
                  log_level="error", dataloader_num_workers=0)
    kwargs.update(overrides)
    extra = {k: kwargs.pop(k) for k in ("eval_dataset", "compute_metrics") if k in kwargs}
    return Trainer(model=model, args=TrainingArguments(**kwargs), train_dataset=data, callbacks=callbacks, **extra)


def masks_of(model, names) -> dict[str, torch.Tensor]:
    """The zero pattern of every pruned weight (what a sparse checkpoint carries)."""
    modules = dict(model.named_modules())
    return {name: (modules[name].weight.detach() == 0) for name in names}


def train_logs(trainer) -> list[dict]:
    return [e for e in trainer.state.log_history if "loss" in e]


class StopAt(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True


class Recorder(TrainerCallback):
    """Stands for a report_to integration: keeps the logs it is handed."""

    def __init__(self):
        self.logs: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs))


# ---------------------------------------------------------------------- end to end
@pytest.mark.parametrize("pattern", ["4x1", "2:4"])
def test_reaches_target_and_saves_exact_zeros(bert_dir, train_data, tmp_path, pattern):
    recipe_file = tmp_path / "recipe.json"
    recipe_file.write_text(json.dumps({"target_sparsity": 0.5, "pattern": pattern}))
    callback = PruningCallback(str(recipe_file))
    trainer = make_trainer(bert_dir, train_data, tmp_path / "out", [callback])
    trainer.train()
    pruner = callback.pruner
    assert callback.steps == {"start_step": 0, "end_step": 24, "pruning_frequency": -1, "steps_per_epoch": 8,
                              "num_train_epochs": 3.0}
    assert pruner.step == trainer.state.global_step == EPOCHS * STEPS_PER_EPOCH
    assert pruner.current_sparsity() == pytest.approx(0.5, abs=2e-3)
    assert "bert.pooler.dense" not in pruner.layers and "classifier" not in pruner.layers

    trainer.save_model(str(tmp_path / "sparse"))
    saved = BertForSequenceClassification.from_pretrained(tmp_path / "sparse")
    modules = dict(saved.named_modules())
    zeros = total = 0
    for name, layer in pruner.layers.items():
        weight = modules[name].weight.detach()
        assert torch.equal(weight == 0, layer.pruned), name  # pruned weights, and only they, are exact zeros
        zeros, total = zeros + int((weight == 0).sum()), total + weight.numel()
        if pattern == "2:4":
            assert ((weight.view(weight.shape[0], -1, 4) == 0).sum(-1) >= 2).all(), name
        else:
            blocks = (weight == 0).view(weight.shape[0] // 4, 4, -1)
            assert torch.equal(blocks.all(1), blocks.any(1)), name  # whole 4x1 blocks
    assert zeros / total == pytest.approx(0.5, abs=2e-3)
    for dense in ("bert.pooler.dense", "classifier"):
        weight = modules[dense].weight
        assert int(torch.count_nonzero(weight)) == weight.numel(), dense


def test_warm_up_and_cool_down_epochs(bert_dir, train_data, tmp_path):
    callback = PruningCallback(RECIPE, sparsity_warm_epochs=1, cooldown_epochs=1)
    trainer = make_trainer(bert_dir, train_data, tmp_path, [callback])
    trainer.train()
    assert callback.steps["start_step"] == 8 and callback.steps["end_step"] == 16
    assert [p["start_step"] for p in callback.pruner.plan()] == [8]
    by_step = {e["step"]: e["sparsity"] for e in train_logs(trainer)}
    assert sorted(by_step) == list(range(1, 25))
    assert all(by_step[s] == 0.0 for s in range(1, 9))  # event 0 (step 8) aims at initial_sparsity 0
    assert 0.0 < by_step[9] < by_step[12] < by_step[16]
    assert by_step[16] == pytest.approx(0.5, abs=2e-3)
    assert all(by_step[s] == by_step[16] for s in range(16, 25))  # cool-down: masks fixed (and masks only grow)
    assert callback.pruner.current_sparsity() == by_step[16]


def test_hooks_run_once_per_optimizer_step_with_accumulation(bert_dir, train_data, tmp_path):
    callback = PruningCallback(RECIPE, sparsity_warm_epochs=1)
    trainer = make_trainer(bert_dir, train_data, tmp_path, [callback], gradient_accumulation_steps=2,
                           num_train_epochs=2)
    trainer.train()
    assert callback.steps == {"start_step": 4, "end_step": 8, "pruning_frequency": -1, "steps_per_epoch": 4,
                              "num_train_epochs": 2.0}
    assert callback.pruner.step == trainer.state.global_step == 8
    assert callback.pruner.current_sparsity() == pytest.approx(0.5, abs=2e-3)


def test_resume_ends_with_the_masks_of_an_uninterrupted_run(bert_dir, train_data, tmp_path):
    options = dict(sparsity_warm_epochs=0.5, cooldown_epochs=1, pruning_frequency=2)  # events at 4, 6, ..., 16
    args = dict(save_strategy="steps", save_steps=6, save_total_limit=1)

    full_cb = PruningCallback(RECIPE, **options)
    full = make_trainer(bert_dir, train_data, tmp_path / "full", [full_cb], save_strategy="no")
    full.train()
    names = list(full_cb.pruner.layers)
    expected = masks_of(full.model, names)

    first_cb = PruningCallback(RECIPE, **options)
    out = tmp_path / "interrupted"
    make_trainer(bert_dir, train_data, out, [first_cb, StopAt(12)], **args).train()
    # save_total_limit rotated checkpoint-6 away, its pruner state with it
    assert [p.name for p in out.iterdir() if p.name.startswith("checkpoint-")] == ["checkpoint-12"]
    assert (out / "checkpoint-12" / STATE_FILE).is_file()
    saved = torch.load(out / "checkpoint-12" / STATE_FILE, weights_only=True)
    mid = sum(int(layer["pruned"].sum()) for layer in saved["layers"].values())
    assert saved["step"] == 12 and 0 < mid < sum(int(m.sum()) for m in expected.values())  # stopped mid-pruning

    resumed_cb = PruningCallback(RECIPE, **options)
    resumed = make_trainer(bert_dir, train_data, out, [resumed_cb], **args)
    resumed.train(resume_from_checkpoint=str(out / "checkpoint-12"))
    assert resumed.state.global_step == 24 and resumed_cb.pruner.step == 24
    got = masks_of(resumed.model, names)
    for name in names:
        assert torch.equal(got[name], expected[name]), name
        assert torch.equal(resumed_cb.pruner.layers[name].pruned, full_cb.pruner.layers[name].pruned), name

    # resume_from_checkpoint=True takes the last checkpoint of output_dir (here checkpoint-24): it has its state too
    again_cb = PruningCallback(RECIPE, **options)
    make_trainer(bert_dir, train_data, out, [again_cb], **args).train(resume_from_checkpoint=True)
    assert all(torch.equal(again_cb.pruner.layers[n].pruned, expected[n]) for n in names)


def test_resume_mismatches_are_checkpoint_errors(bert_dir, train_data, tmp_path):
    args = dict(save_strategy="steps", save_steps=4)
    out = tmp_path / "run"
    make_trainer(bert_dir, train_data, out, [PruningCallback(RECIPE), StopAt(4)], **args).train()
    checkpoint = out / "checkpoint-4"

    def resume(callback, folder=checkpoint, output=out):
        make_trainer(bert_dir, train_data, output, [callback], **args).train(resume_from_checkpoint=str(folder))

    with pytest.raises(CheckpointError, match="another pruning schedule"):
        resume(PruningCallback({"target_sparsity": 0.6, "pattern": "4x1"}))
    with pytest.raises(CheckpointError, match="another recipe or model"):
        resume(PruningCallback({**RECIPE, "excluded_op_names": ["pooler", "attention"]}))

    bare = tmp_path / "elsewhere" / "checkpoint-4"
    shutil.copytree(checkpoint, bare)
    (bare / STATE_FILE).unlink()
    with pytest.raises(CheckpointError, match="does not exist"):
        resume(PruningCallback(RECIPE), folder=bare, output=tmp_path / "other")

    state = torch.load(checkpoint / STATE_FILE, weights_only=True)
    first = next(iter(state["layers"]))
    state["layers"][first]["pruned"] = torch.ones_like(state["layers"][first]["pruned"])
    torch.save(state, bare / STATE_FILE)
    with pytest.raises(CheckpointError, match="not zero in the model"):
        resume(PruningCallback(RECIPE, resume_from=bare), folder=bare, output=tmp_path / "other")


def test_sparsity_in_log_history_and_integrations(bert_dir, train_data, tmp_path):
    callback = PruningCallback({"pruning_configs": [{**RECIPE, "op_names": ["attention"]},
                                                    {"target_sparsity": 0.25, "op_names": ["intermediate", "output"],
                                                     "excluded_op_names": ["attention"]}]})
    recorder = Recorder()  # before the pruning callback, like the Trainer's report_to integrations
    trainer = make_trainer(bert_dir, train_data, tmp_path, [recorder, callback], num_train_epochs=1)
    trainer.callback_handler.callbacks.insert(0, trainer.pop_callback(PruningCallback))  # docs/python_api.md
    trainer.train()
    logs = train_logs(trainer)
    assert len(logs) == STEPS_PER_EPOCH
    for entry in logs:
        assert {"sparsity", "target_sparsity", "sparsity/group0", "sparsity/group1"} <= set(entry)
    assert logs[-1]["sparsity"] == pytest.approx(callback.pruner.current_sparsity())
    assert logs[-1]["target_sparsity"] == pytest.approx(callback.pruner.current_sparsity(), abs=2e-3)
    assert logs[-1]["sparsity/group1"] == pytest.approx(0.25, abs=2e-3)
    final = trainer.state.log_history[-1]
    assert "train_runtime" in final and final["sparsity"] == logs[-1]["sparsity"]
    assert [e["sparsity"] for e in recorder.logs] == [e["sparsity"] for e in trainer.state.log_history]


def test_load_best_model_at_end_keeps_the_best_checkpoints_masks(bert_dir, train_data, tmp_path):
    calls = []

    def first_is_best(_):
        calls.append(1)
        return {"fake": 1.0 if len(calls) == 1 else 0.0}

    callback = PruningCallback(RECIPE)
    trainer = make_trainer(bert_dir, train_data, tmp_path, [callback], save_strategy="steps", save_steps=8,
                           eval_strategy="steps", eval_steps=8, load_best_model_at_end=True,
                           metric_for_best_model="fake", greater_is_better=True,
                           eval_dataset=encode(bert_dir, 16, seed=2), compute_metrics=first_is_best)
    trainer.train()
    assert trainer.state.best_model_checkpoint.endswith("checkpoint-8")
    at_8 = next(e["sparsity"] for e in train_logs(trainer) if e["step"] == 8)
    assert 0.0 < at_8 < 0.45
    assert callback.pruner.current_sparsity() == at_8
    masks = masks_of(trainer.model, callback.pruner.layers)
    assert all(torch.equal(masks[n], layer.pruned) for n, layer in callback.pruner.layers.items())


# ---------------------------------------------------------------------- arithmetic and errors (no training)
def _args(**kw):
    base = dict(max_steps=-1, num_train_epochs=3.0, gradient_accumulation_steps=1, resume_from_checkpoint=None)
    return SimpleNamespace(**{**base, **kw})


def test_run_geometry_follows_the_trainer():
    loader = list(range(10))  # 10 batches per epoch
    assert run_geometry(_args(), SimpleNamespace(max_steps=30), loader) == (10, 3.0)
    assert run_geometry(_args(gradient_accumulation_steps=3), SimpleNamespace(max_steps=12), loader) == (4, 3.0)
    assert run_geometry(_args(num_train_epochs=2.5), SimpleNamespace(max_steps=25), loader) == (10, 2.5)
    assert run_geometry(_args(num_train_epochs=0.5), SimpleNamespace(max_steps=5), loader) == (10, 0.5)
    assert run_geometry(_args(max_steps=25), SimpleNamespace(max_steps=25), loader) == (10, 2.5)
    assert run_geometry(_args(max_steps=25), SimpleNamespace(max_steps=25), iter(loader)) == (25, 1.0)
    # a dataloader whose length does not give the Trainer's max_steps: steps per epoch from max_steps
    assert run_geometry(_args(), SimpleNamespace(max_steps=60), loader) == (20, 3.0)


def test_steps_fill_only_what_the_recipe_leaves_unset():
    steps = {"start_step": 8, "end_step": 16, "pruning_frequency": -1}
    (group,) = Recipe.from_dict({}).with_steps(steps).resolve()
    assert (group.start_step, group.end_step, group.pruning_frequency) == (8, 16, -1)
    (group,) = Recipe.from_dict({"start_step": 2, "pruning_frequency": 5}).with_steps(steps).resolve()
    assert (group.start_step, group.end_step, group.pruning_frequency) == (2, 16, 5)
    (group,) = Recipe.from_dict({"pruning_frequency": 5}).with_steps(steps, pruning_frequency=3).resolve()
    assert group.pruning_frequency == 3
    local = Recipe.from_dict({"pruning_configs": [{"pruning_frequency": 7, "end_step": 20}]})
    (group,) = local.with_steps(steps, pruning_frequency=3).resolve()  # a group's own keys win
    assert (group.start_step, group.end_step, group.pruning_frequency) == (8, 20, 7)
    (group,) = Recipe.from_dict({"pruning_frequency": 5}).with_steps(steps, pruning_frequency=-1).resolve()
    assert group.pruning_frequency == 5  # -1 means "as the recipe says", as on the command line


def test_user_errors_surface_at_construction(tmp_path):
    with pytest.raises(RecipeError, match="file not found"):
        PruningCallback(str(tmp_path / "missing.json"))
    with pytest.raises(RecipeError, match="target_sparsity"):
        PruningCallback({"target_sparsty": 0.5})
    with pytest.raises(RecipeError, match="2:4"):
        PruningCallback({"pattern": "2:4", "target_sparsity": 0.9})
    with pytest.raises(UserError, match="pruning_frequency"):
        PruningCallback(RECIPE, pruning_frequency=0)
    with pytest.raises(UserError, match="cooldown_epochs"):
        PruningCallback(RECIPE, cooldown_epochs=-1)
    with pytest.raises(UserError, match="recipe path, dict or Recipe"):
        PruningCallback(42)


def test_window_errors_name_the_options(bert_dir, train_data, tmp_path):
    trainer = make_trainer(bert_dir, train_data, tmp_path, [PruningCallback(RECIPE, sparsity_warm_epochs=2,
                                                                            cooldown_epochs=2)])
    with pytest.raises(UserError, match="sparsity_warm_epochs"):
        trainer.train()


def test_lazy_export():
    import prunecli

    assert prunecli.PruningCallback is PruningCallback
