"""SQuAD v1.1 as a generation task: the dev file split into two article pools, and MeZO's prompt.

Only the official dev set (dev-v1.1.json: 10,570 questions over 48 articles) is available here, so it
serves for training too, split by article so that no context is seen both in training and at test:

- the test pool: the articles at positions 2, 5, 8, ... of the file (every third, 16 articles);
- the train pool: the other 32, from which train and dev questions are drawn (disjoint).

MeZO's protocol then samples 1,000 train, 500 dev and 1,000 test questions; smaller sizes may be asked
for. Train and dev depend on the run's seed; the test questions are drawn with seed 0 whatever the
run's seed, so that every seed is tested on the same questions.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from ..tasks.readers import TaskError


@dataclass(frozen=True)
class SquadExample:
    id: str
    title: str
    context: str
    question: str
    answers: tuple[str, ...]


def load_squad(path: str | Path) -> list[list[SquadExample]]:
    """The file's questions, grouped by article in file order.

    Raises:
        TaskError: naming the file, where it is not SQuAD v1.1 JSON (and where in it).
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaskError(f"{path}: no such file (SQuAD v1.1 dev-v1.1.json; see ../shared/data/README.md)") from None
    except json.JSONDecodeError as e:
        raise TaskError(f"{path}:{e.lineno}:{e.colno}: not JSON ({e.msg})") from None
    except UnicodeDecodeError as e:
        raise TaskError(f"{path}: not UTF-8 (byte {e.object[e.start]:#04x} at offset {e.start})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), list):
        raise TaskError(f"{path}: not SQuAD JSON (no top-level 'data' list of articles)")
    articles = []
    for i, article in enumerate(raw["data"]):
        where = f"{path}: data[{i}]"
        try:
            title = article["title"]
            questions = [SquadExample(str(qa["id"]), title, p["context"], qa["question"],
                                      tuple(a["text"] for a in qa["answers"]))
                         for p in article["paragraphs"] for qa in p["qas"]]
        except (KeyError, TypeError) as e:
            raise TaskError(f"{where}: malformed article ({type(e).__name__}: {e}); SQuAD articles have a title "
                            "and paragraphs of context and qas (id, question, answers[].text)") from None
        bad = next((q for q in questions if not q.answers), None)
        if bad is not None:
            raise TaskError(f"{where}: question {bad.id} has no answers (SQuAD v1.1 has at least one)")
        articles.append(questions)
    return articles


def pools(articles: list[list[SquadExample]]) -> tuple[list[SquadExample], list[SquadExample]]:
    """(train pool, test pool): every third article, from the third, is a test article."""
    train = [q for i, a in enumerate(articles) if i % 3 != 2 for q in a]
    test = [q for i, a in enumerate(articles) if i % 3 == 2 for q in a]
    return train, test


def squad_splits(articles: list[list[SquadExample]], seed: int, train: int = 1000, dev: int = 500,
                 test: int = 1000) -> tuple[list[SquadExample], list[SquadExample], list[SquadExample]]:
    """(train, dev, test) questions: train and dev from the train pool with `seed`, test from the test
    pool with seed 0.

    Raises:
        ValueError: for sizes below 1 or beyond what a pool holds.
    """
    train_pool, test_pool = pools(articles)
    for name, n, pool in (("train + dev", train + dev, train_pool), ("test", test, test_pool)):
        if min(train, dev, test) < 1 or n > len(pool):
            raise ValueError(f"squad: {name} of {n} questions asked from a pool of {len(pool)} (sizes must be "
                             "at least 1)")
    drawn = random.Random(seed).sample(train_pool, train + dev)
    return drawn[:train], drawn[train:], random.Random(0).sample(test_pool, test)


def squad_prompt(q: SquadExample) -> str:
    """MeZO's SQuAD prompt (its templates.py): title, context, question, then "Answer:"."""
    return f"Title: {q.title.replace('_', ' ')}\nContext: {q.context}\nQuestion: {q.question.strip()}\nAnswer:"
