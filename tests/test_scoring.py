"""Candidate scoring against an unpadded float64 reference; heads; the prefix initialisation; objectives."""

import numpy as np
import pytest
import torch

from zoo.finetune.build import prepare
from zoo.finetune.objectives import get_objective, macro_f1
from zoo.finetune.scoring import PromptScorer, length_chunks
from zoo.tasks import Example, Template, user_task
from conftest import sentiment_file, tiny_llama, word_tokenizer


def reference_scores(model, tok, template, examples):
    """Each (example, candidate) alone, unpadded, in float64: mean log p of the answer tokens."""
    out = []
    for e in examples:
        row = []
        ctx = tok(template.context(e), add_special_tokens=False)["input_ids"]
        for cand in template.candidates(e):
            ans = tok(cand, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([ctx + ans])
            logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
            row.append(sum(logp[len(ctx) - 1 + t, a].item() for t, a in enumerate(ans)) / len(ans))
        out.append(row)
    return torch.tensor(out, dtype=torch.float64)


def _examples():
    texts = ["the movie was good .", "bad", "the plot was awful , sad , poor and the film was bad !", "nice film"]
    return [Example({"text": t}, i % 2) for i, t in enumerate(texts)]


@pytest.mark.parametrize("call_cost_tokens", [None, 0, 64], ids=["whole", "chunk-per-length", "default"])
@pytest.mark.parametrize("answers", [(" bad", " good"), (" bad movie", " good"), (" poor", " nice plot !")])
def test_batched_left_padded_scores_equal_the_unpadded_reference(answers, call_cost_tokens):
    # float32: HF's eager float64 attention turns fully masked padding rows into NaN, which then leaks
    model = tiny_llama()
    tok = word_tokenizer()
    template = Template("t", "review : {text} sentiment :", answers)
    scorer = PromptScorer(tok, template, call_cost_tokens=call_cost_tokens)
    enc = scorer.encode(_examples())
    assert enc.shared_answers == (answers == (" bad", " good"))
    with torch.no_grad():
        got = scorer(model, enc)
        want = reference_scores(model, tok, template, _examples())
    torch.testing.assert_close(got.double(), want, rtol=0, atol=2e-6)


def _brute_force_cost(lengths, cost):
    """Least cost over every contiguous partition of the length-sorted rows."""
    s = sorted(lengths)
    best = None
    for mask in range(1 << (len(s) - 1)):
        total, start = 0, 0
        for j in range(1, len(s) + 1):
            if j == len(s) or mask >> (j - 1) & 1:
                total += (j - start) * s[j - 1] + cost
                start = j
        best = total if best is None else min(best, total)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_length_chunks_is_an_optimal_partition_of_every_row(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 200, size=rng.integers(2, 11)).tolist()
    cost = int(rng.choice([0, 16, 64, 1000]))
    chunks = length_chunks(lengths, cost)
    assert sorted(i for c in chunks for i in c) == list(range(len(lengths)))
    got = sum(len(c) * max(lengths[i] for i in c) + cost for c in chunks)
    assert got == _brute_force_cost(lengths, cost)
    assert length_chunks(lengths, None) == [list(range(len(lengths)))]


def test_chunked_scores_have_the_whole_batch_gradient():
    model = tiny_llama()
    tok = word_tokenizer()
    template = Template("t", "review : {text} sentiment :", (" bad", " good"))
    grads = []
    for cost in (None, 0):
        scorer = PromptScorer(tok, template, call_cost_tokens=cost)
        enc = scorer.encode(_examples())
        model.zero_grad()
        torch.nn.functional.cross_entropy(scorer(model, enc), enc.labels).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-7)


def test_a_negative_call_cost_is_refused():
    with pytest.raises(ValueError, match="call_cost_tokens"):
        PromptScorer(word_tokenizer(), Template("t", "{text}", (" a", " b")), call_cost_tokens=-1)


def test_per_example_candidates_and_truncation_keep_the_answer():
    model = tiny_llama()
    tok = word_tokenizer()
    template = Template("t", "{text} because", (" {a}", " {b}"))
    ex = [Example({"text": "the movie was good " * 20, "a": "he", "b": "she was sad"}, 1)]
    scorer = PromptScorer(tok, template, max_length=8)
    enc = scorer.encode(ex)
    assert enc.input_ids.shape[1] <= 8 and not enc.shared_answers
    with torch.no_grad():
        got = scorer(model, enc)
    ctx = tok(template.context(ex[0]), add_special_tokens=False)["input_ids"]
    for c, answer in enumerate([" he", " she was sad"]):
        ans = tok(answer, add_special_tokens=False)["input_ids"]
        ids = ctx[-(8 - len(ans)):] + ans  # the context loses its start, never the answer
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), -1)
        start = len(ids) - len(ans)
        want = sum(logp[start - 1 + t, a].item() for t, a in enumerate(ans)) / len(ans)
        assert got[0, c].item() == pytest.approx(want, abs=2e-6)


def test_head_mode_starts_uniform_and_trains_only_the_head(tmp_path):
    from transformers import LlamaForSequenceClassification

    task = user_task(sentiment_file(tmp_path / "s.tsv"))
    base = tiny_llama()
    model = LlamaForSequenceClassification(base.config)
    model.config.pad_token_id = 0
    built = prepare(model, word_tokenizer(), task, "head", "head")
    trainable = [n for n, p in built.model.named_parameters() if p.requires_grad]
    assert trainable == ["score.weight"]
    enc = built.scorer.encode(task.examples("all")[:5])
    with torch.no_grad():
        s = built.scorer(built.model, enc)
    assert torch.equal(s, torch.zeros(5, 2))


@pytest.mark.parametrize("tuning,expect", [("lora", "lora_"), ("prefix", "prompt_encoder")])
def test_peft_tunings_train_only_their_adapters(tmp_path, tuning, expect):
    task = user_task(sentiment_file(tmp_path / "s.tsv"))
    built = prepare(tiny_llama(), word_tokenizer(), task, "prompt", tuning)
    names = [n for n, p in built.model.named_parameters() if p.requires_grad]
    assert names and all(expect in n for n in names)
    enc = built.scorer.encode(task.examples("all")[:4])
    with torch.no_grad():
        assert torch.isfinite(built.scorer(built.model, enc)).all()


@pytest.mark.parametrize("tuning", ["full", "lora", "prefix"])
def test_the_lm_head_gets_a_contiguous_block_of_the_kept_positions(tmp_path, tuning):
    """A strided view would make torch multiply it by a per-row copy of the vocabulary matrix when
    that matrix needs no grad (LoRA, prefix): docs/performance.md, *The LM head over the kept positions*."""
    task = user_task(sentiment_file(tmp_path / "s.tsv"))
    built = prepare(tiny_llama(), word_tokenizer(), task, "prompt", tuning)
    seen = []
    built.model.get_output_embeddings().register_forward_pre_hook(
        lambda m, args: seen.append((args[0].shape[1], args[0].is_contiguous())))
    examples = task.examples("all")[:4]
    with torch.no_grad():
        built.scorer(built.model, built.scorer.encode(examples))
    # the sentiment task's answers are shared single tokens: only the last position is scored
    assert seen and all(contiguous for _, contiguous in seen) and {kept for kept, _ in seen} == {1}


def test_prefix_starts_as_the_cache_of_real_tokens():
    """MeZO's init: the prefix equals the keys/values of random real tokens, so the model sees those tokens."""
    from zoo.finetune.adapters import apply_tuning

    model = tiny_llama(dtype=torch.float64)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    wrapped = apply_tuning(model, "prefix", prefix_tokens=3, seed=4)
    prefix = torch.randint(0, 128, (1, 3), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        want = wrapped.get_base_model()(input_ids=torch.cat([prefix, ids], 1)).logits[:, 3:]
        # position ids count from 0: peft moves them past the virtual tokens itself
        got = wrapped(input_ids=ids, attention_mask=torch.ones_like(ids),
                      position_ids=torch.arange(0, 5).unsqueeze(0)).logits
    # peft stores the prefix in float32, so the float64 cache is rounded once
    torch.testing.assert_close(got, want, rtol=0, atol=1e-7)
    wrong = torch.randint(0, 128, (1, 3), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        other = wrapped.get_base_model()(input_ids=torch.cat([wrong, ids], 1)).logits[:, 3:]
    assert (got - other).abs().max() > 1e-3


def test_macro_f1_matches_a_confusion_matrix():
    g = torch.Generator().manual_seed(0)
    pred, lab = torch.randint(0, 4, (200,), generator=g), torch.randint(0, 4, (200,), generator=g)
    cm = np.zeros((4, 4))
    np.add.at(cm, (lab.numpy(), pred.numpy()), 1)
    tp = np.diag(cm)
    f1 = 2 * tp / (cm.sum(0) + cm.sum(1))
    assert macro_f1(pred, lab, 4) == pytest.approx(f1.mean(), abs=1e-12)


def test_objectives():
    scores = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    assert get_objective("accuracy")(scores, labels).item() == pytest.approx(1 / 3)
    torch.testing.assert_close(get_objective("ce")(scores, labels), torch.nn.functional.cross_entropy(scores, labels))
    with pytest.raises(ValueError, match="ce, accuracy, f1"):
        get_objective("auc")


@pytest.mark.parametrize("tuning", ["lora", "prefix"])
def test_chunked_scores_equal_whole_batch_scores_under_peft(tuning):
    """peft's prefix is expanded to each call's batch size and shifts positions itself: chunks must not break it."""
    template = Template("t", "review : {text} sentiment :", (" bad", " good"))
    from zoo.finetune.adapters import apply_tuning

    model = apply_tuning(tiny_llama(), tuning, seed=0)
    with torch.no_grad():  # move the adapter off its identity start, so it matters
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    scores = []
    for cost in (None, 0):
        scorer = PromptScorer(word_tokenizer(), template, call_cost_tokens=cost)
        enc = scorer.encode(_examples())
        with torch.no_grad():
            scores.append(scorer(model, enc))
    assert len(length_chunks(enc.attention_mask.sum(1).tolist(), 0)) > 1  # the batch really ran in chunks
    torch.testing.assert_close(scores[1], scores[0], rtol=0, atol=2e-6)


def test_an_exact_step_runs_each_forward_whole_where_evaluation_splits_the_batch():
    """Under perturbation='exact' every model call re-perturbs the trained weights (one sweep each), so a
    full-parameter step's closures price a call EXACT_SWEEP_TOKENS higher and keep this batch whole."""
    import zoo
    from zoo.finetune.scoring import EXACT_SWEEP_TOKENS

    model = tiny_llama(torch.bfloat16)
    template = Template("t", "review : {text} sentiment :", (" bad", " good"))
    scorer = PromptScorer(word_tokenizer(), template)
    # 8 rows of 5 tokens and 8 of 40: splitting saves 16 x 40 - (8 x 5 + 8 x 40) = 280 padded tokens
    examples = [Example({"text": "good"}, 1)] * 8 + [Example({"text": " ".join(["bad"] * 36)}, 0)] * 8
    enc = scorer.encode(examples)
    calls = []
    model.register_forward_pre_hook(lambda m, a: calls.append(1))
    with torch.no_grad():
        evaluated = scorer(model, enc)
    assert len(calls) == 2  # evaluation: two length-sorted chunks (64 < 280)

    full = scorer.for_exact_perturbation(1.0)
    assert full.call_cost_tokens == 64 + EXACT_SWEEP_TOKENS > 280 and scorer.call_cost_tokens == 64
    opt = zoo.get("mezo-sgd", model, lr=0.0, eps=1e-3)
    assert opt.perturbation.name == "exact"
    calls.clear()
    with torch.no_grad():
        opt.step(lambda: get_objective("ce")(full(model, enc), enc.labels))
        assert len(calls) == 2  # one call per forward, not two
        torch.testing.assert_close(full(model, enc), evaluated, rtol=0, atol=0.05)  # the same scores, bf16 rounding
    assert scorer.for_exact_perturbation(0.001).call_cost_tokens == 64  # a few trained weights: a cheap sweep
    assert PromptScorer(word_tokenizer(), template, call_cost_tokens=None).for_exact_perturbation(1.0).call_cost_tokens is None
