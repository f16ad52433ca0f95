"""SQuAD v1.1's answer metrics, as its official evaluation script computes them.

An answer is normalised by lower-casing it, removing punctuation (`string.punctuation`), removing the
articles "a", "an" and "the" as whole words, and collapsing whitespace. Exact match is whether the
normalised prediction equals a normalised gold answer; token F1 is the harmonic mean of precision and
recall of the normalised tokens (a multiset overlap), 0 where nothing overlaps. A prediction takes the
maximum of each over the question's gold answers (Rajpurkar et al. 2016, SQuAD v1.1 `evaluate-v1.1.py`).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces: the official script's order of steps."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 where the normalised prediction equals a normalised gold answer, else 0.0."""
    guess = normalize_answer(prediction)
    return float(any(guess == normalize_answer(g) for g in golds))


def _f1(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    """The best token F1 of the prediction against any gold answer."""
    return max(_f1(prediction, g) for g in golds)


def prediction_records(questions, predictions: Sequence[str]) -> list[dict]:
    """One {"id", "prediction", "answers"} per question, as `zoo eval --json` and results.json keep them."""
    return [{"id": q.id, "prediction": p, "answers": list(q.answers)} for q, p in zip(questions, predictions)]


def squad_scores(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict:
    """{"f1", "exact_match"}: means over the questions, as fractions (the official script prints x100)."""
    if len(predictions) != len(golds) or not predictions:
        raise ValueError(f"squad_scores: {len(predictions)} predictions for {len(golds)} questions")
    n = len(predictions)
    return {"f1": sum(token_f1(p, g) for p, g in zip(predictions, golds)) / n,
            "exact_match": sum(exact_match(p, g) for p, g in zip(predictions, golds)) / n, "examples": n}
