"""Models and batches for benchmarks: real configs, random weights (weights do not travel)."""

from __future__ import annotations

import torch


def smollm2_135m_config():
    """The SmolLM2-135M architecture (HuggingFaceTB/SmolLM2-135M-Instruct config)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=100000.0,
        tie_word_embeddings=True, attn_implementation="sdpa",
    )


def random_model(config, dtype=torch.float32, device="cpu", seed=0):
    from transformers import AutoModelForCausalLM

    state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # benchmark fixture: the same random weights every run
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    torch.random.set_rng_state(state)
    return model.eval()


def random_batch(vocab, batch=16, seq=64, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, seq), generator=g).to(device)
    return {"input_ids": ids, "labels": ids}
