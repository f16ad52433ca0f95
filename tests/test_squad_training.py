"""SQuAD as a training task: the CE and F1 objectives against plain references, and runs that resume and replay.

The model is a tiny random Llama whose word tokenizer knows the words of the handful of real SQuAD rows used.
"""

import json

import pytest
import torch

from conftest import bits_equal, stop_at, tiny_llama, word_tokenizer
from zoo.generation import greedy_decode, load_squad, squad_splits, token_f1
from zoo.generation.decode import answer_text
from zoo.generation.training import SquadScorer
from zoo.tasks import data_dir

SQUAD = data_dir() / "squad" / "dev-v1.1.json"
MAX_LENGTH = 40  # prompts lose their beginning: the question and "Answer:" stay


@pytest.fixture(scope="module")
def questions():
    train, dev, test = squad_splits(load_squad(SQUAD), seed=0, train=8, dev=4, test=4)
    return train + dev + test


def _tokenizer(questions):
    import re

    words = []
    for q in questions:
        text = " ".join((q.title.replace("_", " "), q.context, q.question, *q.answers, "title context question answer"))
        words += re.findall(r"\w+|[^\w\s]", text.lower())
    vocab = list(dict.fromkeys(words))[:1000]
    return word_tokenizer(vocab)


def _model():
    return tiny_llama(vocab=1024, tie=False)  # untied: a tied tiny model mostly repeats its last input token


def plain_greedy(model, prompt, max_new_tokens, stop_ids):
    """One prompt, the whole sequence through the model at every token: the reference decoder."""
    ids, out = list(prompt), []
    for _ in range(max_new_tokens):
        with torch.no_grad():
            token = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
        out.append(token)
        ids.append(token)
        if token in stop_ids:
            break
    return out


def test_batched_cached_decoding_equals_a_plain_token_by_token_loop(questions):
    tok, model = _tokenizer(questions), _model()
    scorer = SquadScorer(tok, max_length=MAX_LENGTH, max_new_tokens=6)
    batch = scorer.encode(questions[:5])
    assert len({len(p) for p in batch.prompts}) > 1  # left padding is exercised
    free = greedy_decode(model, batch.prompts, 6, frozenset(), scorer.pad_id)
    stop = frozenset({free[0][2]})  # a token the first row makes: it must stop there, the others where they meet it
    got = greedy_decode(model, batch.prompts, 6, stop, scorer.pad_id)
    assert got == [plain_greedy(model, p, 6, stop) for p in batch.prompts]
    assert got[0] == free[0][:free[0].index(free[0][2]) + 1] and got != free


def test_cached_decoding_of_a_lora_model_equals_the_plain_loop(questions):
    from zoo.finetune.adapters import apply_tuning

    tok = _tokenizer(questions)
    model = apply_tuning(_model(), "lora", seed=0)
    with torch.no_grad():  # LoRA's B starts at zero: give the factors values so that they change the answers
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.5)
    scorer = SquadScorer(tok, max_length=MAX_LENGTH, max_new_tokens=5)
    prompts = scorer.encode(questions[:4]).prompts
    got = greedy_decode(model, prompts, 5, frozenset(), scorer.pad_id)
    assert got == [plain_greedy(model, p, 5, frozenset()) for p in prompts]
    with model.disable_adapter():
        assert got != [plain_greedy(model, p, 5, frozenset()) for p in prompts]


def test_ce_objective_equals_a_float64_reference_on_the_answer_tokens_alone(questions):
    tok, model = _tokenizer(questions), _model()
    scorer = SquadScorer(tok, max_length=MAX_LENGTH)
    qs = questions[:4]
    loss = scorer.batch_loss(model, scorer.encode(qs), "ce")
    reference = model.double()
    total, count = 0.0, 0
    for q in qs:
        target = tok(" " + q.answers[0] + "\n", add_special_tokens=False)["input_ids"]
        from zoo.generation import squad_prompt

        prompt = tok(squad_prompt(q), add_special_tokens=False)["input_ids"][-(MAX_LENGTH - len(target)):]
        ids = torch.tensor([prompt + target])
        with torch.no_grad():
            logp = reference(input_ids=ids).logits[0].log_softmax(-1)
        for t in range(len(prompt), ids.shape[1]):
            total -= float(logp[t - 1, ids[0, t]])
            count += 1
    loss = loss.detach()
    assert loss.dtype == torch.float32 and float(loss) == pytest.approx(total / count, rel=1e-5)
    # the prompt is masked: another question with the same answer tokens gives another loss only through context
    other = SquadScorer(tok, max_length=MAX_LENGTH).encode(qs)
    assert int(other.target_mask.sum()) == count


def test_ce_in_length_sorted_chunks_equals_the_whole_batch_and_each_row_alone(questions):
    import dataclasses

    tok, model = _tokenizer(questions), _model()
    # contexts cut to a few words or many, so that the batch pads a lot when it runs whole
    qs = [dataclasses.replace(q, context=" ".join(q.context.split()[:n])) for q, n in zip(questions, (2, 30, 4, 25, 3))]
    calls = []
    model.register_forward_pre_hook(lambda module, args: calls.append(1))
    whole = SquadScorer(tok, max_length=64, call_cost_tokens=None)
    chunked = SquadScorer(tok, max_length=64, call_cost_tokens=0)
    batch = whole.encode(qs)
    lengths = batch.attention_mask.sum(1)
    assert lengths.max() > 2 * lengths.min()
    with torch.no_grad():
        one = whole.ce(model, batch)
        assert len(calls) == 1
        split = chunked.ce(model, batch)
        assert len(calls) > 2
        rows = [whole.ce(model, whole.encode([q]), reduce=False) for q in qs]
    assert float(split) == pytest.approx(float(one), rel=1e-5)
    assert float(split) == pytest.approx(sum(float(s) for s, _ in rows) / sum(c for _, c in rows), rel=1e-5)
    total, count = chunked.ce(model, batch, reduce=False)
    assert count == int(batch.target_mask.sum())


def test_f1_objective_is_minus_the_mean_f1_of_the_plain_loops_answers(questions):
    tok, model = _tokenizer(questions), _model()
    scorer = SquadScorer(tok, max_length=MAX_LENGTH, max_new_tokens=4)
    qs = questions[:6]
    batch = scorer.encode(qs)
    answers = [answer_text(tok, plain_greedy(model, p, 4, scorer.stop)) for p in batch.prompts]
    expected = -sum(token_f1(a, q.answers) for a, q in zip(answers, qs)) / len(qs)
    assert float(scorer.batch_loss(model, batch, "f1")) == expected
    with pytest.raises(ValueError, match="squad takes ce or f1"):
        scorer.batch_loss(model, batch, "accuracy")


def _folder(tmp_path, questions):
    folder = tmp_path / "tiny"
    _model().save_pretrained(folder)
    _tokenizer(questions).save_pretrained(folder)
    return folder


def _run(folder, out, **overrides):
    from zoo.finetune.commands import prepare_run
    from zoo.finetune.loop import FinetuneConfig

    cfg = FinetuneConfig(**{**dict(model=str(folder), task="squad", objective="f1", steps=6, k=8, batch_size=2,
                                   lr=5e-2, eps=1e-2, eval_every=3, checkpoint_every=2, test_limit=4,
                                   max_length=MAX_LENGTH, max_new_tokens=3), **overrides})
    built, splits = prepare_run(cfg, {})
    return cfg, built, splits


@pytest.mark.parametrize("objective", ["f1", "ce"])
def test_a_squad_run_resumes_bit_exactly_and_counts_one_forward_per_evaluation_of_the_batch(
        tmp_path, monkeypatch, questions, objective):
    from zoo.finetune.loop import finetune

    folder = _folder(tmp_path, questions)
    cfg, built, splits = _run(folder, tmp_path / "a", objective=objective)
    straight = finetune(cfg, built, splits, tmp_path / "a", progress=False)
    final = [p.detach().clone() for p in built.model.parameters()]
    assert straight["metric"] == "f1" and set(straight["metrics"]) >= {"f1", "exact_match", "dev_f1", "test_loss"}
    assert straight["model_calls"] == straight["forward_passes"] == 12  # the prompt passes, not the decoded tokens
    assert len(straight["predictions"]) == 4 and straight["metrics"]["test_examples"] == 4
    if objective == "f1":
        assert all(-1.0 <= x <= 0.0 for losses in straight["history"]["step_losses"] for x in losses)

    cfg, built, splits = _run(folder, tmp_path / "b", objective=objective)
    stop_at(monkeypatch, 5, cfg, built, splits, tmp_path / "b")
    (tmp_path / "b" / "checkpoint.pt").unlink()  # only the loss log is left: the run replays it
    cfg, fresh, splits = _run(folder, tmp_path / "b", objective=objective)
    resumed = finetune(cfg, fresh, splits, tmp_path / "b", progress=False)
    assert bits_equal(final, fresh.model.parameters())
    assert resumed["history"]["step_losses"] == straight["history"]["step_losses"]
    assert resumed["metrics"] == straight["metrics"]
    assert (tmp_path / "b" / "curve.png").exists()


def test_zoo_eval_run_rebuilds_a_squad_run_from_its_logged_losses(tmp_path, questions, capsys):
    from zoo.cli import main

    folder = _folder(tmp_path, questions)
    out = tmp_path / "run"
    args = ["--model", str(folder), "--task", "squad", "--k", "8", "--batch-size", "2", "--max-length", str(MAX_LENGTH),
            "--max-new-tokens", "3", "--quiet"]
    assert main(["finetune", *args, "--objective", "f1", "--steps", "4", "--lr", "0.05", "--eps", "0.01",
                 "--test-limit", "4", "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("squad test F1 ") and "exact match" in line
    r = json.loads((out / "results.json").read_text())
    (out / "checkpoint.pt").unlink()
    assert main(["eval", "--task", "squad", "--run", str(out), "--limit", "4", "--quiet",
                 "--json", str(tmp_path / "e.json")]) == 0
    e = json.loads((tmp_path / "e.json").read_text())
    assert e["metrics"]["f1"] == r["metrics"]["f1"] and e["metrics"]["loss"] == pytest.approx(r["metrics"]["test_loss"])
    assert [p["prediction"] for p in e["predictions"]] == [p["prediction"] for p in r["predictions"]]


@pytest.mark.parametrize("argv, message", [
    (["--estimator", "adam", "--objective", "f1"], "objective 'f1' is not differentiable: first-order 'adam'"),
    (["--objective", "accuracy"], "squad takes ce or f1"),
    (["--mode", "head", "--tuning", "head"], "squad is a generation task"),
    (["--template", "mezo"], "template: squad uses MeZO's prompt"),
    (["--max-new-tokens", "0"], "max_new_tokens"),
    (["--tuning", "prefix"], "tuning 'prefix': not for squad"),
])
def test_bad_squad_options_are_one_line_errors(tmp_path, capsys, argv, message):
    from zoo.cli import main

    assert main(["finetune", "--task", "squad", "--steps", "2", "--out", str(tmp_path / "r"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("tuning", ["lora", "tt-adapter"])
def test_parameter_efficient_squad_runs_decode_through_their_adapters(tmp_path, questions, tuning):
    """A run moves only the adapters, and its test answers (decoded with the KV cache, the adapters applied at
    every token) are those of the plain loop on the trained model."""
    from zoo.finetune.loop import finetune

    folder = _folder(tmp_path, questions)
    cfg, built, splits = _run(folder, tmp_path / "r", tuning=tuning, objective="ce", steps=3, lr=0.5,
                                eps=0.1)
    start = {n: p.detach().clone() for n, p in built.model.named_parameters()}
    r = finetune(cfg, built, splits, tmp_path / "r", progress=False)
    moved = {n for n, p in built.model.named_parameters() if not torch.equal(p, start[n])}
    trained = {n for n, p in built.model.named_parameters() if p.requires_grad}
    assert moved and moved <= trained
    prompts = built.scorer.encode(splits.test).prompts
    plain = [answer_text(built.tokenizer,
                         plain_greedy(built.model, p, cfg.max_new_tokens, built.scorer.stop)) for p in prompts]
    assert [p["prediction"] for p in r["predictions"]] == plain


def test_a_runs_test_questions_are_those_zoo_eval_scores_at_the_same_limit():
    """`--test-limit N` and `zoo eval --limit N` draw the same N questions (a prefix of a larger draw would not)."""
    from zoo.finetune.loop import FinetuneConfig
    from zoo.generation.training import squad_run_splits

    articles = load_squad(SQUAD)
    for limit in (4, 100):
        run = squad_run_splits(FinetuneConfig(task="squad", seed=3, test_limit=limit))
        assert [q.id for q in run.test] == [q.id for q in squad_splits(articles, 0, train=1, dev=1, test=limit)[2]]


def test_exact_perturbation_prices_a_squad_chunk_as_the_classification_scorer_does(questions):
    from zoo.finetune.scoring import EXACT_SWEEP_TOKENS

    scorer = SquadScorer(_tokenizer(questions), call_cost_tokens=64)
    assert scorer.for_exact_perturbation(1.0).call_cost_tokens == 64 + EXACT_SWEEP_TOKENS
    assert scorer.for_exact_perturbation(1e-4).call_cost_tokens == 64  # LoRA-sized: the sweep is nearly free
    assert scorer.call_cost_tokens == 64  # a copy: the step scorer keeps its own price
    assert SquadScorer(_tokenizer(questions), call_cost_tokens=None).for_exact_perturbation(1.0).call_cost_tokens is None
