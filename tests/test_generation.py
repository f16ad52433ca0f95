"""SQuAD v1.1: article pools, the official answer metrics, and batched greedy decoding with the KV cache."""

import json

import pytest
import torch

from zoo.generation import (exact_match, greedy_decode, load_squad, normalize_answer, pools, squad_prompt,
                            squad_scores, squad_splits, token_f1)
from zoo.tasks import TaskError, data_dir

SQUAD = data_dir() / "squad" / "dev-v1.1.json"


# -- metrics: the official evaluate-v1.1.py's behaviour ------------------------------------------------
@pytest.mark.parametrize("raw, normal", [
    ("The Cat!", "cat"), ("  an  apple, a pear ", "apple pear"), ("Theory", "theory"), ("the", ""),
    ("Denver Broncos.", "denver broncos"), ("A-B", "ab"), ("$1,000", "1000"), ("Thé café", "thé café"),
])
def test_normalize_answer(raw, normal):
    assert normalize_answer(raw) == normal


def test_exact_match_and_f1_take_the_best_gold_answer():
    golds = ["Denver Broncos", "the Denver Broncos", "Broncos"]
    assert exact_match("denver broncos!", golds) == 1.0 and token_f1("denver broncos!", golds) == 1.0
    assert exact_match("the Broncos of Denver", golds) == 0.0
    # "broncos denver" vs "denver broncos": all tokens shared (a multiset overlap ignores order)
    assert token_f1("Broncos Denver", ["Denver Broncos"]) == 1.0
    # 1 of 3 predicted tokens right, 1 of 1 gold: P = 1/3, R = 1, F1 = 0.5
    assert token_f1("the broncos won easily", ["Broncos"]) == pytest.approx(2 * (1 / 3) / (1 / 3 + 1))
    assert token_f1("Carolina Panthers", golds) == 0.0
    assert token_f1("", golds) == 0.0 and exact_match("", golds) == 0.0
    assert token_f1("the", ["a"]) == 0.0 and exact_match("the", ["a"]) == 1.0  # both normalise to ""
    assert token_f1("broncos broncos", ["broncos"]) == pytest.approx(2 * 0.5 * 1 / 1.5)  # counts, not sets


def test_squad_scores_are_means_over_questions():
    s = squad_scores(["Broncos", "wrong"], [["Denver Broncos"], ["right"]])
    assert s["exact_match"] == 0.0 and s["f1"] == pytest.approx((2 / 3) / 2) and s["examples"] == 2
    with pytest.raises(ValueError, match="2 predictions for 1"):
        squad_scores(["a", "b"], [["a"]])


# -- data -------------------------------------------------------------------------------------------
def test_the_pools_share_no_article_and_cover_the_file():
    articles = load_squad(SQUAD)
    assert len(articles) == 48 and sum(map(len, articles)) == 10570
    train, test = pools(articles)
    train_titles, test_titles = {q.title for q in train}, {q.title for q in test}
    assert not train_titles & test_titles and len(test_titles) == 16 and len(train) + len(test) == 10570
    assert not {q.context for q in train} & {q.context for q in test}


def test_mezo_sizes_are_disjoint_and_the_test_set_does_not_follow_the_seed():
    articles = load_squad(SQUAD)
    tr0, dev0, te0 = squad_splits(articles, seed=0)
    tr1, dev1, te1 = squad_splits(articles, seed=1)
    assert (len(tr0), len(dev0), len(te0)) == (1000, 500, 1000)
    assert not {q.id for q in tr0} & {q.id for q in dev0}
    assert not {q.title for q in tr0 + dev0} & {q.title for q in te0}
    assert [q.id for q in te0] == [q.id for q in te1] and [q.id for q in tr0] != [q.id for q in tr1]
    assert [q.id for q in squad_splits(articles, 0, 10, 5, 20)[2]] == [q.id for q in squad_splits(articles, 3, 10, 5, 20)[2]]
    with pytest.raises(ValueError, match="test of 5000 questions asked from a pool of"):
        squad_splits(articles, 0, test=5000)


def test_the_prompt_is_mezos():
    q = load_squad(SQUAD)[0][0]
    text = squad_prompt(q)
    assert text.startswith("Title: Super Bowl 50\nContext: ") and text.endswith(f"\nQuestion: {q.question.strip()}\nAnswer:")


@pytest.mark.parametrize("content, match", [("{", "not JSON"), ('{"data": 3}', "no top-level 'data'"),
                                            ('{"data": [{"title": "x"}]}', r"data\[0\]: malformed article"),
                                            ('{"data": [{"title": "x", "paragraphs": [{"context": "c", "qas": '
                                             '[{"id": "q", "question": "?", "answers": []}]}]}]}', "no answers")])
def test_a_damaged_file_is_named_with_what_is_wrong(tmp_path, content, match):
    path = tmp_path / "squad.json"
    path.write_text(content)
    with pytest.raises(TaskError, match=match) as e:
        load_squad(path)
    assert str(path) in str(e.value)


# -- decoding ---------------------------------------------------------------------------------------
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return LlamaForCausalLM(cfg).eval()


def test_the_cache_gives_the_tokens_of_the_full_recomputation_and_batches_equal_rows_alone():
    model = tiny_llama()
    prompts = [[3, 4, 5, 6, 7], [9, 8], [11, 12, 13]]
    cached = greedy_decode(model, prompts, 8, frozenset(), pad_id=0)
    full = greedy_decode(model, prompts, 8, frozenset(), pad_id=0, use_cache=False)
    alone = [greedy_decode(model, [p], 8, frozenset(), pad_id=0)[0] for p in prompts]
    assert cached == full == alone and all(len(g) == 8 for g in cached)


def test_a_peft_model_decodes_with_the_cache_argument_of_the_model_inside_it():
    import warnings

    from peft import LoraConfig, get_peft_model

    model = tiny_llama()
    prompts = [[3, 4, 5, 6, 7], [9, 8]]
    plain = greedy_decode(model, prompts, 6, frozenset(), pad_id=0)
    wrapped = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"])).eval()
    with warnings.catch_warnings():
        # transformers 5 deprecates `past_key_values` (gone in 5.40): decoding must not pass it
        warnings.filterwarnings("error", message=".*past_key_values.*")
        got = greedy_decode(wrapped, prompts, 6, frozenset(), pad_id=0)
    assert got == plain  # LoRA's B starts at zero, so the wrapped model is the same function


def test_a_row_stops_at_its_stop_token_and_a_capped_row_keeps_what_it_made():
    model = tiny_llama()
    prompts = [[3, 4, 5, 6, 7], [9, 8]]
    free = greedy_decode(model, prompts, 6, frozenset(), pad_id=0)
    stop = free[0][2]
    got = greedy_decode(model, prompts, 6, frozenset({stop}), pad_id=0)
    assert got[0] == free[0][: free[0].index(stop) + 1]
    second = free[1][: free[1].index(stop) + 1] if stop in free[1] else free[1]
    assert got[1] == second
    with pytest.raises(ValueError, match="max_new_tokens"):
        greedy_decode(model, prompts, 0, frozenset(), pad_id=0)


def test_zoo_eval_squad_reports_f1_and_exact_match_zero_shot_and_in_context(tmp_path, capsys):
    from conftest import tiny_model_folder
    from zoo.cli import main

    folder, _ = tiny_model_folder(tmp_path)
    for icl in (0, 2):
        out = tmp_path / f"squad{icl}.json"
        assert main(["eval", "--model", str(folder), "--task", "squad", "--limit", "6", "--icl", str(icl),
                     "--max-new-tokens", "3", "--quiet", "--json", str(out)]) == 0
        r = json.loads(out.read_text())
        assert r["metrics"]["examples"] == 6 and 0.0 <= r["metrics"]["f1"] <= 1.0 and len(r["predictions"]) == 6
        assert r["config"]["icl"] == icl and r["tokens_generated"] <= 6 * 3
        line = capsys.readouterr().out.strip().splitlines()[-1]
        assert line.startswith("squad test pool: F1 ") and ("2-shot in context" if icl else "zero-shot") in line
    assert main(["eval", "--model", str(folder), "--task", "squad", "--template", "mezo", "--quiet"]) == 2
    assert "--template: not for squad" in capsys.readouterr().err
