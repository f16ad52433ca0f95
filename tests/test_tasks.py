"""Task loaders, users' files, templates and sampling: on a miniature copy of the data layout."""

import json
from pathlib import Path

import pytest

from zoo import tasks
from zoo.tasks import TaskError, few_shot, get_task, mezo_split, user_task

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _jsonl(path: Path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def data(tmp_path):
    """Every built-in task's files, a few rows each, in the shared folder's layout."""
    d = tmp_path / "data"
    (d / "glue-sst2").mkdir(parents=True)
    for split in ("train_full", "dev", "test-labeled"):
        rows = "".join(f"movie number {i} was {'good' if i % 2 else 'bad'} .\t{i % 2}\n" for i in range(20))
        (d / "glue-sst2" / f"{split}.tsv").write_text("sentence\tlabel\n" + rows)
    (d / "stsa").mkdir()
    for split in ("train", "dev", "test"):
        (d / "stsa" / f"stsa.fine.{split}").write_text("".join(f"{i % 5} review {i} text\n" for i in range(25)))
    (d / "trec").mkdir()
    coarse = ["DESC", "ENTY", "ABBR", "HUM", "LOC", "NUM"]
    for split in ("train", "test"):
        (d / "trec" / f"{split}.txt").write_text("".join(f"{coarse[i % 6]}:x what is {i} ?\n" for i in range(24)))
    nli = [{"premise": f"p{i}", "hypothesis": f"h{i}", "label": ["entailment", "not_entailment"][i % 2], "idx": i}
           for i in range(10)]
    cb = [dict(r, label=["entailment", "contradiction", "neutral"][i % 3]) for i, r in enumerate(nli)]
    for split in ("train", "val"):
        _jsonl(d / "superglue-rte" / f"{split}.jsonl", nli)
        _jsonl(d / "superglue-cb" / f"{split}.jsonl", cb)
    few = {
        "BoolQ": [{"passage": f"passage {i}", "question": f"is it {i}", "label": bool(i % 2), "idx": i} for i in range(6)],
        "COPA": [{"premise": "The man fell.", "choice1": "He tripped.", "choice2": "He laughed.",
                  "question": ["cause", "effect"][i % 2], "label": i % 2, "idx": i} for i in range(6)],
        "WiC": [{"word": "bank", "sentence1": "a", "sentence2": "b", "label": bool(i % 2), "idx": i} for i in range(6)],
        "WSC": [{"text": "Tom told Bob he won.", "target": {"span1_text": "Tom", "span2_text": "He",
                 "span1_index": 0, "span2_index": 3}, "label": bool(i % 2), "idx": i} for i in range(6)],
        "MultiRC": [{"idx": 0, "passage": {"text": "The sky is blue.", "questions": [
            {"question": "What colour?", "idx": 0, "answers": [{"text": "blue", "label": 1, "idx": 0},
                                                                {"text": "red", "label": 0, "idx": 1}]},
            {"question": "What?", "idx": 1, "answers": [{"text": "sky", "label": 1, "idx": 2}]}]}}],
    }
    for name, rows in few.items():
        for split in ("train", "dev32", "val"):
            _jsonl(d / "fewglue32dev" / name / f"{split}.jsonl", rows)
    return d


@pytest.mark.parametrize("name", tasks.available())
def test_every_builtin_task_loads_every_split(data, name):
    task = get_task(name, data)
    template = task.template()
    for split in task.splits:
        examples = task.examples(split)
        assert examples and all(0 <= e.label < task.num_classes for e in examples)
        for e in examples:
            assert len(template.candidates(e)) == task.num_classes
            assert isinstance(template.context(e), str) and e.text
            assert e.where.startswith(str(task.path(split)) + ":")


def test_labels_map_to_the_declared_classes(data):
    rte = get_task("rte", data).examples("train")
    assert [e.label for e in rte[:2]] == [0, 1]  # entailment, not_entailment
    trec = get_task("trec", data).examples("train")
    assert [get_task("trec", data).label_names[e.label] for e in trec[:3]] == ["description", "entity", "abbreviation"]
    sst5 = get_task("sst5", data).examples("train")
    assert [e.label for e in sst5[:5]] == [0, 1, 2, 3, 4]


def test_copa_and_multirc_follow_mezo(data):
    copa = get_task("copa", data)
    e0, e1 = copa.examples("train")[:2]
    t = copa.template()
    assert t.context(e0) == "The man fell because" and t.context(e1) == "The man fell so"
    assert t.candidates(e0) == [" he tripped.", " he laughed."]
    multirc = get_task("multirc", data).examples("train")
    assert len(multirc) == 3 and [e.label for e in multirc] == [1, 0, 1]  # one example per answer


def test_missing_folder_says_how_to_point_at_data(tmp_path):
    with pytest.raises(TaskError, match="--data-dir"):
        get_task("sst2", tmp_path).examples("train")


def test_unknown_task_and_split_and_template(data):
    with pytest.raises(TaskError, match="sst2"):
        get_task("sst-17")
    with pytest.raises(TaskError, match="no split 'dev'"):
        get_task("trec", data).examples("dev")
    with pytest.raises(TaskError, match="mezo"):
        get_task("rte", data).template("fancy")


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl"])
def test_user_file_in_each_format(tmp_path, suffix):
    rows = [{"sentence": f"text, number {i}", "other": f"b{i}", "label": ["neg", "pos"][i % 2]} for i in range(8)]
    path = tmp_path / f"mine{suffix}"
    if suffix == ".jsonl":
        _jsonl(path, rows)
    else:
        sep = "\t" if suffix == ".tsv" else ","
        quote = (lambda s: f'"{s}"') if suffix == ".csv" else (lambda s: s)
        path.write_text("sentence" + sep + "other" + sep + "label\n" +
                        "".join(sep.join([quote(r["sentence"]), r["other"], r["label"]]) + "\n" for r in rows))
    task = user_task(path, text_b_column="other")
    examples = task.examples("all")
    assert task.label_names == ("neg", "pos")
    assert [e.text for e in examples] == [r["sentence"] for r in rows]
    assert [e.text_b for e in examples] == [r["other"] for r in rows]
    assert [e.label for e in examples] == [i % 2 for i in range(8)]
    assert task.template().candidates(examples[0]) == [" neg", " pos"]


@pytest.mark.parametrize("content,expect", [
    ("", "empty file"),
    ("text\tlabel\n", "no data rows"),
    ("text\tlabel\ngood\t1\nbad\n", ":3: malformed row"),
    ("sentence\tlabel\ngood\t1\nbad\t0\nok\t\n", ":4: empty 'label'"),
    ("words\tlabel\ngood\t1\n", ":2: no 'text' or 'sentence' column"),
    ("text\tlabel\ngood\t1\nbad\t1\n", "single label"),
])
def test_user_file_errors_name_file_and_line(tmp_path, content, expect):
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    with pytest.raises(TaskError, match=expect) as err:
        user_task(path).examples("all")
    assert str(path) in str(err.value)


def test_user_file_missing_column_and_unknown_label(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b"}\n')
    with pytest.raises(TaskError, match=r"d.jsonl:2: missing column 'label'"):
        user_task(path)
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "z"}\n')
    with pytest.raises(TaskError, match=r"d.jsonl:2: unknown label 'z'"):
        user_task(path, labels=["x", "y"]).examples("all")
    path.write_text('{"text": "a", "label": "x"}\nnot json\n')
    with pytest.raises(TaskError, match=r"d.jsonl:2: malformed JSON"):
        user_task(path)
    with pytest.raises(TaskError, match="unsupported file type"):
        user_task(tmp_path / "d.txt")


def test_few_shot_is_a_function_of_the_seed(data):
    task = get_task("sst2", data)
    a, b, c = few_shot(task, 4, 0), few_shot(task, 4, 0), few_shot(task, 4, 1)
    assert [e.where for e in a.train] == [e.where for e in b.train]
    assert [e.where for e in a.train] != [e.where for e in c.train]
    assert sorted(e.label for e in a.train) == [0] * 4 + [1] * 4
    assert sorted(e.label for e in a.dev) == [0] * 4 + [1] * 4
    assert not {e.where for e in a.train} & {e.where for e in a.dev}
    assert len(a.test) == 20 and len(few_shot(task, 4, 0, test_limit=5).test) == 5
    with pytest.raises(TaskError, match="fewer than k=11"):
        few_shot(task, 11, 0)


def test_user_file_few_shot_holds_out_test(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("text\tlabel\n" + "".join(f"t{i}\t{i % 2}\n" for i in range(50)))
    s = few_shot(user_task(path), 5, 0)
    seen = [e.where for e in s.train + s.dev]
    assert len(s.test) == 10 and not set(seen) & {e.where for e in s.test} and len(set(seen)) == 20


def test_mezo_split_sizes_and_disjointness(data):
    s = mezo_split(get_task("sst2", data), seed=0, n_train=10, n_dev=5, n_test=8)
    assert (len(s.train), len(s.dev), len(s.test)) == (10, 5, 8)
    assert not {e.where for e in s.train} & {e.where for e in s.dev}
    again = mezo_split(get_task("sst2", data), seed=0, n_train=10, n_dev=5, n_test=8)
    assert [e.where for e in s.train] == [e.where for e in again.train]


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared task data folder is not beside this checkout")
def test_shared_data_record_counts_match_its_readme():
    counts = {("sst2", "train"): 67349, ("sst2", "dev"): 872, ("sst2", "test"): 1821, ("sst5", "train"): 8544,
              ("trec", "test"): 500, ("rte", "train"): 2490, ("rte", "val"): 277, ("cb", "val"): 56,
              ("boolq", "val"): 3270, ("copa", "val"): 100, ("wic", "val"): 638, ("wsc", "val"): 104}
    for (name, split), n in counts.items():
        assert len(get_task(name, SHARED).examples(split)) == n, (name, split)


def _fake_datasets(monkeypatch, rows_by_split):
    import sys
    import types

    calls = []
    fake = types.ModuleType("datasets")

    def load_dataset(name, config, split):
        calls.append((name, config, split))
        if isinstance(rows_by_split, Exception):
            raise rows_by_split
        return rows_by_split[split]

    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", fake)
    return calls


def test_a_missing_file_falls_back_to_the_hub_copy(tmp_path, monkeypatch):
    rows = {"validation": [{"premise": "A cat sat.", "hypothesis": "A cat.", "label": 0, "idx": 0},
                           {"premise": "It rained.", "hypothesis": "It was dry.", "label": 1, "idx": 1}],
            "test": [{"text": "Who wrote it ?", "coarse_label": 3}, {"text": "What is NASA ?", "coarse_label": 0}]}
    calls = _fake_datasets(monkeypatch, rows)
    ex = get_task("rte", data_dir_=tmp_path).examples("val")  # an empty data folder
    assert calls == [("aps/super_glue", "rte", "validation")]
    assert [e.label for e in ex] == [0, 1] and ex[0].fields["premise"] == "A cat sat."
    assert ex[1].where == "hub:aps/super_glue/val:2"
    trec = get_task("trec", data_dir_=tmp_path)
    assert [trec.label_keys[e.label] for e in trec.examples("test")] == ["hum", "abbr"]
    with pytest.raises(TaskError, match="no such file"):  # LM-BFF's labelled SST-2 test set has no hub copy
        get_task("sst2", data_dir_=tmp_path).examples("test")


def test_a_hub_that_cannot_be_reached_is_one_clear_error(tmp_path, monkeypatch, capsys):
    _fake_datasets(monkeypatch, OSError("Couldn't reach 'aps/super_glue' on the Hub"))
    with pytest.raises(ConnectionError, match=r"^cb: no local file, and the hub copy aps/super_glue \(cb\)"):
        get_task("cb", data_dir_=tmp_path).examples("val")
    from zoo.cli import main

    assert main(["eval", "--task", "cb", "--data-dir", str(tmp_path), "--limit", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "hub copy aps/super_glue (cb)" in err[0]


def test_without_the_datasets_library_a_missing_file_says_where_to_point(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets raises ImportError
    with pytest.raises(TaskError, match="no such file .*--data-dir"):
        get_task("rte", data_dir_=tmp_path).examples("val")
