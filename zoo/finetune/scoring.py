"""Turning examples into per-class scores: candidate log-likelihoods or a classification head.

Prompt mode (MeZO section 3, following GPT-3 and LM-BFF): the score of class c
is the mean log-probability of candidate c's tokens after the template's
context,

    s_c = (1/|a_c|) Σ_t log p(a_c,t | context, a_c,<t),

and the loss is the cross-entropy of softmax(s) against the label. When every
candidate is one token and the same for all examples (SST-2's " great" /
" terrible"), a single sequence per example gives all scores at its last
position; otherwise each (example, candidate) pair is its own sequence.

Sequences are left-padded so that every answer ends at the last position,
which lets the model compute logits for the last few positions only
(`logits_to_keep`, as an index tensor); position ids follow the attention mask, so padding does
not shift positions (peft shifts them past a prefix's virtual tokens itself).

A random training batch mixes short and long examples, and padding every row
to the longest one about doubles the tokens on RTE (16 rows of 100 tokens on
average padded to 196). So the scorer runs a batch as length-sorted chunks,
each padded to its own longest row, splitting where that saves more padded
tokens than the fixed cost of one more model call (`length_chunks`). The
scores are the same function of the weights either way; only rounding differs.
Under `perturbation="exact"` a model call also re-perturbs every module it runs,
so a training closure prices each call one sweep over the trained weights higher
(`PromptScorer.for_exact_perturbation`).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch

from ..placement import model_device
from ..tasks import Example, Template

# A sweep over all of a model's weights, in tokens of that model's forward: 256 rounds up what
# benchmarks/dtype_compare.py measured for SmolLM2-135M on this CPU (237 in bfloat16, 101 in float32).
EXACT_SWEEP_TOKENS = 256


@dataclass
class Encoded:
    """A batch ready for the model. `targets[i, j]` are token ids scored at the kept positions."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    targets: torch.Tensor  # prompt: [rows, A] answer ids (right-aligned); head: unused
    target_mask: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    shared_answers: bool = False  # one row per example; targets are the C candidate ids

    @property
    def tokens(self) -> int:
        return int(self.attention_mask.sum())

    def to(self, device) -> Encoded:
        """The same batch on `device` (tensors already there are not copied)."""
        return dataclasses.replace(self, **{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)
                                            if torch.is_tensor(getattr(self, f.name))})


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows padded on the left to one length: (input_ids, attention_mask)."""
    length = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), length), pad_id)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, length - len(r):] = torch.tensor(r)
        mask[i, length - len(r):] = 1
    return input_ids, mask


def _position_ids(mask: torch.Tensor) -> torch.Tensor:
    return (mask.long().cumsum(-1) - 1).clamp_min(0)


def length_chunks(lengths: list[int], call_cost_tokens: int | None) -> list[list[int]]:
    """Row indices grouped into length-sorted chunks of least total cost.

    A chunk of rows padded to its longest row L costs rows x L tokens plus `call_cost_tokens`,
    the fixed cost of one model call counted in tokens. With the rows sorted by length the best
    partition is contiguous, so an O(n^2) dynamic programme over split points finds it exactly.

    Args:
        lengths: each row's unpadded length.
        call_cost_tokens: the cost of one more call; None keeps the batch whole.
    """
    if call_cost_tokens is None or len(lengths) < 2:
        return [list(range(len(lengths)))]
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    n = len(order)
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        longest = lengths[order[j - 1]]
        for i in range(j):
            cost = best[i] + (j - i) * longest + call_cost_tokens
            if cost < best[j]:
                best[j], cut[j] = cost, i
    chunks, j = [], n
    while j > 0:
        chunks.append(order[cut[j]:j])
        j = cut[j]
    return chunks[::-1]


def priced_for_exact(scorer, trained_fraction: float):
    """A copy of a chunking scorer whose model calls are priced for `perturbation="exact"`.

    Exact mode perturbs each module on entry and restores it on exit, so every model call draws z for
    the trained weights again: a call costs one more sweep over them. On this project's CPU a sweep
    over all of a model's weights costs about as much as 101 (float32) or 237 (bfloat16) tokens through
    that model, whatever its size, since both scale with the parameter count (docs/performance.md,
    *Precision*). Chunks then split a batch only where they save more than that; with few trained
    weights (LoRA, prefix) nothing changes.

    Args:
        scorer: has `call_cost_tokens` (None: it runs every batch as one call, and is returned as is).
        trained_fraction: trained parameters / all parameters of the model.
    """
    if scorer.call_cost_tokens is None:
        return scorer
    priced = copy.copy(scorer)
    priced.call_cost_tokens = scorer.call_cost_tokens + round(EXACT_SWEEP_TOKENS * trained_fraction)
    return priced


class PromptScorer:
    """Scores the classes of examples under a template with a causal LM.

    Args:
        tokenizer: the model's tokenizer.
        template: context and candidate answers.
        max_length: longest sequence; contexts are truncated from the left.
        demonstrations: examples shown in context before each query (in-context learning).
        call_cost_tokens: what one model call costs beyond its tokens, in tokens, for splitting a
            batch into length-sorted chunks (see `length_chunks`). The default suits a CPU, where
            a SmolLM2-135M call's fixed cost is small next to 64 tokens of compute; None runs
            every batch as one call, which is what a GPU wants (padding is cheap there, launches are not;
            `Built.to` sets it for a CUDA device).
    """

    def __init__(self, tokenizer, template: Template, max_length: int = 256,
                 demonstrations: list[Example] | None = None, call_cost_tokens: int | None = 64):
        if call_cost_tokens is not None and call_cost_tokens < 0:
            raise ValueError(f"call_cost_tokens must be >= 0 or None, got {call_cost_tokens}")
        self.tok = tokenizer
        self.template = template
        self.max_length = max_length
        self.call_cost_tokens = call_cost_tokens
        self.prefix = "".join(template.demonstration(d) + "\n\n" for d in (demonstrations or []))
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def for_exact_perturbation(self, trained_fraction: float) -> "PromptScorer":
        """This scorer for the closures of a ZO step with `perturbation="exact"` (see `priced_for_exact`)."""
        return priced_for_exact(self, trained_fraction)

    def _ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def encode(self, examples: list[Example]) -> Encoded:
        contexts = [self._ids(self.prefix + self.template.context(e)) for e in examples]
        answers = [[self._ids(a) for a in self.template.candidates(e)] for e in examples]
        num_classes = len(answers[0])
        first = answers[0]
        shared = all(len(a) == 1 for a in first) and all(a == first for a in answers)
        if shared:
            rows = [c[-self.max_length:] for c in contexts]
            targets = torch.tensor([[a[0] for a in first]] * len(examples))
            target_mask = torch.ones_like(targets, dtype=torch.bool)
        else:
            rows, tgt = [], []
            for ctx, cands in zip(contexts, answers):
                for a in cands:
                    keep = max(self.max_length - len(a), 1)
                    rows.append(ctx[-keep:] + a)
                    tgt.append(a)
            width = max(len(a) for a in tgt)
            targets = torch.full((len(tgt), width), self.pad_id)
            target_mask = torch.zeros((len(tgt), width), dtype=torch.bool)
            for i, a in enumerate(tgt):
                targets[i, width - len(a):] = torch.tensor(a)
                target_mask[i, width - len(a):] = True
        input_ids, mask = left_pad(rows, self.pad_id)
        labels = torch.tensor([e.label for e in examples])
        return Encoded(input_ids, mask, targets, target_mask, labels, num_classes, shared)

    def __call__(self, model, enc: Encoded) -> torch.Tensor:
        """Scores [batch, classes]: mean log-likelihood of each candidate, on the model's device."""
        enc = enc.to(model_device(model))
        lengths = enc.attention_mask.sum(1).tolist()
        chunks = length_chunks(lengths, self.call_cost_tokens)
        if len(chunks) == 1:
            rows = self._row_scores(model, enc.input_ids, enc.attention_mask, enc.targets, enc.target_mask,
                                    enc.shared_answers)
        else:
            parts, where = [], []
            for idx in chunks:
                longest = max(lengths[i] for i in idx)
                at = torch.tensor(idx, device=enc.input_ids.device)
                parts.append(self._row_scores(model, enc.input_ids[at, -longest:],
                                              enc.attention_mask[at, -longest:], enc.targets[at],
                                              enc.target_mask[at], enc.shared_answers))
                where.append(at)
            rows = torch.cat(parts)[torch.argsort(torch.cat(where))]  # back to the batch's order
        return rows if enc.shared_answers else rows.view(-1, enc.num_classes)

    def _logits(self, model, input_ids, attention_mask, position_ids, keep) -> torch.Tensor:
        """The model's logits at positions `keep` (a subclass may compute them another way)."""
        return model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                     logits_to_keep=keep).logits

    def _row_scores(self, model, input_ids, attention_mask, targets, target_mask, shared: bool) -> torch.Tensor:
        """[rows, classes] when the answers are shared; else [rows], each row's own candidate."""
        width = 1 if shared else int(target_mask.sum(1).max())  # the longest answer in these rows
        if not shared:  # the targets are right-aligned
            targets, target_mask = targets[:, -width:], target_mask[:, -width:]
        # the kept positions as an index tensor, not the int width + 1: indexing copies the hidden states
        # into a contiguous [rows, width + 1, hidden] block, which the LM head runs as one matrix product.
        # An int slices a strided view; where the head's weight needs no grad (LoRA, prefix) torch's
        # matmul then runs it as a batched product over a copy of the whole vocabulary matrix per row:
        # on SST-2 with SmolLM2-135M, 1.2x slower LoRA forwards in float32 and 2.9x in bfloat16
        # (benchmarks/head_slice_speed.py, docs/performance.md).
        length = input_ids.shape[1]
        # shared one-token answers read the last position only: the LM head (49k x 576 on SmolLM2) runs once
        # a row, not twice
        first = length - 1 if shared else length - width - 1
        keep = torch.arange(first, length, device=input_ids.device)
        logits = self._logits(model, input_ids, attention_mask, _position_ids(attention_mask), keep)
        if shared:
            logp = torch.log_softmax(logits[:, -1].float(), -1)
            return logp.gather(1, targets)
        # logits at position t predict token t+1: the answer tokens are predicted by the positions before them
        logp = torch.log_softmax(logits[:, -width - 1:-1].float(), -1)
        token_logp = logp.gather(2, targets.unsqueeze(-1)).squeeze(-1)
        m = target_mask.to(token_logp.dtype)
        return (token_logp * m).sum(1) / m.sum(1)


class HeadScorer:
    """Scores from a classification head over the raw text (no prompt)."""

    def __init__(self, tokenizer, max_length: int = 256):
        self.tok = tokenizer
        self.max_length = max_length

    def encode(self, examples: list[Example]) -> Encoded:
        texts = [e.text for e in examples]
        pairs = [e.text_b for e in examples] if examples[0].text_b is not None else None
        batch = self.tok(texts, pairs, padding=True, truncation=True, max_length=self.max_length,
                         return_tensors="pt")
        labels = torch.tensor([e.label for e in examples])
        empty = torch.zeros(0)
        return Encoded(batch["input_ids"], batch["attention_mask"], empty, empty, labels, 0)

    def for_exact_perturbation(self, trained_fraction: float) -> "HeadScorer":
        """Itself: a head scorer runs every batch as one call."""
        return self

    def __call__(self, model, enc: Encoded) -> torch.Tensor:
        enc = enc.to(model_device(model))
        out = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask)
        return (out.logits if hasattr(out, "logits") else out).float()
