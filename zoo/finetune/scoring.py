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
(`logits_to_keep`); position ids follow the attention mask, so padding does
not shift positions (peft shifts them past a prefix's virtual tokens itself).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..tasks import Example, Template


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


class PromptScorer:
    """Scores the classes of examples under a template with a causal LM.

    Args:
        tokenizer: the model's tokenizer.
        template: context and candidate answers.
        max_length: longest sequence; contexts are truncated from the left.
        demonstrations: examples shown in context before each query (in-context learning).
    """

    def __init__(self, tokenizer, template: Template, max_length: int = 256,
                 demonstrations: list[Example] | None = None):
        self.tok = tokenizer
        self.template = template
        self.max_length = max_length
        self.prefix = "".join(template.demonstration(d) + "\n\n" for d in (demonstrations or []))
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

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
        """Scores [batch, classes]: mean log-likelihood of each candidate."""
        width = 1 if enc.shared_answers else enc.targets.shape[1]
        logits = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask,
                       position_ids=_position_ids(enc.attention_mask), logits_to_keep=width + 1).logits
        if enc.shared_answers:
            logp = torch.log_softmax(logits[:, -1].float(), -1)
            return logp.gather(1, enc.targets)
        # logits at position t predict token t+1: the answer tokens are predicted by the positions before them
        logp = torch.log_softmax(logits[:, -width - 1:-1].float(), -1)
        token_logp = logp.gather(2, enc.targets.unsqueeze(-1)).squeeze(-1)
        m = enc.target_mask.to(token_logp.dtype)
        per_row = (token_logp * m).sum(1) / m.sum(1)
        return per_row.view(-1, enc.num_classes)


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

    def __call__(self, model, enc: Encoded) -> torch.Tensor:
        out = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask)
        return (out.logits if hasattr(out, "logits") else out).float()
