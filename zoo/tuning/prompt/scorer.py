"""Scoring under a soft prompt with left-padded batches, as zoo's other prompt scorers do.

peft's own forward for prompt tuning prepends the virtual tokens and drops the position ids (it warns
"Position ids are not supported"), so a left-padded row would get other positions than the same row alone,
and `logits_to_keep` indices would point 10 positions early. This scorer builds the input itself: the
prompt embeddings (through the prompt encoder's forward, so that the exact perturbation sees them), then the
row's token embeddings, the attention mask extended by ones, and positions that follow the mask; the kept
positions shift by the prompt's length. A row then scores the same padded or alone, up to rounding.
"""

from __future__ import annotations

import torch

from ...finetune.scoring import PromptScorer


class PromptTuningScorer(PromptScorer):
    def counted_module(self, model):
        """The module each scoring call runs once (the row counter of `zoo finetune` hooks it)."""
        return model.get_base_model()

    def _logits(self, model, input_ids, attention_mask, position_ids, keep) -> torch.Tensor:
        adapter = model.active_adapter
        tokens = model.peft_config[adapter].num_virtual_tokens
        rows = input_ids.shape[0]
        index = torch.arange(tokens, device=input_ids.device).expand(rows, -1)
        prompts = model.prompt_encoder[adapter](index)
        embeds = model.get_input_embeddings()(input_ids)
        embeds = torch.cat([prompts.to(embeds.dtype), embeds], dim=1)
        mask = torch.cat([attention_mask.new_ones(rows, tokens), attention_mask], dim=1)
        positions = (mask.long().cumsum(-1) - 1).clamp_min(0)
        return model.get_base_model()(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                                      logits_to_keep=keep + tokens).logits
