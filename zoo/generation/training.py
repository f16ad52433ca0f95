"""SQuAD as a training task: a batch's loss under each objective, and a split's F1, exact match and loss.

Objectives (MeZO section 3.3 and Table 3):

- "ce": teacher-forced cross-entropy of the target " <first gold answer>\\n" after the prompt,

      L_ce(θ) = −(1/|A|) Σ_{(i,t) ∈ A} log p_θ(y_{i,t} | prompt_i, y_{i,<t}),

  over the answer tokens A of the batch (the prompt's tokens are masked out of the loss). The trailing
  newline teaches the model to stop, since decoding ends at the first newline. First-order runs use it too.
- "f1": L_f1(θ) = −(1/B) Σ_i F1(greedy_θ(prompt_i), golds_i), the mean token F1 of the model's own greedy
  answers, decoded with the KV cache from the weights as they are (perturbed, inside a ZO step). It is
  piecewise constant in θ, so only a ZO estimator can use it. Both points of a step decode with the same
  settings; an answer that reaches `max_new_tokens` counts as what it produced.

A generation forward is one prompt pass that fills the KV cache plus one single-position pass per new
token; the row counter of `zoo finetune` counts the prompt pass only, so one evaluation of the batch is one
forward pass whatever the answers' lengths. Under `perturbation="exact"` every model call re-perturbs the
trained weights on entry (and restores them on exit), so a step with the F1 objective costs up to
1 + max_new_tokens sweeps over the trained weights per query, against one for "ce".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ..finetune.scoring import length_chunks, priced_for_exact
from ..placement import model_device
from ..progress import progress as progress_bar
from .decode import answer_text, greedy_decode, stop_token_ids
from .metrics import prediction_records, squad_scores, token_f1
from .squad import SquadExample, squad_prompt

OBJECTIVES = ("ce", "f1")


@dataclass
class SquadBatch:
    """Questions ready for the model.

    `input_ids` holds each prompt followed by its target " answer\\n", left-padded; `target_mask` marks the
    positions whose token is a target token (the loss predicts them from the position before). `prompts`
    are the prompts' ids alone (for decoding) and `golds` each question's gold answers.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    target_mask: torch.Tensor
    prompts: list[list[int]]
    golds: list[tuple[str, ...]]

    labels = None  # the loop's objective takes (scores, labels); a generation batch has no class labels

    def rows(self, index: list[int]) -> "SquadBatch":
        """Rows `index` of the batch, cut to the longest of them (the batch is left-padded, so that is its last
        columns)."""
        width = int(self.attention_mask[index].sum(1).max())
        idx = torch.tensor(index)
        return SquadBatch(self.input_ids[idx, -width:], self.attention_mask[idx, -width:],
                          self.target_mask[idx, -width:], [self.prompts[i] for i in index],
                          [self.golds[i] for i in index])

    def to(self, device) -> "SquadBatch":
        return dataclasses.replace(self, input_ids=self.input_ids.to(device),
                                   attention_mask=self.attention_mask.to(device),
                                   target_mask=self.target_mask.to(device))


class SquadScorer:
    """A causal LM's loss and metrics on SQuAD questions under MeZO's prompt.

    Args:
        tokenizer: the model's tokenizer.
        max_length: longest prompt + target; a longer prompt loses its beginning (the title and the start of
            the context), as the classification prompts do.
        max_new_tokens: the longest answer decoded (the F1 objective and evaluation).
        batch_size: questions per decoding batch in evaluation.
        call_cost_tokens: the teacher-forced loss runs a batch as length-sorted chunks of least cost, one
            call each, as the classification prompts do (`zoo.finetune.scoring.length_chunks`): SQuAD's
            contexts vary from about 150 to 500 tokens, so a batch of 4 padded whole is a quarter padding.
            None runs every batch as one call (what a GPU wants; `Built.to` sets it for CUDA).
    """

    metric = "f1"
    reported = ("f1", "exact_match")

    def __init__(self, tokenizer, max_length: int = 512, max_new_tokens: int = 16, batch_size: int = 8,
                 call_cost_tokens: int | None = 64):
        self.tok = tokenizer
        self.call_cost_tokens = call_cost_tokens
        self.max_length = max_length
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.stop = stop_token_ids(tokenizer)

    def for_exact_perturbation(self, trained_fraction: float) -> "SquadScorer":
        """This scorer with its chunks priced for `perturbation="exact"` (see `priced_for_exact`)."""
        return priced_for_exact(self, trained_fraction)

    def _ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def _prompt(self, q: SquadExample, room: int) -> list[int]:
        return self._ids(squad_prompt(q))[-max(room, 1):]

    def encode(self, questions: list[SquadExample]) -> SquadBatch:
        targets = [self._ids(" " + q.answers[0] + "\n")[: self.max_length - 1] for q in questions]
        prompts = [self._prompt(q, self.max_length - len(t)) for q, t in zip(questions, targets)]
        rows = [p + t for p, t in zip(prompts, targets)]
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_id)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        target_mask = torch.zeros((len(rows), width), dtype=torch.bool)
        for i, (r, t) in enumerate(zip(rows, targets)):
            input_ids[i, width - len(r):] = torch.tensor(r)
            mask[i, width - len(r):] = 1
            target_mask[i, width - len(t):] = True
        return SquadBatch(input_ids, mask, target_mask, prompts, [q.answers for q in questions])

    def ce(self, model, batch: SquadBatch, reduce: bool = True):
        """The teacher-forced cross-entropy of the targets: the batch's token mean (or (sum, count))."""
        lengths = batch.attention_mask.sum(1).tolist()
        chunks = length_chunks(lengths, self.call_cost_tokens)
        parts = [self._ce_sum(model, batch if len(rows) == len(lengths) else batch.rows(rows)) for rows in chunks]
        total, count = sum(s for s, _ in parts), sum(c for _, c in parts)
        return total / count if reduce else (total, count)

    def _ce_sum(self, model, batch: SquadBatch) -> tuple[torch.Tensor, int]:
        """(summed NLL of the target tokens, their count) from one model call."""
        batch = batch.to(model_device(model))
        keep = int(batch.target_mask.sum(1).max()) + 1  # targets sit at the right end: no logits for the prompt
        positions = (batch.attention_mask.cumsum(-1) - 1).clamp_min(0)
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=positions,
                       use_cache=False, logits_to_keep=keep).logits.float()
        predicted, wanted = logits[:, :-1], batch.input_ids[:, -keep + 1:]
        mask = batch.target_mask[:, -keep + 1:]
        nll = F.cross_entropy(predicted.reshape(-1, predicted.shape[-1]), wanted.reshape(-1), reduction="none")
        return (nll * mask.reshape(-1)).sum(), int(mask.sum())

    def answers(self, model, batch: SquadBatch) -> list[str]:
        """The greedy answers at the model's current weights."""
        generated = greedy_decode(model, batch.prompts, self.max_new_tokens, self.stop, self.pad_id)
        return [answer_text(self.tok, g) for g in generated]

    def batch_loss(self, model, batch: SquadBatch, objective: str) -> torch.Tensor:
        """The loss a step's closure returns: L_ce, or −(mean F1) of the greedy answers (see the module)."""
        if objective == "ce":
            return self.ce(model, batch)
        if objective == "f1":
            f1 = [token_f1(a, g) for a, g in zip(self.answers(model, batch), batch.golds)]
            return torch.tensor(-sum(f1) / len(f1), dtype=torch.float64)
        raise ValueError(f"objective {objective!r}: squad takes {' or '.join(OBJECTIVES)}")

    @torch.no_grad()
    def evaluate(self, model, questions: list[SquadExample], progress: str | None = None) -> dict:
        """{"f1", "exact_match", "loss" (L_ce), "examples", "predictions"} over `questions`.

        Questions run in batches sorted by prompt length, so that a batch pads little.
        """
        was_training = model.training
        model.eval()
        order = sorted(range(len(questions)), key=lambda i: len(questions[i].context))
        answers: dict[int, str] = {}
        total, count = 0.0, 0
        starts = range(0, len(order), self.batch_size)
        for start in progress_bar(starts, desc=progress or "", enabled=progress is not None, leave=False):
            idx = order[start:start + self.batch_size]
            batch = self.encode([questions[i] for i in idx])
            s, c = self.ce(model, batch, reduce=False)
            total, count = total + float(s), count + c
            answers.update(zip(idx, self.answers(model, batch)))
        model.train(was_training)
        predictions = [answers[i] for i in range(len(questions))]
        scores = squad_scores(predictions, [q.answers for q in questions])
        return {**scores, "loss": total / count, "predictions": prediction_records(questions, predictions)}


def squad_run_splits(cfg, data_dir=None):
    """The (train, dev, test) questions of a `zoo finetune --task squad` run, as `Splits`.

    `--protocol mezo`: MeZO's 1,000 / 500 / 1,000; `kshot`: k train and k dev questions (a generation task
    has no classes to count k per) and 1,000 test. `--test-limit N` draws N test questions, as `zoo eval
    --task squad --limit N` does, so that both score the same ones (the first N of a draw of 1,000 are other
    questions: random.sample's picks depend on how many it draws). The test questions come from the test
    pool with seed 0 whatever the run's seed (zoo/generation/squad.py).
    """
    from ..tasks import Splits, data_dir as default_data_dir
    from .squad import load_squad, squad_splits

    articles = load_squad(default_data_dir(data_dir) / "squad" / "dev-v1.1.json")
    train, dev = (1000, 500) if cfg.protocol == "mezo" else (cfg.k, cfg.k)
    train_qs, dev_qs, test_qs = squad_splits(articles, cfg.seed, train=train, dev=dev, test=cfg.test_limit or 1000)
    return Splits(train_qs, dev_qs, test_qs, "the test pool: every third article of SQuAD v1.1 dev-v1.1.json")


def load_squad_model(cfg):
    """`Built` for a squad run: the causal LM with its tuning applied and a SquadScorer."""
    import logging

    from ..finetune.adapters import apply_tuning
    from ..finetune.build import Built, model_kind
    from ..models import load_causal_lm
    from ..placement import dtype_of

    if model_kind(cfg.model) != "causal-lm":
        raise ValueError(f"model {cfg.model!r}: squad generates its answers, which needs a causal LM")
    model, tok = load_causal_lm(cfg.model, dtype=dtype_of(cfg.dtype))
    if cfg.tuning == "blocks" and cfg.activation_cache:
        logging.getLogger("zoo").info("zoo: squad runs the whole model at every forward: the activation cache "
                                      "serves classification prompts only (generation extends each prompt)")
    model = apply_tuning(model, cfg.tuning, seed=cfg.seed, blocks=cfg.blocks, options=cfg.tuning_options)
    return Built(model, tok, SquadScorer(tok, cfg.max_length, cfg.max_new_tokens), cfg.mode, cfg.tuning)
