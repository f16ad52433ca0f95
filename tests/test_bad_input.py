"""Bad input, as a user gives it: every case is one clear error (one line and exit 2 from the CLI), and
nothing is lost or silently wrong. Each case here failed (a traceback, a silent acceptance or a wrong
result) before issue 27's fixes; docs/reliability.md counts them."""

import logging
import math

import pytest
import torch

import zoo
from conftest import SMALL, bits_equal, lm_batch, sentiment_file, snapshot, tiny_llama, tiny_model_folder

NAN, INF = float("nan"), float("inf")


# -- the API: hyper-parameters are finite numbers, checked where param groups are -----------------------
@pytest.mark.parametrize("kwargs,arg", [
    ({"lr": NAN}, "lr"), ({"lr": INF}, "lr"), ({"lr": True}, "lr"), ({"lr": "0.1"}, "lr"),
    ({"eps": True}, "eps"), ({"eps": INF}, "eps"),
    ({"weight_decay": NAN}, "weight_decay"), ({"weight_decay": "0.1"}, "weight_decay"),
    ({"weight_decay": INF}, "weight_decay"),
    ({"threads": 0}, "threads"), ({"threads": -2}, "threads"), ({"chunk_size": 0}, "chunk_size"),
])
@pytest.mark.parametrize("name", ["mezo-sgd", "mezo-adam", "lezo"])
def test_non_numbers_and_non_finite_hyper_parameters_are_refused(name, kwargs, arg):
    model = tiny_llama()
    with pytest.raises(ValueError, match=f"^{arg}:"):
        zoo.get(name, model, **kwargs)


@pytest.mark.parametrize("group", [{"lr": NAN}, {"lr": True}, {"weight_decay": NAN}, {"eps": -1.0}])
def test_a_group_added_later_is_checked_and_leaves_the_estimator_as_it_was(group):
    model = tiny_llama()
    opt = zoo.get("mezo-sgd", list(model.model.layers[0].parameters()))
    groups = len(opt.param_groups)
    with pytest.raises(ValueError, match=next(iter(group))):
        opt.add_param_group({"params": list(model.model.layers[1].parameters()), **group})
    assert len(opt.param_groups) == groups


@pytest.mark.parametrize("lr", [-1e-3, NAN, INF])
def test_a_scheduler_that_writes_a_bad_lr_is_refused_at_the_step_and_nothing_moves(lr):
    model = tiny_llama()
    opt = zoo.get("mezo-sgd", model, lr=1e-3, perturbation="exact")
    before, counters = snapshot(model), dict(opt.zo_state)
    opt.param_groups[0]["lr"] = lr  # what an LR scheduler does
    with pytest.raises(ValueError, match=r"param_groups\[0\] lr"):
        opt.step(lambda: model(**lm_batch()).loss)
    assert bits_equal(before, snapshot(model)) and opt.zo_state == counters


def test_duplicate_parameters_are_refused():
    model = tiny_llama()
    p = next(model.parameters())
    with pytest.raises(ValueError, match="more than once"):
        zoo.get("mezo-sgd", [p, p])
    with pytest.raises(ValueError):  # across groups torch.optim itself refuses
        zoo.get("mezo-sgd", [{"params": [p]}, {"params": [p]}])


def test_an_unknown_option_names_the_estimator_and_lists_its_options():
    with pytest.raises(ValueError, match=r"^lezo: unknown option momentum; it takes .*active_fraction"):
        zoo.get("lezo", tiny_llama(), momentum=0.9)


def test_a_huge_eps_is_legal_but_warned(caplog):
    with caplog.at_level(logging.WARNING, logger="zoo"):
        zoo.get("mezo-sgd", tiny_llama(), eps=5.0)
    assert any("eps=5" in r.message for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="zoo"):
        zoo.get("mezo-sgd", tiny_llama(), eps=1e-3)
    assert not caplog.records


def test_triton_without_a_driver_is_refused_at_construction(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match=r"^backend='triton' cannot run on cpu parameters here"):
        zoo.get("mezo-sgd", tiny_llama(), backend="triton")


# -- state_dicts: another estimator's, or a damaged one, is refused before anything is loaded -------------
def _stepped(name, model, **hyper):
    opt = zoo.get(name, model, lr=1e-3, **{**SMALL.get(name, {}), **hyper})
    opt.step(lambda: model(**lm_batch()).loss)
    return opt


@pytest.mark.parametrize("saved,loaded,needle", [
    ("lezo", "mezo-sgd", "saved by lezo (LeZO, layers=LayerSubset); this estimator is mezo-sgd (MeZOSGD)"),
    ("mezo-sgd", "sparse-mezo", "saved by mezo-sgd (MeZOSGD); this estimator is sparse-mezo"),
    ("mezo-sgd", "subzero", "this estimator is subzero"),
])
def test_another_estimators_state_is_refused_in_one_line(saved, loaded, needle):
    model = tiny_llama()
    sd = _stepped(saved, model).state_dict()
    opt = zoo.get(loaded, model, **SMALL.get(loaded, {}))
    with pytest.raises(ValueError) as e:
        opt.load_state_dict(sd)
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert opt.zo_state["step"] == 0


@pytest.mark.parametrize("damage,needle", [
    (lambda st: st.__setitem__("exp_avg", st["exp_avg"][:1]), "has shape"),
    (lambda st: st.pop("exp_avg_sq"), "lacks exp_avg_sq"),
    (lambda st: st["exp_avg_sq"].fill_(-1.0), "negative"),
    (lambda st: st["exp_avg"].fill_(float("nan")), "non-finite"),
    (lambda st: st.__setitem__("step", "three"), "must be a tensor"),
])
def test_a_corrupted_adam_state_is_refused_and_the_next_step_is_whole(damage, needle):
    model = tiny_llama()
    sd = _stepped("mezo-adam", model).state_dict()
    damage(sd["state"][3])
    fresh = zoo.get("mezo-adam", model, lr=1e-3)
    with pytest.raises(ValueError, match=needle):
        fresh.load_state_dict(sd)
    assert not fresh.state and fresh.zo_state["step"] == 0  # nothing of it was loaded
    before = snapshot(model)
    fresh.step(lambda: model(**lm_batch()).loss)  # a whole step: every parameter moved
    assert all(not torch.equal(a, b) for a, b in zip(before, snapshot(model)))


def test_a_state_for_a_parameter_the_estimator_does_not_have_is_refused():
    model = tiny_llama()
    sd = _stepped("mezo-adam", model).state_dict()
    sd["state"][999] = sd["state"][0]
    with pytest.raises(ValueError, match="index 999"):
        zoo.get("mezo-adam", model).load_state_dict(sd)


# -- the config that `zoo finetune` and the Python API share ---------------------------------------------
@pytest.mark.parametrize("field,value", [
    ("lr", NAN), ("lr", INF), ("lr", True), ("lr", -1.0), ("eps", 0.0), ("eps", NAN),
    ("test_limit", 0), ("test_limit", -1), ("checkpoint_every", 0), ("checkpoint_every", -1),
    ("eval_every", -1), ("steps", 0), ("k", True), ("batch_size", 2.5), ("mode", "heads"), ("tuning", "qlora"),
])
def test_bad_config_values_are_refused(field, value):
    from zoo.finetune.loop import FinetuneConfig

    with pytest.raises(ValueError, match=f"^{field}:"):
        FinetuneConfig(**{field: value}).validate()


def test_tuning_head_needs_mode_head():
    from zoo.finetune.loop import FinetuneConfig

    with pytest.raises(ValueError, match="mode 'head'"):
        FinetuneConfig(tuning="head", mode="prompt").validate()


# -- the command line: one line, exit 2 -------------------------------------------------------------------
@pytest.fixture
def cli(tmp_path, capsys):
    from zoo.cli import main

    folder, data = tiny_model_folder(tmp_path)
    capsys.readouterr()  # the folder's save_pretrained bars

    def run(*argv):
        argv = [a.replace("{model}", str(folder)).replace("{data}", str(data)).replace("{tmp}", str(tmp_path))
                for a in argv]
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.err.strip()

    return run


BASE = ["--model", "{model}", "--task", "{data}", "--k", "4", "--quiet"]


@pytest.mark.parametrize("argv,needle", [
    (["finetune", *BASE, "--lr", "nan", "--out", "{tmp}/o"], "lr: must be a finite number"),
    (["finetune", *BASE, "--lr", "inf", "--out", "{tmp}/o"], "lr: must be a finite number"),
    (["finetune", *BASE, "--eps=-inf", "--out", "{tmp}/o"], "eps:"),
    (["finetune", *BASE, "--test-limit", "0", "--out", "{tmp}/o"], "test_limit: must be an integer >= 1"),
    (["finetune", *BASE, "--test-limit", "-3", "--out", "{tmp}/o"], "test_limit: must be an integer >= 1"),
    (["finetune", *BASE, "--checkpoint-every", "0", "--out", "{tmp}/o"], "checkpoint_every"),
    (["finetune", *BASE, "--checkpoint-every", "-1", "--out", "{tmp}/o"], "checkpoint_every"),
    (["finetune", *BASE, "--eval-every", "-1", "--out", "{tmp}/o"], "eval_every"),
    (["finetune", *BASE, "--backend", "triton", "--out", "{tmp}/o"], "backend='triton' cannot run"),
    (["finetune", *BASE, "--snapshot-every", "0", "--out", "{tmp}/o"], "snapshot_every"),
    (["finetune", *BASE, "--labels", "pos,neg,pos", "--out", "{tmp}/o"], "'pos' given more than once"),
    (["finetune", "--task", "sst2", "--labels", "a,b", "--out", "{tmp}/o"], "--labels: for your own"),
    (["finetune", *BASE, "--encoding", "ebcdic", "--out", "{tmp}/o"], "encoding: use one of"),
    (["eval", *BASE, "--limit", "-1"], "limit: must be an integer >= 1"),
    (["eval", *BASE, "--limit", "0"], "limit: must be an integer >= 1"),
    (["eval", *BASE, "--icl", "-1"], "icl"),
    (["eval", *BASE, "--split", "validation"], "no split 'validation'"),
    (["eval", "--task", "sst2", "--encoding", "latin-1"], "--encoding: for your own"),
])
def test_cli_bad_options_are_one_line_and_exit_2(cli, argv, needle, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    code, err = cli(*argv)
    assert code == 2 and len(err.splitlines()) == 1 and needle in err, err


def test_cli_lr_nan_writes_no_run(cli, tmp_path):
    code, _ = cli("finetune", *BASE, "--lr", "nan", "--out", "{tmp}/o")
    assert code == 2 and not (tmp_path / "o" / "results.json").exists()


# -- user files --------------------------------------------------------------------------------------------
def _latin1_file(path):
    rows = ["text\tlabel"] + [f"{w} fran\xe7ais film .\t{lab}" for w, lab in
                              [("good", "pos"), ("bad", "neg")] * 12]
    path.write_bytes(("\n".join(rows) + "\n").encode("latin-1"))
    return path


def test_a_latin1_file_is_located_and_readable_with_encoding(tmp_path):
    from zoo.tasks import TaskError, user_task

    path = _latin1_file(tmp_path / "mr.tsv")
    with pytest.raises(TaskError) as e:
        user_task(path).examples("all")
    msg = str(e.value)
    assert msg.startswith(f"{path}:2: not valid UTF-8 (byte 0xe7 at column 10)") and "--encoding latin-1" in msg
    examples = user_task(path, encoding="latin-1").examples("all")
    assert len(examples) == 24 and "fran\xe7ais" in examples[0].text


def test_a_utf8_bom_is_dropped(tmp_path):
    from zoo.tasks import user_task

    path = tmp_path / "bom.csv"
    path.write_bytes("\ufefftext,label\n".encode() + "".join(f"w{i},{i % 2}\n" for i in range(8)).encode())
    for encoding in ("utf-8", "utf-8-sig"):
        assert len(user_task(path, encoding=encoding).examples("all")) == 8


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl"])
def test_a_field_over_128_kib_is_read_in_every_format(tmp_path, suffix):
    import json

    from zoo.tasks import user_task

    long = "word " * 40_000  # 200 KB
    path = tmp_path / f"long{suffix}"
    rows = [(long if i == 0 else f"short {i}", i % 2) for i in range(6)]
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows))
    else:
        sep = "\t" if suffix == ".tsv" else ","
        path.write_text(f"text{sep}label\n" + "".join(f"{t}{sep}{lab}\n" for t, lab in rows))
    examples = user_task(path).examples("all")
    assert len(examples) == 6 and len(examples[0].text) > 128 * 1024


def test_an_unclosed_quote_in_a_csv_is_located_where_it_opens(tmp_path):
    from zoo.tasks import TaskError, user_task

    path = tmp_path / "quote.csv"
    path.write_text('text,label\nfine,0\n"a,0\nb,1\n')
    with pytest.raises(TaskError, match=rf"{path}:3: malformed row: a quoted field runs on to line 4"):
        user_task(path).examples("all")


# -- tunings that cannot combine ---------------------------------------------------------------------------
def test_lora_under_a_new_head_on_an_encoder_trains_the_head_and_the_factors():
    from transformers import BertConfig, BertModel

    from zoo.finetune.build import prepare
    from zoo.tasks import user_task
    from conftest import word_tokenizer

    def encoder():
        return BertModel(BertConfig(vocab_size=128, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=32))

    task = user_task(sentiment_file(__import__("pathlib").Path(__import__("tempfile").mkdtemp()) / "s.tsv"))
    built = prepare(encoder(), word_tokenizer(), task, "head", "lora")
    trained = [n for n, p in built.model.named_parameters() if p.requires_grad]
    assert any("lora_A" in n for n in trained) and any(n.startswith("head.") for n in trained)
    assert not any("query.base_layer" in n for n in trained)
    with pytest.raises(ValueError, match="prefix"):
        prepare(encoder(), word_tokenizer(), task, "head", "prefix")


def test_numbers_module_refuses_bools_and_non_finite():
    from zoo.validation import integer, number

    assert number("x", 3) == 3.0 and integer("n", 2, minimum=1) == 2
    for bad in (True, NAN, INF, -INF, "1", None, [1]):
        with pytest.raises(ValueError, match="^x:"):
            number("x", bad)
    for bad in (True, 1.0, "2", 0):
        with pytest.raises(ValueError, match="^n:"):
            integer("n", bad, minimum=1)
    assert math.isclose(number("x", torch.tensor(0.5)), 0.5)
