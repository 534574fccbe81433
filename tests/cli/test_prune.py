"""`prunecli prune` end to end on a tiny random BERT: structure, recipes, distillation, resume, errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from prunecli.cli.app import app
from tests.conftest import SHARED_GLUE, needs_glue_and_minilm
from tests.helpers import make_tiny_bert, umask, write_glue_sst2_folder, wrong_modes

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
ENCODER_LINEAR = re.compile(r"encoder\.layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense"
                            r"|intermediate\.dense|output\.dense)\.weight$")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prune")
    make_tiny_bert(root / "dense", hidden_size=32, intermediate_size=64)
    write_glue_sst2_folder(root / "SST-2", n_train=64, n_dev=16)
    return root


def _args(workdir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "prune", "--model_name_or_path", str(workdir / "dense"), "--task_name", "sst2",
        "--data_dir", str(workdir / "SST-2"), "--per_device_train_batch_size", "16", "--learning_rate", "1e-3",
        "--num_train_epochs", "3", "--sparsity_warm_epochs", "1", "--cooldown_epochs", "1",
        "--lr_scheduler_type", "constant", "--do_prune", "--output_dir", str(out), "--log_level", "warning", *extra,
    ]


def _prune(workdir: Path, out: Path, *extra: str):
    result = runner.invoke(app, _args(workdir, out, *extra))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _log(folder: Path) -> list[dict]:
    lines = (folder / "train_log.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if '"loss"' in line]


def test_2in4_every_group_of_four_keeps_at_most_two(workdir):
    out = workdir / "s24"
    _prune(workdir, out, "--target_sparsity", "0.5", "--pruning_pattern", "2:4")
    weights = _weights(out)
    pruned = {k: v for k, v in weights.items() if ENCODER_LINEAR.search(k)}
    assert len(pruned) == 12
    for name, w in pruned.items():
        nonzero_per_group = (w.reshape(w.shape[0], -1, 4) != 0).sum(-1)
        assert int(nonzero_per_group.max()) <= 2, name
        assert (w == 0).float().mean().item() == pytest.approx(0.5), name
    for untouched in ("bert.pooler.dense.weight", "classifier.weight"):
        assert int((weights[untouched] == 0).sum()) == 0
    from transformers import AutoModelForSequenceClassification  # stock transformers loads it as is

    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert float((model.bert.encoder.layer[0].attention.self.query.weight == 0).float().mean()) == 0.5
    report = json.loads((out / "sparsity_report.json").read_text())
    assert report["model"]["pruned"]["sparsity"] == pytest.approx(0.5)
    recipe = json.loads((out / "prune_recipe.json").read_text())
    assert recipe["pruning_configs"][0]["pattern"] == "2:4"
    assert "classifier" in (out / "README.md").read_text()  # the model card names what stayed dense


def test_4x1_global_reaches_the_target_in_whole_blocks(workdir):
    out = workdir / "s41"
    _prune(workdir, out, "--target_sparsity", "0.9", "--pruning_pattern", "4x1")
    weights = _weights(out)
    pruned = {k: v for k, v in weights.items() if ENCODER_LINEAR.search(k)}
    zeros = sum(int((w == 0).sum()) for w in pruned.values())
    total = sum(w.numel() for w in pruned.values())
    assert zeros / total == pytest.approx(0.9, abs=4 / total)
    for name, w in pruned.items():
        blocks = (w.reshape(w.shape[0] // 4, 4, w.shape[1]) == 0).sum(1)  # zeros per 4x1 block
        assert set(blocks.unique().tolist()) <= {0, 4}, name  # each block all zero or untouched
        assert (w == 0).float().mean().item() <= 0.98 + 1e-6, name  # max_sparsity_ratio_per_op


def test_1xchannel_prunes_whole_output_rows(workdir):
    out = workdir / "sch"
    _prune(workdir, out, "--target_sparsity", "0.5", "--pruning_pattern", "1xchannel",
           "--pruning_scope", "local")
    for name, w in _weights(out).items():
        if ENCODER_LINEAR.search(name):
            zero_rows = (w == 0).all(dim=1)
            assert zero_rows.float().mean().item() == pytest.approx(0.5), name
            assert int((w[~zero_rows] == 0).sum()) == 0, name  # zeros only in whole rows


def test_mixed_recipe_prunes_exactly_the_layers_it_names(workdir):
    out = workdir / "mixed"
    _prune(workdir, out, "--recipe", str(REPO / "recipes" / "mixed.json"))
    weights, dense = _weights(out), _weights(workdir / "dense")
    recipe = json.loads((out / "prune_recipe.json").read_text())
    groups = recipe["pruning_configs"]
    ffn = {f"bert.encoder.layer.{i}.{m}" for i in range(2) for m in ("attention.output.dense",
                                                                      "intermediate.dense", "output.dense")}
    qkv = {f"bert.encoder.layer.{i}.attention.self.{m}" for i in range(2) for m in ("query", "key", "value")}
    assert set(groups[0]["layers"]) == ffn and groups[0]["pattern"] == "1x1"
    from prunecli.sparsity.recipe import load_recipe

    load_recipe(str(out / "prune_recipe.json"))  # the recipe as it ran is a valid recipe again
    assert set(groups[1]["layers"]) == qkv and groups[1]["pattern"] == "4x1"
    for name, w in weights.items():
        module = name.removesuffix(".weight")
        sparsity = (w == 0).float().mean().item()
        if module in ffn:
            assert sparsity == pytest.approx(0.9, abs=0.01), name  # local: each layer gets the target
        elif module in qkv:
            assert 0.5 - 1e-6 <= sparsity <= 0.98 + 1e-6, name  # global with min 0.5 / max 0.98
        else:  # nothing else gains a zero (the embedding's pad row was zero from the start)
            assert int((w == 0).sum()) <= int((dense[name] == 0).sum()), name
    q = weights["bert.encoder.layer.0.attention.self.query.weight"]
    assert set((q.reshape(8, 4, 32) == 0).sum(1).unique().tolist()) <= {0, 4}


def test_schedule_from_epochs_counts_optimizer_steps(workdir):
    out = workdir / "gas"
    _prune(workdir, out, "--target_sparsity", "0.5", "--pruning_pattern", "2:4",
           "--gradient_accumulation_steps", "2", "--pruning_frequency", "1")
    steps = json.loads((out / "prune_recipe.json").read_text())["computed_from_epochs"]
    # 64 examples / batch 16 = 4 micro-batches per epoch = 2 optimizer steps per epoch
    assert steps["update_steps_per_epoch"] == 2
    assert (steps["start_step"], steps["end_step"], steps["pruning_frequency"]) == (2, 4, 1)
    log = _log(out)
    assert [line["step"] for line in log] == list(range(1, 7))
    assert log[0]["sparsity"] == 0.0 and log[-1]["sparsity"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("flags", "check"),
    [
        (["--distill_loss_weight", "3"],
         lambda line: line["loss"] == pytest.approx(3 * line["distill_loss"], rel=1e-4)),
        (["--distill_loss_weight", "3", "--distill_label_loss"],
         lambda line: line["loss"] == pytest.approx(3 * line["distill_loss"] + line["label_loss"], rel=1e-4)),
        (["--distill_loss_weight", "2", "--distill_type", "logits_kl", "--distill_alpha", "0.25"],
         lambda line: line["loss"] == pytest.approx(0.25 * 2 * line["distill_loss"] + 0.75 * line["label_loss"],
                                                    rel=1e-4)),
        ([], lambda line: line["loss"] == pytest.approx(line.get("label_loss", line["loss"]))
         and "distill_loss" not in line),
    ],
    ids=["hidden_mse", "hidden_mse+label", "logits_kl", "none"],
)
def test_distillation_modes_shape_the_loss(workdir, flags, check):
    out = workdir / f"distill_{len(flags)}_{flags[-1] if flags else 'none'}"
    _prune(workdir, out, "--target_sparsity", "0.5", "--pruning_pattern", "2:4", "--learning_rate", "1e-4",
           "--seed", "3", *flags)
    log = _log(out)
    assert log and all(check(line) for line in log)
    if flags:
        assert any(line["distill_loss"] > 0 for line in log)


def test_pattern_lock_keeps_the_zeros_of_a_sparse_start(workdir):
    sparse = workdir / "lock_src"
    _prune(workdir, sparse, "--target_sparsity", "0.5", "--pruning_pattern", "2:4")
    locked = workdir / "lock_out"
    result = runner.invoke(app, [
        "prune", "--model_name_or_path", str(sparse), "--task_name", "sst2", "--data_dir", str(workdir / "SST-2"),
        "--per_device_train_batch_size", "16", "--learning_rate", "1e-3", "--num_train_epochs", "2",
        "--pruning_type", "pattern_lock", "--output_dir", str(locked), "--log_level", "warning",
    ])
    assert result.exit_code == 0, result.output
    before, after = _weights(sparse), _weights(locked)
    for name, w in before.items():
        if ENCODER_LINEAR.search(name):
            assert torch.equal(w == 0, after[name] == 0), name  # same zeros, element by element
            assert not torch.equal(w, after[name]), name  # yet the kept weights were trained


def test_resume_after_a_kill_ends_with_the_same_masks_and_weights(workdir, monkeypatch):
    from prunecli.sparsity.pruner import Pruner

    common = ("--target_sparsity", "0.5", "--pruning_pattern", "2:4", "--checkpointing_steps", "3",
              "--distill_loss_weight", "1", "--seed", "7")
    full = workdir / "resume_full"
    _prune(workdir, full, *common)

    original = Pruner.on_after_optimizer_step

    def dies_at_step_5(self):
        original(self)
        if self.state_dict()["step"] == 5:
            raise KeyboardInterrupt("simulated kill after step 5 (state of step 3 on disk)")

    killed = workdir / "resume_killed"
    monkeypatch.setattr(Pruner, "on_after_optimizer_step", dies_at_step_5)
    result = runner.invoke(app, _args(workdir, killed, *common))
    assert result.exit_code != 0
    monkeypatch.setattr(Pruner, "on_after_optimizer_step", original)
    _prune(workdir, killed, *common, "--resume_from_checkpoint", "latest", "--overwrite_output_dir")

    a, b = _weights(full), _weights(killed)
    for name in a:
        assert torch.equal(a[name] == 0, b[name] == 0), name
        assert torch.allclose(a[name], b[name], atol=1e-6), name


def test_dry_run_prints_the_plan_and_writes_nothing(workdir):
    out = workdir / "dry"
    result = runner.invoke(app, _args(workdir, out, "--recipe", str(REPO / "recipes" / "mixed.json"), "--dry_run"),
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "bert.encoder.layer.0.attention.self.query" in result.output
    assert "4x1" in result.output and "1x1" in result.output
    assert "classifier" in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--target_sparsity", "1.5"], "target_sparsity"),
        (["--pruning_pattern", "3x"], "3x"),
        (["--pruning_pattern", "2:4", "--target_sparsity", "0.7"], "2:4"),
        (["--num_train_epochs", "1", "--cooldown_epochs", "2"], "cooldown"),
    ],
)
def test_bad_options_are_clear_errors(workdir, extra, message):
    result = runner.invoke(app, _args(workdir, workdir / "bad", *extra))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_recipe_key_typo_names_the_key_and_suggests_the_right_one(workdir, tmp_path):
    bad = tmp_path / "typo.json"
    bad.write_text(json.dumps({"target_sparsity": 0.5, "pruning_configs": [{"patern": "4x1"}]}))
    result = runner.invoke(app, _args(workdir, workdir / "bad", "--recipe", str(bad)), env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "patern" in result.output and "pattern" in result.output and "pruning_configs[0]" in result.output
    assert "Traceback" not in result.output


def test_every_shipped_recipe_runs_end_to_end(workdir):
    # compact.json keeps at least 2 heads and 128 neurons per layer (heads_neurons.json 64): a wider model
    make_tiny_bert(workdir / "wide", hidden_size=32, num_attention_heads=4, intermediate_size=256)
    for recipe in sorted((REPO / "recipes").rglob("*.json")):
        if recipe.name == "schema.json":
            continue
        out = workdir / f"recipe_{recipe.parent.name}_{recipe.stem}"
        wide = recipe.name in ("compact.json", "heads_neurons.json")
        model = ["--model_name_or_path", str(workdir / "wide")] if wide else []
        _prune(workdir, out, "--recipe", str(recipe), "--num_train_epochs", "2", "--cooldown_epochs", "0", *model)
        report = json.loads((out / "sparsity_report.json").read_text())
        for group in report["recipe"]["groups"]:
            assert group["sparsity"] == pytest.approx(group["target_sparsity"], abs=0.02), (recipe.name, group)


@pytest.mark.slow
@needs_glue_and_minilm
def test_minilm_mrpc_2in4_keeps_accuracy_above_majority(minilm_mrpc_dense, tmp_path):
    """Genuine MRPC: 2:4 from a one-epoch dense MiniLM, 1 epoch with distillation (the reference's SST-2 lr)."""
    out = tmp_path / "sparse_2in4"
    result = runner.invoke(app, [
        "prune", "--model_name_or_path", str(minilm_mrpc_dense), "--data_dir", str(SHARED_GLUE / "MRPC"),
        "--max_length", "128", "--per_device_train_batch_size", "16", "--learning_rate", "5e-5",
        "--num_train_epochs", "1", "--target_sparsity", "0.5", "--pruning_pattern", "2:4",
        "--distill_loss_weight", "2", "--lr_scheduler_type", "constant", "--output_dir", str(out),
    ])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "eval_results.json").read_text())["accuracy"] > 0.684  # majority class: 279/408
    report = json.loads((out / "sparsity_report.json").read_text())
    assert report["model"]["pruned"]["sparsity"] == pytest.approx(0.5, abs=1e-6)
    assert report["model"]["pruned"]["tensors"] == 36  # 6 layers x (q, k, v, attention out, intermediate, out)


def test_train_results_record_throughput(workdir):
    out = workdir / "s24"  # written by test_2in4_every_group_of_four_keeps_at_most_two, or made here
    if not (out / "train_results.json").exists():
        _prune(workdir, out, "--target_sparsity", "0.5", "--pruning_pattern", "2:4", "--overwrite_output_dir")
    results = json.loads((out / "train_results.json").read_text())
    assert results["completed_steps"] == 12 and results["train_examples_per_second"] > 0
    assert len(results["epochs"]) == 3


def test_cooldown_lr_decay_and_initial_sparsity_reach_the_run(workdir, tmp_path):
    out = workdir / "lrdecay"
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"target_sparsity": 0.8, "initial_sparsity": 0.5, "pattern": "4x1",
                                  "pruning_frequency": 1}))
    _prune(workdir, out, "--recipe", str(recipe), "--cooldown_lr_decay", "linear")
    log = _log(out)
    steps_per_epoch = len(log) // 3
    cool = [r["lr"] for r in log[2 * steps_per_epoch:]]
    assert all(r["lr"] == pytest.approx(1e-3) for r in log[: 2 * steps_per_epoch])
    # the logged lr is the one the next step will use: it reaches 0 after the last step
    assert cool == sorted(cool, reverse=True) and cool[0] < 1e-3 and cool[-1] == 0.0
    first_event = log[steps_per_epoch - 1]  # the event after the warm-up epoch jumps to 0.5 at once
    assert first_event["sparsity"] == pytest.approx(0.5, abs=0.02)
    assert log[-1]["sparsity"] == pytest.approx(0.8, abs=0.01)


def test_recipe_training_block_sets_the_method_and_the_command_line_wins(workdir, tmp_path):
    recipe = tmp_path / "method.json"
    recipe.write_text(json.dumps({"target_sparsity": 0.5, "pattern": "2:4", "training": {
        "distill_loss_weight": 2, "distill_type": "logits_kl", "distill_alpha": 0.25, "cooldown_lr_decay": "linear"}}))
    out = workdir / "recipe_method"
    result = _prune(workdir, out, "--recipe", str(recipe), "--learning_rate", "1e-4", "--seed", "3")
    assert "From the recipe's training block: --distill_loss_weight 2.0, --distill_type logits_kl" in result.output
    log = _log(out)
    assert all(line["loss"] == pytest.approx(0.25 * 2 * line["distill_loss"] + 0.75 * line["label_loss"], rel=1e-4)
               for line in log)
    assert log[-1]["lr"] == 0.0 and log[0]["lr"] == pytest.approx(1e-4)  # the cool-down decay came from the recipe
    saved = json.loads((out / "prune_recipe.json").read_text())["training"]
    assert saved == {"distill_loss_weight": 2.0, "distill_type": "logits_kl", "distill_alpha": 0.25,
                     "cooldown_lr_decay": "linear"}

    # options given on the command line win, even when they name the built-in default
    out = workdir / "recipe_method_cli"
    result = _prune(workdir, out, "--recipe", str(recipe), "--learning_rate", "1e-4", "--seed", "3",
                    "--distill_alpha", "1", "--cooldown_lr_decay", "none")
    assert "--distill_alpha" not in result.output and "--cooldown_lr_decay" not in result.output
    log = _log(out)
    assert all(line["loss"] == pytest.approx(2 * line["distill_loss"], rel=1e-4) for line in log)
    assert log[-1]["lr"] == pytest.approx(1e-4)
    saved = json.loads((out / "prune_recipe.json").read_text())["training"]
    assert saved["distill_alpha"] == 1.0 and saved["cooldown_lr_decay"] == "none"


@pytest.mark.parametrize(("training", "message"), [
    ({"distill_tpye": "logits_kl"}, ["training.distill_tpye", "distill_type"]),
    ({"learning_rate": 1e-4}, ["training.learning_rate", "distill_loss_weight", "lr_rewind_ratio"]),
    ({"distill_type": "kl"}, ["training.distill_type", "logits_kl"]),
    ({"lr_rewind_ratio": 2}, ["training.lr_rewind_ratio", "less than or equal to 1"]),
], ids=["typo", "not-a-method-key", "bad-choice", "out-of-range"])
def test_recipe_training_block_errors_name_the_key(workdir, tmp_path, training, message):
    bad = tmp_path / "bad_training.json"
    bad.write_text(json.dumps({"target_sparsity": 0.5, "training": training}))
    result = runner.invoke(app, _args(workdir, workdir / "bad", "--recipe", str(bad)), env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert all(part in result.output for part in [str(bad.name), *message]), result.output
    assert "Traceback" not in result.output and not (workdir / "bad").exists()


def test_max_train_steps_inside_an_epoch_still_reaches_the_target(workdir):
    """4 steps per epoch and --max_train_steps 6: the window is reckoned on 6 steps, not on 2 whole epochs."""
    out = workdir / "maxsteps"
    _prune(workdir, out, "--target_sparsity", "0.5", "--pruning_pattern", "4x1", "--max_train_steps", "6",
           "--sparsity_warm_epochs", "0.5", "--cooldown_epochs", "0.25", "--pruning_frequency", "1")
    recipe = json.loads((out / "prune_recipe.json").read_text())
    assert recipe["computed_from_epochs"]["end_step"] <= 6
    assert _log(out)[-1]["sparsity"] == pytest.approx(0.5, abs=0.01)


@pytest.fixture(scope="module")
def compacted_run(workdir) -> Path:
    """A prune run with heads, neurons and 4x1 on what remains, compacted at its end (`--compact`)."""
    recipe = workdir / "compact.json"
    recipe.write_text(json.dumps({"pruning_configs": [
        {"pattern": "head", "target_sparsity": 0.5, "min_heads_per_layer": 1},
        {"pattern": "neuron", "target_sparsity": 0.5},
        {"pattern": "4x1", "target_sparsity": 0.5, "op_names": ["attention", "output"]},
        {"pattern": "1x4", "target_sparsity": 0.5, "op_names": ["intermediate"]}]}))
    out = workdir / "compacted"
    with umask(0o022):
        _prune(workdir, out, "--recipe", str(recipe), "--compact", "--pruning_frequency", "1")
    return out


def test_prune_and_compact_outputs_are_readable_by_others(compacted_run):
    """Every file of the run folder and of its compact/ folder is 0644 under umask 022 (model.safetensors was
    0600: a model shared with a serving user could not be read), and the card summarises its recipe."""
    assert all((folder / "model.safetensors").is_file() for folder in (compacted_run, compacted_run / "compact"))
    assert wrong_modes(compacted_run) == {}
    card = (compacted_run / "README.md").read_text()
    assert "pruned_units" not in card and "heads removed across 2 blocks" in card


def test_prune_compact_writes_a_smaller_model_with_the_same_outputs(workdir, compacted_run):
    """Heads and neurons pruned whole, then compacted at the end of the run: stock transformers (after
    `import prunecli`) loads OUTPUT_DIR/compact, and `prunecli evaluate` and `inspect` work on it."""
    from transformers import AutoModelForSequenceClassification

    import prunecli  # noqa: F401

    out = compacted_run
    compact = out / "compact"
    report = json.loads((compact / "compact_report.json").read_text())
    # half the heads and neurons, and any row the 4x1 group left entirely zero (its constant folded)
    assert report["heads_removed"] == 2 and report["neurons_removed"] >= 64
    assert report["max_logit_difference"] <= 1e-4
    assert report["params_after"] < report["params_before"]
    sparse = AutoModelForSequenceClassification.from_pretrained(out).eval()
    small = AutoModelForSequenceClassification.from_pretrained(compact).eval()
    assert small.bert.encoder.layer[0].intermediate.dense.out_features < 64
    ids = torch.randint(5, 30, (3, 9))
    with torch.no_grad():
        assert torch.allclose(sparse(input_ids=ids).logits, small(input_ids=ids).logits, atol=1e-4)
    assert (compact / "prune_recipe.json").is_file() and "Compacted" in (compact / "README.md").read_text()
    evaluated = runner.invoke(app, ["evaluate", str(compact), "--data_dir", str(workdir / "SST-2"), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["metrics"] == pytest.approx(
        json.loads((out / "eval_results.json").read_text()))
    inspected = runner.invoke(app, ["inspect", str(compact), "--json"])
    assert inspected.exit_code == 0, inspected.output
    # the sparse checkpoint: inspect, prune's sparsity_report.json, the card and compact count the same units
    sparse_report = json.loads(runner.invoke(app, ["inspect", str(out), "--json"]).stdout)
    assert sparse_report["warnings"] == [] and sparse_report["model"]["blockwise_matmul"] > 0
    assert sparse_report["units"] == json.loads((out / "sparsity_report.json").read_text())["units"]
    kept = {(u["block"], u["unit"]): (u["kept"], u["of"]) for u in sparse_report["units"]["layers"]}
    assert kept == {(p["block"], p["unit"]): (p["kept"], p["of"]) for p in report["plan"]}
    assert all(f"| {k} of {n} |" in (out / "README.md").read_text() for k, n in kept.values())


def test_compact_command_and_its_errors(workdir, compacted_run, tmp_path):
    out = workdir / "dense"  # no zeros at all (2:4 can zero a whole column by chance in a model this small)
    nothing = runner.invoke(app, ["compact", str(out), "--output_dir", str(tmp_path / "c")])
    assert nothing.exit_code == 2 and "nothing to compact" in nothing.output
    assert runner.invoke(app, ["compact", str(out)]).exit_code == 2  # --output_dir is required
    missing = runner.invoke(app, ["compact", str(tmp_path / "nope"), "--output_dir", str(tmp_path / "c")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    again = runner.invoke(app, ["compact", str(compacted_run), "--output_dir", str(tmp_path / "again")])
    assert again.exit_code == 0, again.output
    assert "SST-2" in json.loads((tmp_path / "again" / "compact_report.json").read_text())["checked_on"]


def test_compact_refuses_bad_input_with_exit_2_and_leaves_nothing_half_written(workdir, compacted_run, tmp_path,
                                                                               monkeypatch):
    import shutil

    from transformers import GPT2Config, GPT2ForSequenceClassification

    from prunecli.pipelines import compact as compact_pipeline

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    existing = runner.invoke(app, ["compact", str(compacted_run), "--output_dir", str(taken)])
    assert existing.exit_code == 2 and "is not empty" in existing.output and "--overwrite_output_dir" in existing.output
    assert "resume" not in existing.output and (taken / "keep.txt").read_text() == "mine"

    corrupt = tmp_path / "corrupt"
    shutil.copytree(compacted_run, corrupt, ignore=shutil.ignore_patterns("compact", "checkpoint*"))
    (corrupt / "model.safetensors").write_bytes(b"not a safetensors file")
    broken = runner.invoke(app, ["compact", str(corrupt), "--output_dir", str(tmp_path / "c1")])
    assert broken.exit_code == 2 and str(corrupt) in broken.output and "Traceback" not in broken.output
    assert not (tmp_path / "c1").exists()

    gpt2 = tmp_path / "gpt2"
    GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=16,
                                             pad_token_id=0)).save_pretrained(gpt2)
    unknown = runner.invoke(app, ["compact", str(gpt2), "--output_dir", str(tmp_path / "c2")])
    assert unknown.exit_code == 2 and "transformer.h.0.attn" in unknown.output and not (tmp_path / "c2").exists()

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(compact_pipeline, "compact_card", fail)  # fails while the staging folder is being written
    failed = runner.invoke(app, ["compact", str(compacted_run), "--output_dir", str(tmp_path / "c3")])
    assert failed.exit_code == 2 and "No space left on device" in failed.output and "nothing was" in failed.output
    assert not (tmp_path / "c3").exists() and not list(tmp_path.glob(".c3*")) and not list(tmp_path.glob("c3*"))


@pytest.mark.parametrize(("extra", "message"), [
    (["--learning-rate", "-1"], "--learning_rate must be positive"),  # the dashed spelling reads the same option
    (["--distill_alpha", "2"], "--distill_alpha must be in [0, 1]"),
    (["--cooldown_lr_decay", "cubic"], "--cooldown_lr_decay 'cubic' is not one of none, linear, cosine"),
    (["--train_file", "no/such.csv"], "--train_file no/such.csv: no such file"),
    (["--pruning_frequency", "0"], "pruning_frequency"),
    (["--num_train_epochs", "2", "--sparsity_warm_epochs", "1", "--cooldown_epochs", "1.5"], "no room"),
])
def test_bad_input_stops_before_the_data_or_the_model_is_loaded(workdir, tmp_path, monkeypatch, extra, message):
    def no_loading(*args, **kwargs):
        raise AssertionError("data and model were loaded before the options were checked")

    monkeypatch.setattr("prunecli.training.models.prepare_training", no_loading)
    args = ["prune", "--model_name_or_path", str(tmp_path / "no_such_model"), "--task_name", "sst2",
            "--data_dir", str(workdir / "SST-2"), *extra]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert message in result.output and "no_such_model" not in result.output


@pytest.mark.parametrize("command", ["", "finetune", "prune", "evaluate", "inspect", "compact", "export", "benchmark",
                                     "schema", "demo"])
def test_help_shows_every_option_name_whole_at_80_columns(command):
    import typer

    group = typer.main.get_command(app)
    click_command = group.commands[command] if command else group
    result = runner.invoke(app, [command, "--help"] if command else ["--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    words = set(result.output.replace(",", " ").split())
    for param in click_command.params:
        if getattr(param, "hidden", False) or param.param_type_name == "argument":
            continue
        for name in [*param.opts, *param.secondary_opts]:
            assert name in words, f"{name} is not shown whole in `prunecli {command} --help`"
    assert "…" not in result.output and "<bool>" not in result.output


def test_the_prune_pipeline_runs_as_documented_with_no_cli_module_imported(workdir, tmp_path):
    """docs/python_api.md's prune-from-a-configuration example runs, and the library's pipeline needs nothing
    from `prunecli.cli`."""
    docs = (REPO / "docs" / "python_api.md").read_text(encoding="utf-8")
    section = docs[docs.index("## Prune from a configuration"):]
    example = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    names = {"sst2_dir": str(workdir / "SST-2"), "dense_dir": str(workdir / "dense"),
             "sparse_dir": str(tmp_path / "from_python")}
    code = "".join(f"{k} = {v!r}\n" for k, v in names.items()) + example + (
        "from prunecli.config import DataConfig, RunConfig, TrainConfig\n"
        "from prunecli.pipelines.evaluate import evaluate\n"
        "scored = evaluate(sparse_dir, RunConfig(data=DataConfig(), train=TrainConfig()))\n"
        "print('scored', sorted(scored['metrics'])[0], scored['num_examples'])\n"
        "import json, sys\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('prunecli.cli'))))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    *printed, cli_modules = done.stdout.strip().splitlines()
    assert json.loads(cli_modules) == []
    assert printed[:2] == ["plan", "sparsity 0.50"]
    assert printed[-1].startswith("scored ") and "'validation': " in printed[-1], printed  # on the recorded data
    out = tmp_path / "from_python"
    assert {"model.safetensors", "prune_recipe.json", "sparsity_report.json", "README.md"} <= {
        p.name for p in out.iterdir()}
