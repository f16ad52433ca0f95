"""Top-block runs score on cached activations: the frozen lower blocks run once per distinct example.

With tuning "blocks" only the top K transformer blocks (and the final norm) train. The hidden states
that enter the lowest trained block are then a fixed function of each example, like the pooled
features of a head-only run (feature_cache.py): `CachedBlocksScorer` computes them once per example,
alone (a batch of one, no padding, so they depend on its tokens only and a resumed run retraces the
uninterrupted one), and every later forward runs the top K blocks, the norm and the LM head alone.

The cached states go in as `inputs_embeds` to a view of the decoder that holds only its top blocks:
for a RoPE decoder (Llama, Mistral, Qwen2: positions enter through the rotary embedding at every
block, none is added to the input) that computes the same function as the whole model, so the scores
equal the full forward's up to float32 rounding. Supported: causal LMs with `model.embed_tokens`,
`model.layers`, `model.norm`, `model.rotary_emb` and `lm_head`, in prompt mode. Elsewhere (learned
absolute positions, as in GPT-2; encoders; peft-wrapped models) it scores with the full forward and
says why once on the `zoo` logger.

The cache follows the frozen weights: it is emptied when any of them changes (new storage, or an
in-place change: torch's version counter), and bypassed while one of them requires grad or the model
is in train mode. The states live in the process's store under a hash of those weights' bits
(state_store.py), so a benchmark worker's later runs on the same model reuse them.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from ..placement import model_device
from .scoring import PromptScorer
from .state_store import states_for

logger = logging.getLogger("zoo")


def unsupported_reason(model) -> str | None:
    """Why the activation cache cannot serve `model`, or None where it can."""
    inner = getattr(model, "model", None)
    missing = [n for n in ("embed_tokens", "layers", "norm", "rotary_emb") if not hasattr(inner, n)]
    if inner is None or missing or not hasattr(model, "lm_head"):
        return (f"{type(model).__name__} is not a RoPE decoder with model.embed_tokens/layers/norm/rotary_emb "
                "and lm_head")
    if not isinstance(inner.layers, nn.ModuleList):
        return "its blocks are not a ModuleList"
    return None


def _view(inner: nn.Module, layers, norm: nn.Module) -> nn.Module:
    """`inner` (the decoder) with other blocks and final norm: the same modules, not copies."""
    view = copy.copy(inner)
    view._modules = {**inner._modules, "layers": nn.ModuleList(layers), "norm": norm}
    return view


class CachedBlocksScorer(PromptScorer):
    """A `PromptScorer` whose model calls run only the trained top blocks, on cached lower activations.

    Args:
        blocks: the number of top blocks that train (`--blocks K`).
        enabled: False turns the cache off (`--no-activation-cache`): every call runs the whole model.
        (the rest as PromptScorer)
    """

    def __init__(self, tokenizer, template, max_length: int = 256, demonstrations=None,
                 call_cost_tokens: int | None = 64, *, blocks: int, enabled: bool = True):
        super().__init__(tokenizer, template, max_length, demonstrations, call_cost_tokens)
        self.blocks, self.enabled = blocks, enabled
        self._states: dict[bytes, torch.Tensor] = {}
        self._stamp: tuple | None = None
        self._owner = None
        self._warned = False
        self.computed_rows = 0  # rows the lower blocks ran: the cache's misses

    def counted_module(self, model) -> nn.Module:
        """The module every scoring call runs once, for counting rows: the LM head. The cached path calls
        the top blocks and the head directly, never `model` itself."""
        return getattr(model, "lm_head", model)

    def _frozen(self, model) -> list[torch.Tensor] | None:
        """The weights below the trained blocks, where the cache may serve `model`; else None."""
        if not self.enabled or model.training:
            return None
        why = unsupported_reason(model)
        if why is None:
            inner = model.model
            lower = [*inner.embed_tokens.parameters(),
                     *(p for b in inner.layers[:len(inner.layers) - self.blocks] for p in b.parameters())]
            if any(p.requires_grad for p in lower):
                why = "a weight below the top blocks trains"
            else:
                return lower
        if not self._warned:
            logger.warning("zoo: the activation cache is off (%s): every forward runs the whole model", why)
            self._warned = True
        return None

    def _logits(self, model, input_ids, attention_mask, position_ids, keep):
        lower = self._frozen(model)
        if lower is None:
            return super()._logits(model, input_ids, attention_mask, position_ids, keep)
        inner = model.model
        split = len(inner.layers) - self.blocks
        stamp = tuple((p.data_ptr(), p._version) for p in lower)
        if self._owner is not inner or stamp != self._stamp:
            self._states = states_for(f"blocks:{split}", lower)
            self._owner, self._stamp = inner, stamp
        states = self._lower_states(inner, split, input_ids, attention_mask)
        top = _view(inner, inner.layers[split:], inner.norm)
        hidden = top(inputs_embeds=states, attention_mask=attention_mask, position_ids=position_ids,
                     use_cache=False).last_hidden_state
        return model.lm_head(hidden[:, keep])

    @torch.no_grad()
    def _lower_states(self, inner, split: int, input_ids, attention_mask) -> torch.Tensor:
        """[rows, length, hidden]: what enters block `split`, each row computed alone and left-padded
        with zeros (padded positions are masked out of attention, as in the full forward)."""
        width = input_ids.shape[1]
        rows = []
        lower = None
        for ids, mask in zip(input_ids, attention_mask):
            tokens = ids[mask.bool()]
            key = tokens.cpu().numpy().tobytes()
            if key not in self._states:
                if lower is None:
                    lower = _view(inner, inner.layers[:split], nn.Identity())
                one = tokens.unsqueeze(0)
                self._states[key] = lower(input_ids=one, attention_mask=torch.ones_like(one),
                                          use_cache=False).last_hidden_state[0]
                self.computed_rows += 1
            rows.append(self._states[key])
        out = rows[0].new_zeros((len(rows), width, rows[0].shape[-1]))
        for i, r in enumerate(rows):
            out[i, width - r.shape[0]:] = r
        return out.to(model_device(inner))

    def cached_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._states.values())
