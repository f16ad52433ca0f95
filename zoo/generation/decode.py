"""Batched greedy decoding with the KV cache, stopping at a newline or EOS.

The prompts are left-padded into one batch; one forward over the prompts fills the cache, then each
new token costs a forward over one position per row. A row stops at its first token that decodes to
text with a newline, or at EOS; a row that reaches `max_new_tokens` keeps what it produced. Rows that
stopped still ride along in the batch (their tokens are ignored), so the batch keeps one shape.
`use_cache=False` recomputes the whole sequence at every token: the same tokens, for tests and for
measuring what the cache saves.
"""

from __future__ import annotations

import functools
import inspect

import torch


@functools.lru_cache(maxsize=8)
def _newline_ids(tokenizer) -> frozenset[int]:
    return frozenset(i for i in range(len(tokenizer)) if "\n" in tokenizer.decode([i]))


def stop_token_ids(tokenizer) -> frozenset[int]:
    """The ids that end an answer: every token whose text holds a newline, and EOS."""
    ids = set(_newline_ids(tokenizer))
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return frozenset(ids)


def _cache_of(out):
    """The KV cache a forward returned: `cache` since transformers 5, `past_key_values` before."""
    return out["cache"] if "cache" in out else out["past_key_values"]


def _cache_argument(model) -> str:
    # peft's wrappers take **kwargs and hand them on, so their signature cannot say: ask the model inside
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


@torch.no_grad()
def greedy_decode(model, prompts: list[list[int]], max_new_tokens: int, stop_ids: frozenset[int], pad_id: int,
                  use_cache: bool = True) -> list[list[int]]:
    """Each prompt's greedy continuation (token ids, the stop token included where one came).

    Raises:
        ValueError: for no prompts, an empty prompt or max_new_tokens < 1.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("greedy_decode: needs at least one prompt, none of them empty")
    if max_new_tokens < 1:
        raise ValueError(f"greedy_decode: max_new_tokens must be at least 1, got {max_new_tokens}")
    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    out = model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask), use_cache=use_cache,
                logits_to_keep=1)
    cache_arg = _cache_argument(model)
    generated: list[list[int]] = [[] for _ in prompts]
    done = [False] * len(prompts)
    for t in range(max_new_tokens):
        nxt = out.logits[:, -1].argmax(-1)
        for i, token in enumerate(nxt.tolist()):
            if not done[i]:
                generated[i].append(token)
                done[i] = token in stop_ids
        if all(done) or t == max_new_tokens - 1:
            break
        mask = torch.cat([mask, mask.new_ones(len(prompts), 1)], dim=1)
        if use_cache:
            out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=_positions(mask)[:, -1:],
                        use_cache=True, logits_to_keep=1, **{cache_arg: _cache_of(out)})
        else:
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            out = model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask), use_cache=False,
                        logits_to_keep=1)
    return generated


def answer_text(tokenizer, tokens: list[int]) -> str:
    """The answer a continuation gives: its text up to the first newline, stripped."""
    return tokenizer.decode(tokens, skip_special_tokens=True).split("\n", 1)[0].strip()
