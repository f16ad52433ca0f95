"""Which parameters train: full, head only, the top K blocks, LoRA or prefix tuning (through `peft`), or
AdaZeta's tensor-train adapters (zoo/tuning/tensor_train).

MeZO (section 3.2, appendix E.5) runs ZO on LoRA (r=8, alpha=16 on the query
and value projections) and on prefix tuning (5 virtual tokens per layer,
initialised from the keys and values of real tokens, which it found matters
for ZO). ZO estimators simply train whatever `requires_grad` marks.
"""

from __future__ import annotations

import torch

TUNINGS = ("full", "head", "blocks", "lora", "prefix", "prompt", "tt-adapter", "sparse-delta")


def transformer_blocks(model) -> torch.nn.ModuleList:
    """The blocks LeZO's layer subsets draw from (`repeated_blocks`), or a ValueError where there are none."""
    from ..estimators.base import repeated_blocks

    blocks = repeated_blocks(model)
    if blocks is None:
        raise ValueError(f"tuning 'blocks': {type(model).__name__} has no list of transformer blocks")
    return blocks


def final_norm(model) -> torch.nn.Module | None:
    """The norm after the last block (Llama's model.norm), where the model has one."""
    inner = getattr(model, "model", None)
    norm = getattr(inner, "norm", None) if inner is not None else None
    return norm if isinstance(norm, torch.nn.Module) else None


def apply_tuning(model, tuning: str, *, head: torch.nn.Module | None = None, lora_r: int = 8,
                 lora_alpha: int = 16, prefix_tokens: int = 5, seed: int = 0, blocks: int | None = None,
                 options: dict | None = None):
    """Mark the trainable parameters; returns the model (wrapped by peft for lora/prefix).

    `blocks`: with tuning "blocks", how many of the top transformer blocks train (with the final norm
    and, in head mode, the new head); the embeddings and the LM head stay frozen, tied or not.
    `options`: with tuning "sparse-delta", the SparseDeltaConfig's fields (density, regrowth, every, drop, probes).
    """
    if tuning not in TUNINGS:
        raise ValueError(f"unknown tuning {tuning!r}: use one of {', '.join(TUNINGS)}")
    if tuning != "blocks" and blocks is not None:
        raise ValueError(f"blocks: only for tuning 'blocks', not {tuning!r}")
    if options and tuning != "sparse-delta":
        raise ValueError(f"tuning options {sorted(options)}: only for tuning 'sparse-delta', not {tuning!r}")
    if tuning == "full":
        model.requires_grad_(True)
        return model
    if tuning == "blocks":
        layers = transformer_blocks(model)
        if isinstance(blocks, bool) or not isinstance(blocks, int) or not 1 <= blocks <= len(layers):
            raise ValueError(f"blocks: tuning 'blocks' needs the number of top blocks to train, 1 to "
                             f"{len(layers)} for this model, got {blocks!r}")
        model.requires_grad_(False)
        for block in layers[len(layers) - blocks:]:
            block.requires_grad_(True)
        norm = final_norm(model)
        if norm is not None:
            norm.requires_grad_(True)
        if head is not None:
            head.requires_grad_(True)
        return model
    if tuning == "tt-adapter":  # AdaZeta's tensor-train adapters (zoo/tuning/tensor_train), not through peft
        from ..tuning.tensor_train import TTAdapterConfig, add_tt_adapters

        add_tt_adapters(model, transformer_blocks(model), TTAdapterConfig(), seed=seed)
        if head is not None:
            head.requires_grad_(True)
        return model
    if tuning == "sparse-delta":  # SpIEL's sparse deltas (zoo/tuning/sparse_delta), not through peft
        from ..tuning.sparse_delta import SparseDeltaConfig, add_sparse_deltas

        try:
            config = SparseDeltaConfig(**(options or {}))
        except TypeError as e:
            raise ValueError(f"tuning 'sparse-delta': {e}") from None
        add_sparse_deltas(model, transformer_blocks(model), config, seed=seed)
        if head is not None:
            head.requires_grad_(True)
        return model
    if tuning == "head":
        if head is None:
            raise ValueError("tuning='head' needs a classification head (use --head mode)")
        model.requires_grad_(False)
        head.requires_grad_(True)
        return model
    try:
        import peft
    except ImportError as e:
        raise ValueError(f"tuning={tuning!r} needs peft: pip install peft") from e
    if head is not None and not hasattr(model, "config"):  # zoo's PooledClassifier: a bare encoder, a new head
        if tuning == "prefix":
            raise ValueError("tuning 'prefix' with mode 'head' on an encoder: peft's prefix tuning needs a model "
                             "with a task head of its own; use --tuning lora, full or head")
        model.encoder = _lora(peft, model.encoder, "FEATURE_EXTRACTION", lora_r, lora_alpha, seed)
        return model
    if tuning == "prompt":
        if head is not None:
            raise ValueError("tuning 'prompt': soft prompts are scored by the LM's own answers; use --mode prompt")
        from ..tuning.prompt import add_prompt_tuning

        return add_prompt_tuning(model, seed=seed)
    task_type = "CAUSAL_LM" if head is None else "SEQ_CLS"
    if tuning == "lora":
        return _lora(peft, model, task_type, lora_r, lora_alpha, seed)
    config = peft.PrefixTuningConfig(num_virtual_tokens=prefix_tokens, task_type=task_type)
    wrapped = peft.get_peft_model(model, config)
    _init_prefix_from_real_tokens(wrapped, seed)
    return wrapped


def _lora(peft, model, task_type: str, r: int, alpha: int, seed: int):
    """LoRA on the query and value projections (MeZO's setting), through peft."""
    targets = [n for n in ("q_proj", "v_proj", "query", "value") if any(m.endswith(n) for m, _ in model.named_modules())]
    config = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets, task_type=task_type)
    # LoRA's A is initialised randomly: seed it locally so runs repeat without touching the global RNG
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return peft.get_peft_model(model, config)


@torch.no_grad()
def _init_prefix_from_real_tokens(wrapped, seed: int) -> None:
    """Set the prefix to the keys and values that random real tokens produce (MeZO's init_by_real_act)."""
    cfg = wrapped.peft_config[wrapped.active_adapter]
    embedding = wrapped.prompt_encoder[wrapped.active_adapter].embedding.weight
    base = wrapped.get_base_model()
    gen = torch.Generator().manual_seed(seed)
    vocab = base.config.vocab_size
    ids = torch.randint(0, vocab, (1, cfg.num_virtual_tokens), generator=gen)
    out = base(input_ids=ids, use_cache=True)
    # transformers 5 names the cache `cache` and deprecates `past_key_values` (gone in 5.40); older ones lack `cache`
    cache = out["cache"] if "cache" in out else out.past_key_values
    per_layer = [(cache.layers[i].keys, cache.layers[i].values) for i in range(cfg.num_layers)]
    # peft views each row as [layers*2, kv_heads, head_dim], keys before values, layer by layer
    kv = torch.stack([t[0] for pair in per_layer for t in pair])  # [layers*2, kv_heads, tokens, head_dim]
    rows = kv.permute(2, 0, 1, 3).reshape(cfg.num_virtual_tokens, -1)
    if rows.shape != embedding.shape:
        raise ValueError(f"prefix layout {tuple(embedding.shape)} does not match the model's cache {tuple(rows.shape)}")
    embedding.copy_(rows.to(embedding.dtype))


def trainable_parameters(model) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]
