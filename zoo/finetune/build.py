"""Assemble what a run needs: model, trainable parameters, and the scorer that turns examples into class scores."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..tasks import Example, Task
from .activation_cache import CachedBlocksScorer
from .adapters import apply_tuning
from .feature_cache import CachedHeadScorer
from .heads import PooledClassifier, zero_head
from .scoring import PromptScorer

MODES = ("prompt", "head")


@dataclass
class Built:
    model: nn.Module
    tokenizer: object
    scorer: object
    mode: str
    tuning: str

    def to(self, device) -> "Built":
        """Moves the model to `device`. On a GPU the prompt scorer then runs every batch as one call:
        splitting a batch into length-sorted chunks saves padded tokens, which a CPU pays for and a GPU
        barely does, at the price of launching the whole model once more per chunk."""
        self.model.to(device)
        if torch.device(device).type == "cuda" and hasattr(self.scorer, "call_cost_tokens"):
            self.scorer.call_cost_tokens = None
        return self


def model_kind(name: str) -> str:
    """"causal-lm" or "encoder", from the shipped table or the folder's config."""
    from transformers import AutoConfig

    from ..models import SHIPPED, local_folder

    if name in SHIPPED:
        return SHIPPED[name].kind
    config = AutoConfig.from_pretrained(local_folder(name))
    return "causal-lm" if any(a.endswith("ForCausalLM") for a in (config.architectures or [])) else "encoder"


def load(name: str, task: Task, mode: str = "prompt", tuning: str = "full", *, template: str | None = None,
         max_length: int = 256, dtype: torch.dtype = torch.float32, demonstrations: list[Example] | None = None,
         seed: int = 0, attn_implementation: str = "sdpa", blocks: int | None = None,
         activation_cache: bool = True, tuning_options: dict | None = None) -> Built:
    """Load a pretrained model by short name or folder and prepare it for `task`.

    `blocks` and `activation_cache`: for tuning "blocks" (see `prepare`).

    Use attn_implementation="eager" for Hessian-vector products (SDPA has no double backward on the CPU).
    """
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    from ..models import load_causal_lm, local_folder

    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    kind = model_kind(name)
    if mode == "prompt":
        if kind != "causal-lm":
            raise ValueError(f"model {name!r} is an encoder without a language-model head: use --mode head")
        model, tok = load_causal_lm(name, dtype=dtype, attn_implementation=attn_implementation)
        return prepare(model, tok, task, mode, tuning, template=template, max_length=max_length,
                       demonstrations=demonstrations, seed=seed, blocks=blocks, activation_cache=activation_cache,
                       tuning_options=tuning_options)
    folder = local_folder(name)
    tok = AutoTokenizer.from_pretrained(folder)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if kind == "causal-lm":
        model = AutoModelForSequenceClassification.from_pretrained(
            folder, num_labels=task.num_classes, dtype=dtype, pad_token_id=tok.pad_token_id,
            attn_implementation=attn_implementation)
    else:
        model = AutoModel.from_pretrained(folder, dtype=dtype, attn_implementation=attn_implementation)
    return prepare(model.eval(), tok, task, mode, tuning, max_length=max_length, seed=seed, blocks=blocks,
                   tuning_options=tuning_options)


def prepare(model: nn.Module, tokenizer, task: Task, mode: str, tuning: str, *, template: str | None = None,
            max_length: int = 256, demonstrations: list[Example] | None = None, seed: int = 0,
            blocks: int | None = None, activation_cache: bool = True, tuning_options: dict | None = None) -> Built:
    """Attach the head (head mode), apply the tuning, and build the scorer. Works on any in-memory model.

    With tuning "blocks" the top `blocks` transformer blocks train; in prompt mode the scorer then caches
    the activations that enter them (`activation_cache.py`) unless `activation_cache` is False.
    """
    if mode == "prompt":
        model = apply_tuning(model, tuning, seed=seed, blocks=blocks, options=tuning_options)
        if tuning == "prompt":  # soft prompts: zoo builds the prepended input itself (zoo/tuning/prompt)
            from ..tuning.prompt import PromptTuningScorer

            scorer = PromptTuningScorer(tokenizer, task.template(template), max_length, demonstrations)
        elif tuning == "blocks":
            scorer = CachedBlocksScorer(tokenizer, task.template(template), max_length, demonstrations,
                                        blocks=blocks, enabled=activation_cache)
        else:
            scorer = PromptScorer(tokenizer, task.template(template), max_length, demonstrations)
        return Built(model, tokenizer, scorer, mode, tuning)
    if hasattr(model, "score"):  # a *ForSequenceClassification decoder: its new head is `score`
        head = zero_head(model.score)
    elif hasattr(model, "classifier"):
        head = zero_head(model.classifier)
    else:
        model = PooledClassifier(model, task.num_classes)
        head = model.head
    model = apply_tuning(model, tuning, head=head, seed=seed, blocks=blocks, options=tuning_options)
    if tuning in ("lora", "prefix"):
        for name, p in model.named_parameters():  # peft freezes everything else, but a new head must train
            if any(p is q for q in head.parameters()):
                p.requires_grad_(True)
    return Built(model, tokenizer, CachedHeadScorer(tokenizer, max_length), mode, tuning)
