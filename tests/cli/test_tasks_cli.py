"""Question answering (SQuAD format) and token classification (CoNLL format) end to end: finetune, prune with
distillation, evaluate, compact, inspect and benchmark on a tiny random BERT and data written here; every
bad-input case exits 2 naming the file, key or line."""

from __future__ import annotations

import json

import pytest

from tests.cli.test_finetune_cli import assert_user_error, cli
from tests.conftest import REPO
from tests.task_data import (
    ner_sentences,
    squad_articles,
    write_conll,
    write_conll_folder,
    write_ner_lines,
    write_squad_folder,
    write_squad_lines,
)

QA_WINDOWS = ["--max_seq_length", "32", "--doc_stride", "8"]  # the tiny model has 64 positions
TRAIN = ["--learning_rate", "3e-3", "--per_device_train_batch_size", "8"]


def _offline(env, folder):
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.setenv(name, "1")
    env.setenv("PRUNECLI_CACHE_DIR", str(folder / "cache"))


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory, tiny_bert_dir):
    """A dense QA model fine-tuned from the tiny sequence classifier (a new qa_outputs head)."""
    folder = tmp_path_factory.mktemp("qa")
    data = write_squad_folder(folder / "squad", n_train=64, n_dev=16, context_words=30)
    with pytest.MonkeyPatch.context() as env:
        _offline(env, folder)
        result = cli("finetune", "--model_name_or_path", tiny_bert_dir, "--task_name", "squad", "--data_dir", data,
                     *QA_WINDOWS, *TRAIN, "--num_train_epochs", 6, "--output_dir", folder / "dense")
    assert result.exit_code == 0, result.output
    return {"folder": folder, "data": data, "dense": folder / "dense"}


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory, tiny_bert_dir):
    folder = tmp_path_factory.mktemp("ner")
    data = write_conll_folder(folder / "conll", n_train=64, n_dev=16)
    with pytest.MonkeyPatch.context() as env:
        _offline(env, folder)
        result = cli("finetune", "--model_name_or_path", tiny_bert_dir, "--task_name", "conll2003", "--data_dir",
                     data, *TRAIN, "--num_train_epochs", 6, "--output_dir", folder / "dense")
    assert result.exit_code == 0, result.output
    return {"folder": folder, "data": data, "dense": folder / "dense", "output": result.output}


def test_qa_finetune_learns_and_evaluate_reads_the_recorded_data(qa_run):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(qa_run["dense"])
    assert config.architectures == ["BertForQuestionAnswering"]
    run_args = json.loads((qa_run["dense"] / "run_args.json").read_text())
    assert run_args["resolved"]["data"]["task_type"] == "question_answering"
    result = cli("evaluate", qa_run["dense"], "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)["metrics"]
    assert set(metrics) == {"exact_match", "f1"}
    assert metrics["f1"] > 0.5  # the answer is the one positive word: learnable in a few epochs
    saved = json.loads((qa_run["dense"] / "eval_results.json").read_text())
    assert saved["f1"] == pytest.approx(metrics["f1"])


@pytest.mark.parametrize("distill_type", ["logits_kl", "hidden_mse"])
def test_qa_prune_2_4_with_distillation(qa_run, distill_type):
    out = qa_run["folder"] / f"sparse_{distill_type}"
    result = cli("prune", "--model_name_or_path", qa_run["dense"], "--dataset_name", "squad", "--data_dir",
                 qa_run["data"], *QA_WINDOWS, *TRAIN, "--num_train_epochs", 2, "--pruning_pattern", "2:4",
                 "--target_sparsity", 0.5, "--distill_loss_weight", 1.0, "--distill_type", distill_type,
                 "--output_dir", out)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "sparsity_report.json").read_text())
    assert report["recipe"]["groups"][0]["sparsity"] == pytest.approx(0.5)
    assert report["task"] == "question_answering"
    assert "AutoModelForQuestionAnswering" in (out / "README.md").read_text()
    from safetensors.torch import load_file

    weights = load_file(out / "model.safetensors")
    assert (weights["qa_outputs.weight"] != 0).all()  # the task head is never pruned
    assert (weights["bert.encoder.layer.0.intermediate.dense.weight"] == 0).float().mean() == pytest.approx(0.5)
    assert "exact_match" in json.loads((out / "eval_results.json").read_text())


def _assert_same_qa_logits(sparse_dir, compacted_dir):
    """The compacted model, loaded with its Auto class, gives the sparse model's start and end logits."""
    import torch
    from transformers import AutoModelForQuestionAnswering

    compacted = AutoModelForQuestionAnswering.from_pretrained(compacted_dir).eval()
    sparse = AutoModelForQuestionAnswering.from_pretrained(sparse_dir).eval()
    ids = torch.randint(5, 30, (3, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = sparse(input_ids=ids), compacted(input_ids=ids)
    assert torch.allclose(a.start_logits, b.start_logits, atol=1e-4)
    assert torch.allclose(a.end_logits, b.end_logits, atol=1e-4)


def test_qa_heads_and_neurons_compact_and_load(qa_run):
    out = qa_run["folder"] / "units"
    result = cli("prune", "--model_name_or_path", qa_run["dense"], "--task_name", "squad", "--data_dir",
                 qa_run["data"], *QA_WINDOWS, *TRAIN, "--num_train_epochs", 2, "--pruning_pattern", "neuron",
                 "--target_sparsity", 0.5, "--output_dir", out)
    assert result.exit_code == 0, result.output
    result = cli("compact", out, "--output_dir", out / "compacted")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "compacted" / "compact_report.json").read_text())
    assert report["neurons_removed"] > 0 and report["task"] == "question_answering"
    assert report["max_logit_difference"] <= 1e-4 and "questions" in report["checked_on"]
    _assert_same_qa_logits(out, out / "compacted")
    evaluated = cli("evaluate", out / "compacted", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["metrics"]["f1"] == pytest.approx(
        json.loads((out / "eval_results.json").read_text())["f1"], abs=1e-6)
    inspected = cli("inspect", out)
    assert inspected.exit_code == 0, inspected.output
    timed = cli("benchmark", out, out / "compacted", "--sequence_length", 32, "--batch_sizes", 2, "--repeats", 2,
                "--min_time", 0, "--rounds", 1, "--warmup", 1, "--json")
    assert timed.exit_code == 0, timed.output
    assert len(json.loads(timed.stdout)["models"]) == 2
    # real-length cases: the dev questions' windows
    real = cli("benchmark", out, "--task_name", "squad", "--data_dir", qa_run["data"], *QA_WINDOWS, "--batch_sizes",
               2, "--sequence_length", 32, "--backend", "pytorch", "--repeats", 2, "--min_time", 0, "--rounds", 1,
               "--warmup", 1, "--json")
    assert real.exit_code == 0, real.output
    assert any(case["inputs"] == "data" for case in json.loads(real.stdout)["cases"].values())
    # without --sequence_length a question-answering model is timed on 384-token windows (here: its 64 positions)
    refused = cli("benchmark", out, "--batch_sizes", 1, "--backend", "pytorch")
    assert_user_error(refused, "--sequence_length is 384")


def test_ner_finetune_prune_heads_compact_evaluate(ner_run):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(ner_run["dense"])
    assert config.architectures == ["BertForTokenClassification"]
    assert [config.id2label[i] for i in range(5)] == ["O", "B-NEG", "I-NEG", "B-POS", "I-POS"]
    result = cli("evaluate", ner_run["dense"], "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)["metrics"]
    assert {"precision", "recall", "f1", "f1_POS", "f1_NEG"} <= set(metrics)
    # the summary table keeps to 80 columns: per-type F1 is in --json and eval_results.json only
    assert "recall" in ner_run["output"] and "f1_POS" not in ner_run["output"]
    assert "f1_POS" in json.loads((ner_run["dense"] / "eval_results.json").read_text())
    assert metrics["f1"] > 0.3
    out = ner_run["folder"] / "heads"
    result = cli("prune", "--model_name_or_path", ner_run["dense"], "--task_name", "ner", "--data_dir",
                 ner_run["data"], *TRAIN, "--num_train_epochs", 2, "--pruning_pattern", "head", "--target_sparsity",
                 0.5, "--distill_loss_weight", 1.0, "--distill_type", "logits_kl", "--compact", "--output_dir", out)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "compact" / "compact_report.json").read_text())
    assert report["heads_removed"] == 2 and report["auto_class"] == "AutoModelForTokenClassification"
    evaluated = cli("evaluate", out / "compact", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["metrics"]["f1"] == pytest.approx(
        json.loads((out / "eval_results.json").read_text())["f1"], abs=1e-6)


def test_ner_own_files_iob1_and_label_all_tokens(tmp_path, tiny_bert_dir):
    iob1 = [[(w, "I-" + t[2:] if t != "O" else t) for w, t in s] for s in ner_sentences(24, 5)]
    train = write_conll(tmp_path / "train.conll", iob1, columns=2)
    dev = write_conll(tmp_path / "dev.conll", ner_sentences(8, 6))
    result = cli("finetune", "--model_name_or_path", tiny_bert_dir, "--train_file", train, "--validation_file", dev,
                 "--label_all_tokens", "--num_train_epochs", 1, "--output_dir", tmp_path / "out")
    assert result.exit_code == 0, result.output
    from transformers import AutoConfig

    assert "B-POS" in AutoConfig.from_pretrained(tmp_path / "out").label2id  # IOB1 read as IOB2


# ---- bad input: exit 2, naming the file and the key or line ---------------------------------------------------


def test_squad_without_data_key(tmp_path, tiny_bert_dir):
    (tmp_path / "train-v1.1.json").write_text(json.dumps({"version": "1.1"}), encoding="utf-8")
    (tmp_path / "dev-v1.1.json").write_text(json.dumps(squad_articles(4)), encoding="utf-8")
    result = cli("finetune", "--model_name_or_path", tiny_bert_dir, "--task_name", "squad", "--data_dir", tmp_path,
                 *QA_WINDOWS)
    assert_user_error(result, "train-v1.1.json", "no `data` key")


def test_squad_answer_start_off_its_text(tmp_path, tiny_bert_dir):
    doc = squad_articles(4)
    doc["data"][0]["paragraphs"][1]["qas"][0]["answers"][0]["answer_start"] += 2
    (tmp_path / "dev.json").write_text(json.dumps(doc), encoding="utf-8")
    result = cli("evaluate", tiny_bert_dir, "--task_name", "squad", "--validation_file", tmp_path / "dev.json")
    assert_user_error(result, "dev.json", "data[0].paragraphs[1].qas[0].answers[0]", "answer_start")


def test_conll_line_of_one_column(tmp_path, tiny_bert_dir):
    path = tmp_path / "dev.txt"
    path.write_text("good B-POS\nthe O\n\nmovie\n", encoding="utf-8")
    result = cli("evaluate", tiny_bert_dir, "--task_name", "ner", "--validation_file", path)
    assert_user_error(result, "dev.txt, line 4", "one column")


def test_conll_tags_neither_iob1_nor_iob2(tmp_path, tiny_bert_dir):
    path = tmp_path / "dev.txt"
    path.write_text("the O\ngood I-POS\nthe O\nbad B-NEG\n", encoding="utf-8")
    result = cli("evaluate", tiny_bert_dir, "--task_name", "conll2003", "--validation_file", path)
    assert_user_error(result, "dev.txt", "neither IOB1 nor IOB2", "line 2", "line 4")


def test_qa_model_on_ner_data(qa_run, tmp_path):
    data = write_conll_folder(tmp_path / "conll", n_train=4, n_dev=4)
    result = cli("evaluate", qa_run["dense"], "--task_name", "conll2003", "--data_dir", data)
    assert_user_error(result, str(qa_run["dense"]), "question answering", "token classification")


@pytest.mark.parametrize("dry_run", [[], ["--dry_run"]])
def test_a_teacher_of_another_task_is_refused_before_the_plan(qa_run, tiny_bert_dir, tmp_path, dry_run):
    """Pruning a sentence classifier on QA data with distillation: the teacher (by default the model itself) is
    for another task, said before any plan or training, and nothing is written."""
    result = cli("prune", "--model_name_or_path", tiny_bert_dir, "--task_name", "squad", "--data_dir",
                 qa_run["data"], *QA_WINDOWS, "--pruning_pattern", "2:4", "--target_sparsity", 0.5,
                 "--distill_loss_weight", 1.0, "--output_dir", tmp_path / "out", *dry_run)
    assert_user_error(result, "the distillation teacher", str(tiny_bert_dir), "sequence classification",
                      "--teacher_model_name_or_path")
    assert "Pruning plan" not in result.output and not (tmp_path / "out").exists()


def test_max_seq_length_above_the_model_positions(qa_run):
    result = cli("evaluate", qa_run["dense"], "--task_name", "squad", "--data_dir", qa_run["data"],
                 "--max_seq_length", 384)
    assert_user_error(result, "--max_seq_length 384", "64")


def test_inc_squad_command_line_runs_as_prunecli_prune(tmp_path):
    """INC's run_qa_no_trainer.py command (BERT-mini, 4x1 at 80%) with `prunecli prune` in its place, trained for
    real on a model with 512 positions: --dataset_name is --task_name, --max_seq_length and --doc_stride are kept,
    and the run reaches its 80% with the task head dense."""
    from safetensors.torch import load_file

    from tests.helpers import make_tiny_bert

    model = make_tiny_bert(tmp_path / "bert", max_position_embeddings=512)
    data = write_squad_folder(tmp_path / "squad", n_train=8, n_dev=4)
    windows = ["--max_seq_length", "384", "--doc_stride", "128"]
    dense = cli("finetune", "--model_name_or_path", model, "--task_name", "squad", "--data_dir", data, *windows,
                "--num_train_epochs", 1, "--output_dir", tmp_path / "dense")
    assert dense.exit_code == 0, dense.output
    inc = ("--dataset_name squad --max_seq_length 384 --doc_stride 128 --per_device_train_batch_size 16 "
           "--learning_rate 4.5e-4 --num_train_epochs 10 --weight_decay 1e-7 --do_prune --target_sparsity 0.8 "
           "--pruning_pattern 4x1 --pruning_frequency 1000 --num_warmup_steps 1000 --cooldown_epochs 5 "
           "--distill_loss_weight 4.5").split()
    out = tmp_path / "out"
    result = cli("prune", *inc, "--model_name_or_path", tmp_path / "dense", "--data_dir", data, "--output_dir", out)
    assert result.exit_code == 0, result.output
    assert "4x1" in result.output and "0.80" in result.output
    assert "Not pruned (task head): qa_outputs" in result.output
    report = json.loads((out / "sparsity_report.json").read_text())
    assert report["task"] == "question_answering"
    assert report["model"]["pruned"]["sparsity"] == pytest.approx(0.8, abs=0.01)
    assert (load_file(out / "model.safetensors")["qa_outputs.weight"] != 0).all()
    recorded = json.loads((out / "run_args.json").read_text())
    assert (recorded["data"]["max_seq_length"], recorded["data"]["doc_stride"]) == (384, 128)
    assert recorded["distill"]["distill_loss_weight"] == 4.5 and recorded["prune"]["cooldown_epochs"] == 5
    assert {"exact_match", "f1"} <= set(json.loads((out / "eval_results.json").read_text()))


def _full_and_resumed(run: dict, task_args: list, pattern: str, step: int) -> tuple[dict, dict]:
    """The weights of a pruning run with logit distillation, uninterrupted and resumed from its step_<step>."""
    from safetensors.torch import load_file

    folder = run["folder"]
    common = ["--model_name_or_path", run["dense"], "--data_dir", run["data"], *task_args, *TRAIN,
              "--num_train_epochs", 2, "--pruning_pattern", pattern, "--target_sparsity", 0.5,
              "--pruning_frequency", 1, "--distill_loss_weight", 1.0, "--distill_type", "logits_kl",
              "--checkpointing_steps", step, "--seed", 5]
    full = cli("prune", *common, "--output_dir", folder / "resume_full")
    assert full.exit_code == 0, full.output
    resumed = cli("prune", *common, "--output_dir", folder / "resume_again", "--resume_from_checkpoint",
                  folder / "resume_full" / f"step_{step}")
    assert resumed.exit_code == 0, resumed.output
    return load_file(folder / "resume_full" / "model.safetensors"), load_file(folder / "resume_again" /
                                                                              "model.safetensors")


def test_qa_prune_with_distillation_resumes_to_the_same_weights(qa_run):
    """A 2:4 run with logit distillation (the teacher cache keyed by window), resumed from its step_2, ends with
    the uninterrupted run's weights."""
    a, b = _full_and_resumed(qa_run, ["--task_name", "squad", *QA_WINDOWS], "2:4", 2)
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


@pytest.mark.parametrize("run_name", ["qa_run", "ner_run"])
def test_an_exported_qa_or_ner_model_scores_as_its_checkpoint(run_name, request, tmp_path):
    """The float32 ONNX file of a QA or NER model, scored through onnxruntime with the task's own
    post-processing (windows -> answers; first sub-tokens -> entities), gives the checkpoint's metrics."""
    run = request.getfixturevalue(run_name)
    with pytest.MonkeyPatch.context() as env:
        _offline(env, run["folder"])
        result = cli("export", run["dense"], "--output_dir", tmp_path / "onnx")
        assert result.exit_code == 0, result.output
        exported = cli("evaluate", tmp_path / "onnx", "--json")
        checkpoint = cli("evaluate", run["dense"], "--json")
    assert exported.exit_code == 0 and checkpoint.exit_code == 0, exported.output + checkpoint.output
    ours, theirs = json.loads(exported.stdout)["metrics"], json.loads(checkpoint.stdout)["metrics"]
    shared = [k for k in theirs if k in ours and not k.endswith(("loss", "runtime", "per_second"))]
    assert any(k.endswith(("f1", "exact_match")) for k in shared), (ours, theirs)
    for key in shared:
        assert ours[key] == pytest.approx(theirs[key], abs=1e-6), key


@pytest.mark.parametrize("run_name", ["qa_run", "ner_run"])
def test_an_int8_export_of_a_qa_or_ner_model_is_checked_and_scores(run_name, request, tmp_path):
    run = request.getfixturevalue(run_name)
    with pytest.MonkeyPatch.context() as env:
        _offline(env, run["folder"])
        result = cli("export", run["dense"], "--output_dir", tmp_path / "int8", "--quantize", "int8")
        assert result.exit_code == 0, result.output
        scored = cli("evaluate", tmp_path / "int8", "--json")
    assert scored.exit_code == 0, scored.output
    record = json.loads((tmp_path / "int8" / "export.json").read_text())
    assert record["precision"] == "int8" and record["checks"]["int8"]["max_abs_diff"] >= 0
    assert "f1" in json.loads(scored.stdout)["metrics"]


# ---- every pattern, recipes, resume and the offline hub for both task types --------------------------------------


def _whole_units(weight, pattern: str, heads: int = 2) -> bool:
    """Whether the zeros of a weight (out x in) come in the pattern's units, and there are some."""
    zero = weight == 0
    if pattern == "4x1":  # blocks of 4 rows in one column
        blocks = zero.reshape(zero.shape[0] // 4, 4, zero.shape[1])
        whole = blocks.all(dim=1) | (~blocks).all(dim=1)
    elif pattern == "head":  # the rows of a head in query
        blocks = zero.reshape(heads, -1)
        whole = blocks.all(dim=1) | (~blocks).all(dim=1)
    elif pattern == "channelx1":  # whole columns
        whole = zero.all(dim=0) | (~zero).all(dim=0)
    else:  # 1xchannel: whole rows
        whole = zero.all(dim=1) | (~zero).all(dim=1)
    return bool(whole.all()) and bool(zero.any())


def _some_layer_in_units(weights: dict, module: str, pattern: str) -> bool:
    """Whether the tiny model's `module` weight, in layer 0 or 1, is pruned in the pattern's units (global scope
    may leave one layer dense)."""
    return any(_whole_units(weights[f"bert.encoder.layer.{i}.{module}.weight"], pattern) for i in (0, 1))


@pytest.mark.parametrize(("pattern", "extra"), [
    ("2:4", ["--pruning_pattern", "2:4", "--target_sparsity", 0.5, "--distill_loss_weight", 1.0,
             "--distill_type", "hidden_mse"]),
    ("4x1", ["--recipe", "mrpc_4x1", "--target_sparsity", 0.75]),
    ("1xchannel", ["--pruning_pattern", "1xchannel", "--target_sparsity", 0.5]),
])
def test_ner_prunes_every_pattern_and_keeps_its_head(ner_run, pattern, extra):
    from safetensors.torch import load_file

    out = ner_run["folder"] / f"sparse_{pattern.replace(':', 'in')}"
    result = cli("prune", "--model_name_or_path", ner_run["dense"], "--task_name", "conll2003", "--data_dir",
                 ner_run["data"], *TRAIN, "--num_train_epochs", 2, *extra, "--output_dir", out)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "sparsity_report.json").read_text())
    assert report["task"] == "token_classification"
    card = (out / "README.md").read_text()
    assert "AutoModelForTokenClassification" in card and "conll2003" in card
    weights = load_file(out / "model.safetensors")
    assert (weights["classifier.weight"] != 0).all()  # the task head is never pruned
    assert report["model"]["pruned"]["sparsity"] == pytest.approx(0.75 if pattern == "4x1" else 0.5, abs=0.01)
    if pattern == "1xchannel":  # whole channels: a row of a weight is all zeros or has none
        assert _whole_units(weights["bert.encoder.layer.0.intermediate.dense.weight"], pattern)
    assert "f1" in json.loads((out / "eval_results.json").read_text())


@pytest.mark.parametrize(("pattern", "sparsity", "layer"), [
    ("4x1", 0.8, "intermediate.dense"),
    ("head", 0.5, "attention.self.query"),
    ("channelx1", 0.5, "intermediate.dense"),
    ("1xchannel", 0.5, "intermediate.dense"),
])
def test_qa_prunes_every_pattern_from_json_lines_and_keeps_its_head(qa_run, tmp_path, pattern, sparsity, layer):
    """Each pattern on a QA model, with data given as the hub's flat JSON lines (the task found from the file)."""
    from safetensors.torch import load_file

    train = write_squad_lines(tmp_path / "train.jsonl", 32, seed=1, context_words=30)
    dev = write_squad_lines(tmp_path / "dev.jsonl", 8, seed=2, context_words=30)
    out = tmp_path / "sparse"
    result = cli("prune", "--model_name_or_path", qa_run["dense"], "--train_file", train, "--validation_file", dev,
                 *QA_WINDOWS, *TRAIN, "--num_train_epochs", 2, "--pruning_pattern", pattern, "--target_sparsity",
                 sparsity, "--output_dir", out)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "sparsity_report.json").read_text())
    assert report["task"] == "question_answering"
    assert report["recipe"]["groups"][0]["sparsity"] == pytest.approx(sparsity, abs=0.01)
    weights = load_file(out / "model.safetensors")
    assert (weights["qa_outputs.weight"] != 0).all()  # the task head is never pruned
    assert _some_layer_in_units(weights, layer, pattern)
    assert "f1" in json.loads((out / "eval_results.json").read_text())


def test_ner_prunes_channels_from_json_lines(ner_run, tmp_path):
    from safetensors.torch import load_file

    train = write_ner_lines(tmp_path / "train.jsonl", ner_sentences(32, 1))
    dev = write_ner_lines(tmp_path / "dev.jsonl", ner_sentences(8, 2))
    out = tmp_path / "sparse"
    result = cli("prune", "--model_name_or_path", ner_run["dense"], "--train_file", train, "--validation_file", dev,
                 *TRAIN, "--num_train_epochs", 2, "--pruning_pattern", "channelx1", "--target_sparsity", 0.5,
                 "--output_dir", out)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "sparsity_report.json").read_text())
    assert report["task"] == "token_classification"
    assert report["model"]["pruned"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    weights = load_file(out / "model.safetensors")
    assert (weights["classifier.weight"] != 0).all()
    assert _some_layer_in_units(weights, "intermediate.dense", "channelx1")
    assert "f1" in json.loads((out / "eval_results.json").read_text())


def test_ner_neurons_compact_to_the_stock_class_inspect_and_benchmark(ner_run):
    """Neurons pruned per layer (local scope) leave every layer the same size: `compact` saves the stock
    BertForTokenClassification, with the sparse model's logits."""
    import torch
    from transformers import AutoModelForTokenClassification

    out = ner_run["folder"] / "neurons"
    result = cli("prune", "--model_name_or_path", ner_run["dense"], "--task_name", "conll2003", "--data_dir",
                 ner_run["data"], *TRAIN, "--num_train_epochs", 2, "--pruning_pattern", "neuron",
                 "--pruning_scope", "local", "--target_sparsity", 0.5, "--output_dir", out)
    assert result.exit_code == 0, result.output
    result = cli("compact", out, "--output_dir", out / "compacted")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "compacted" / "compact_report.json").read_text())
    assert report["neurons_removed"] > 0 and report["task"] == "token_classification"
    assert report["max_logit_difference"] <= 1e-4
    assert '"model_type": "bert"' in (out / "compacted" / "config.json").read_text()
    compacted = AutoModelForTokenClassification.from_pretrained(out / "compacted").eval()
    assert type(compacted).__name__ == "BertForTokenClassification"
    sparse = AutoModelForTokenClassification.from_pretrained(out).eval()
    ids = torch.randint(5, 30, (3, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(sparse(input_ids=ids).logits, compacted(input_ids=ids).logits, atol=1e-4)
    inspected = cli("inspect", out, "--json")
    assert inspected.exit_code == 0, inspected.output
    shown = json.loads(inspected.stdout)
    assert shown["model"]["matmul"]["zeros"] > 0 and shown["task"] == "token_classification"
    timed = cli("benchmark", out, out / "compacted", "--sequence_length", 32, "--batch_sizes", 2, "--repeats", 2,
                "--min_time", 0, "--rounds", 1, "--warmup", 1, "--json")
    assert timed.exit_code == 0, timed.output
    assert len(json.loads(timed.stdout)["models"]) == 2
    # without --sequence_length a token classifier is timed on 128-token sentences (here: its 64 positions)
    refused = cli("benchmark", out, "--batch_sizes", 1, "--backend", "pytorch")
    assert_user_error(refused, "--sequence_length is 128")


def test_qa_heads_and_neurons_recipe_compacts_to_per_layer_sizes(qa_run):
    out = qa_run["folder"] / "recipe_units"
    recipe = json.loads((REPO / "prunecli" / "recipes" / "heads_neurons.json").read_text())
    recipe.pop("$schema")
    recipe["pruning_configs"][1]["min_neurons_per_layer"] = 8  # the shipped 64 is for MiniLM's 1,536; this has 64
    (qa_run["folder"] / "units.json").write_text(json.dumps(recipe))
    result = cli("prune", "--model_name_or_path", qa_run["dense"], "--task_name", "squad", "--data_dir",
                 qa_run["data"], *QA_WINDOWS, *TRAIN, "--num_train_epochs", 2, "--recipe",
                 qa_run["folder"] / "units.json", "--target_sparsity", 0.5, "--compact", "--output_dir", out)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "compact" / "compact_report.json").read_text())
    assert report["heads_removed"] > 0 and report["neurons_removed"] > 0
    assert report["auto_class"] == "AutoModelForQuestionAnswering"
    kept = {(p["unit"], p["kept"]) for p in report["plan"]}  # global scope: layers keep different numbers
    assert len({k for u, k in kept if u == "neuron"}) > 1 or len({k for u, k in kept if u == "head"}) > 1
    assert report["model_type"].startswith("prunecli-")  # per-layer sizes: loads after `import prunecli`
    _assert_same_qa_logits(out, out / "compact")


def test_ner_prune_with_distillation_resumes_to_the_same_weights(ner_run):
    """As the QA run, within float rounding: sentences are padded per batch, and the teacher logits of the
    sentences seen before the resumed step are computed again in another batch (other shapes, other sums)."""
    import torch

    a, b = _full_and_resumed(ner_run, ["--task_name", "conll2003"], "4x1", 3)
    assert a.keys() == b.keys() and all(((a[k] == 0) == (b[k] == 0)).all() for k in a)  # the same masks
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in a)


@pytest.mark.parametrize("option", ["--task_name", "--dataset_name"])
def test_squad_from_an_unreachable_hub_names_the_local_way(tmp_path, tiny_bert_dir, monkeypatch, option):
    _offline(monkeypatch, tmp_path)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # nothing cached
    result = cli("finetune", "--model_name_or_path", tiny_bert_dir, option, "squad", *QA_WINDOWS,
                 "--output_dir", tmp_path / "out")
    assert_user_error(result, "cannot load squad from the Hugging Face hub", "--data_dir")
    assert not (tmp_path / "out").exists()
