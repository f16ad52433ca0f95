"""SQuAD F1 and exact match of a causal LM's greedy answers: zero-shot, or with in-context demonstrations."""

from __future__ import annotations

import time

from ..progress import progress as progress_bar
from .decode import answer_text, greedy_decode, stop_token_ids
from .metrics import prediction_records, squad_scores
from .squad import SquadExample, squad_prompt


def demonstration(q: SquadExample) -> str:
    """A solved example for in-context learning: the prompt, its first gold answer, a blank line."""
    return f"{squad_prompt(q)} {q.answers[0]}\n\n"


def evaluate_squad(model, tokenizer, questions: list[SquadExample], demonstrations: list[SquadExample] = (),
                   max_new_tokens: int = 16, batch_size: int = 8, max_length: int = 2048,
                   progress: bool = False) -> dict:
    """{"metrics": {"f1", "exact_match", "examples"}, "predictions": [...], "tokens_generated", "seconds"}.

    Prompts longer than `max_length` tokens lose their beginning (demonstrations first). Questions run in
    batches of `batch_size`, sorted by length so that a batch pads little; the predictions come back in
    the questions' order.
    """
    prefix = "".join(demonstration(d) for d in demonstrations)
    stop = stop_token_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = [tokenizer(prefix + squad_prompt(q), add_special_tokens=False)["input_ids"][-max_length:] for q in questions]
    order = sorted(range(len(questions)), key=lambda i: len(ids[i]))
    answers: dict[int, str] = {}
    generated = 0
    t0 = time.perf_counter()
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in progress_bar(batches, desc="squad", unit="batch", enabled=progress):
        out = greedy_decode(model, [ids[i] for i in batch], max_new_tokens, stop, pad)
        for i, tokens in zip(batch, out):
            answers[i] = answer_text(tokenizer, tokens)
            generated += len(tokens)
    seconds = time.perf_counter() - t0
    predictions = [answers[i] for i in range(len(questions))]
    return {"metrics": squad_scores(predictions, [q.answers for q in questions]),
            "predictions": prediction_records(questions, predictions),
            "tokens_generated": generated, "seconds": seconds}
