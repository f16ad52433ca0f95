"""Prompt tuning through peft: the prompt's init, padding-free scores, every estimator, resume, and refusals."""

import pytest
import torch

import zoo
from conftest import bits_equal, sentiment_file, stop_at, tiny_llama, word_tokenizer
from zoo.finetune.build import prepare
from zoo.finetune.loop import FinetuneConfig, finetune
from zoo.tasks import few_shot, user_task
from zoo.tuning.prompt import VIRTUAL_TOKENS, add_prompt_tuning
from zoo.tuning.prompt.setup import prompt_embedding


def _setup(tmp_path, estimator="mezo-sgd", **cfg):
    tmp_path.mkdir(parents=True, exist_ok=True)
    task = user_task(sentiment_file(tmp_path / "s.tsv"))
    built = prepare(tiny_llama(), word_tokenizer(), task, "prompt", "prompt")
    config = FinetuneConfig(**{**dict(model="tiny", task=str(tmp_path / "s.tsv"), estimator=estimator, steps=6, k=8,
                                      batch_size=4, lr=1e-2, eps=1e-2, eval_every=3, checkpoint_every=2,
                                      tuning="prompt"), **cfg})
    return config, built, few_shot(task, config.k, config.seed)


def test_the_prompt_starts_as_real_tokens_embeddings_and_alone_trains():
    model = add_prompt_tuning(tiny_llama(), seed=3)
    prompt = prompt_embedding(model).weight
    vocab = model.get_input_embeddings().weight
    assert prompt.shape[0] == VIRTUAL_TOKENS
    assert all(any(torch.equal(row, v) for v in vocab) for row in prompt)  # each row is a real token's embedding
    assert not torch.equal(prompt, prompt_embedding(add_prompt_tuning(tiny_llama(), seed=4)).weight)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(trainable) == 1 and trainable[0] is prompt


def test_a_row_scores_the_same_padded_in_a_batch_or_alone_and_as_peft_scores_it_unpadded(tmp_path):
    """peft's forward drops position ids (its warning); zoo's scorer keeps them, so padding changes nothing."""
    cfg, built, splits = _setup(tmp_path)
    scorer, model = built.scorer, built.model
    from dataclasses import replace

    longer = [replace(e, fields={**e.fields, "text": e.text + " the plot was fine the film was"}) for e in splits.train[1:4]]
    examples = [splits.train[0], *longer]
    batch = scorer.encode(examples)
    assert batch.attention_mask[0].sum() < batch.attention_mask.shape[1]  # the first row is padded
    with torch.no_grad():
        together = scorer(model, batch)
        alone = torch.cat([scorer(model, scorer.encode([e])) for e in examples])
        enc = scorer.encode(examples[:1])  # unpadded: peft's own forward is right there
        logits = model(input_ids=enc.input_ids).logits[:, -1].float().log_softmax(-1)
    assert torch.allclose(together, alone, atol=1e-5)
    assert torch.allclose(alone[0], logits[0, enc.targets[0]], atol=1e-5)


@pytest.mark.parametrize("estimator", ["mezo-sgd", "adam"])
def test_a_prompt_tuning_run_resumes_bit_exactly_counts_its_forwards_and_moves_the_prompt_alone(
        tmp_path, monkeypatch, estimator):
    cfg, built, splits = _setup(tmp_path / "a", estimator)
    start = [p.detach().clone() for p in built.model.parameters()]
    straight = finetune(cfg, built, splits, tmp_path / "a" / "run", progress=False)
    final = [p.detach().clone() for p in built.model.parameters()]
    assert straight["trainable_params"] == VIRTUAL_TOKENS * 32
    assert straight["model_calls"] == straight["forward_passes"] == (12 if estimator == "mezo-sgd" else 6)
    changed = [not torch.equal(a, b) for a, b in zip(start, final)]
    assert sum(changed) == 1 and [p.requires_grad for p in built.model.parameters()][changed.index(True)]
    cfg, built, splits = _setup(tmp_path / "b", estimator)
    stop_at(monkeypatch, 5, cfg, built, splits, tmp_path / "b" / "run")
    cfg, fresh, splits = _setup(tmp_path / "b", estimator)
    resumed = finetune(cfg, fresh, splits, tmp_path / "b" / "run", progress=False)
    assert bits_equal(final, fresh.model.parameters())
    assert resumed["history"]["loss"] == straight["history"]["loss"]


@pytest.mark.parametrize("name", zoo.available())
def test_every_estimator_trains_the_prompt_and_restores_every_bit_at_lr_0_in_bfloat16(tmp_path, name):
    cfg, built, splits = _setup(tmp_path)
    model, scorer = built.model, built.scorer
    model.get_base_model().to(torch.bfloat16)
    batch = scorer.encode(splits.train[:4])
    loss = lambda: torch.nn.functional.cross_entropy(scorer(model, batch).float(), batch.labels)  # noqa: E731
    before = [p.detach().clone() for p in model.parameters()]
    exact = {} if name == "forward-grad" else {"perturbation": "exact", "eps": 1e-2}
    opt = zoo.get(name, model, lr=0.0, seed=0, **exact)
    for _ in range(2):
        opt.step(loss)
    assert bits_equal(before, model.parameters())
    opt = zoo.get(name, model, lr=1e-1, eps=1e-2, seed=0)
    for _ in range(3):
        opt.step(loss)
    assert not torch.equal(prompt_embedding(model).weight, before[[p.requires_grad for p in model.parameters()].index(True)])


def test_exact_perturbation_refuses_a_peft_prompt_read_outside_the_forward():
    import peft

    model = peft.get_peft_model(tiny_llama(), peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4,
                                                                      inference_mode=True))
    prompt_embedding(model).weight.requires_grad_(True)
    with pytest.raises(ValueError, match="inference_mode=True, so peft reads its prompt weights outside"):
        zoo.get("mezo-sgd", model, perturbation="exact")
    zoo.get("mezo-sgd", model, perturbation="inplace")  # in place perturbs the stored weights: it works


def test_prompt_tuning_in_head_mode_and_on_squad_is_refused():
    from zoo.finetune.adapters import apply_tuning

    with pytest.raises(ValueError, match="tuning 'prompt': soft prompts are scored by the LM's own answers"):
        apply_tuning(tiny_llama(), "prompt", head=torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="tuning 'prompt': not for squad"):
        FinetuneConfig(task="squad", tuning="prompt").validate()
