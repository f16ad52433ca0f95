"""Soft prompt tuning: trainable embeddings of virtual tokens placed before every input, through peft.

The 10 virtual tokens start as the input embeddings of 10 real vocabulary tokens drawn with the run's seed,
as ZO-Bench and peft's SAMPLE_VOCAB init do (a random start in embedding space is far from any token, and a
ZO run has few steps to come back from it). peft's PromptTuningConfig is built with inference_mode=False:
with it True, peft reads the prompt weights outside any module's forward (`get_prompt`), where the exact
perturbation's hooks cannot see them (zoo refuses that case: zoo/perturb/modes.py).
"""

from __future__ import annotations

import torch

VIRTUAL_TOKENS = 10


def add_prompt_tuning(model, seed: int = 0, tokens: int = VIRTUAL_TOKENS):
    """`model` (a causal LM) wrapped by peft for prompt tuning, its prompt initialised from real tokens."""
    import peft

    config = peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=tokens, inference_mode=False)
    wrapped = peft.get_peft_model(model, config)
    embedding = prompt_embedding(wrapped)
    vocab = wrapped.get_input_embeddings().weight
    ids = torch.randperm(vocab.shape[0], generator=torch.Generator().manual_seed(seed))[:tokens]
    with torch.no_grad():
        embedding.weight.copy_(vocab[ids].to(embedding.weight.dtype))
    return wrapped


def prompt_embedding(wrapped) -> torch.nn.Embedding:
    """The nn.Embedding that holds the active adapter's virtual-token embeddings."""
    return wrapped.prompt_encoder[wrapped.active_adapter].embedding
