"""Shared fixtures: tiny models built from configs (no hub, no downloads)."""

from __future__ import annotations

import os

import pytest
import torch

# Without a GPU, Triton kernels run under Triton's CPU interpreter in tests; the flag
# is read when a kernel is defined, so it is set before zoo imports its kernels.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
from torch import nn


def tiny_llama(dtype=torch.float32, seed=0, tie=True, vocab=128):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=tie, attn_implementation="eager",
    )
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # test fixture only: builds the same random model every time
    model = LlamaForCausalLM(cfg).to(dtype)
    torch.random.set_rng_state(gen_state)
    model.eval()
    return model


def lm_batch(seed=0, batch=4, seq=12, vocab=128):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, seq), generator=g)
    return {"input_ids": ids, "labels": ids.clone()}


class BlockMLP(nn.Module):
    """A small residual MLP with repeated blocks in a ModuleList (for LeZO)."""

    def __init__(self, d=12, hidden=20, blocks=3, dtype=torch.float64, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.inp = nn.Linear(6, d).to(dtype)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(d, hidden), nn.Tanh(), nn.Linear(hidden, d)) for _ in range(blocks))
        self.out = nn.Linear(d, 1).to(dtype)
        self.blocks.to(dtype)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=dtype) * 0.3)

    def forward(self, x):
        h = self.inp(x)
        for b in self.blocks:
            h = h + b(h)
        return self.out(h)


def regression_data(dtype=torch.float64, n=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g, dtype=dtype)
    y = torch.sin(x.sum(1, keepdim=True))
    return x, y


@pytest.fixture
def block_mlp():
    return BlockMLP()


def snapshot(model_or_params):
    params = model_or_params.parameters() if isinstance(model_or_params, nn.Module) else model_or_params
    return [p.detach().clone() for p in params]


def as_bits(t):
    return t.detach().contiguous().view({8: torch.int64, 4: torch.int32, 2: torch.int16}[t.element_size()])


def bits_equal(a, b):
    """Every tensor of a has the same dtype, shape and bits as its partner in b."""
    a, b = list(a), list(b)
    return len(a) == len(b) and all(x.dtype == y.dtype and torch.equal(as_bits(x), as_bits(y)) for x, y in zip(a, b))


def perturbing_estimators():
    """The registered estimators that move the weights to evaluate their points (all but forward-grad)."""
    import zoo

    return [n for n in zoo.available() if zoo.estimators.spec(n).factory.perturbs_weights]


#: Small hyper-parameters that make each registered estimator work on tiny models.
SMALL = {
    "subzero": {"rank": 4, "refresh": 2},
    "sparse-mezo": {"sparsity": 0.5},
    "lezo": {"active_fraction": 0.5},
    "n-spsa": {"n": 3},
    "hizoo": {"hessian_smooth": 1e-2},
    "lozo": {"interval": 2},
}


WORDS = ("good great fine nice bad awful poor sad movie film plot was it the a an , . ! ? review sentiment : "
         "answer positive negative neg pos yes no maybe suppose can we infer that because so he she").split()


def word_tokenizer(words=WORDS):
    """A word-level fast tokenizer (lower-cased, split on spaces and punctuation); unknown words map to [UNK]."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="[PAD]")


def sentiment_file(path, n=48, seed=0):
    """A TSV task a tiny model can learn: the sentiment word decides the label."""
    import random

    rng = random.Random(seed)
    pos, neg = ["good", "great", "fine", "nice"], ["bad", "awful", "poor", "sad"]
    rows = []
    for i in range(n):
        label = i % 2
        word = rng.choice(pos if label else neg)
        rows.append(f"the {rng.choice(['movie', 'film', 'plot'])} was {word} .\t{['neg', 'pos'][label]}")
    path.write_text("text\tlabel\n" + "\n".join(rows) + "\n")
    return path


def tiny_model_folder(tmp_path):
    """A saved tiny Llama with its word tokenizer, and a sentiment task file beside it."""
    folder = tmp_path / "tiny"
    tiny_llama().save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    return folder, sentiment_file(tmp_path / "s.tsv")


def without_masked_fusion(stream):
    """A new stream like `stream` (a PhiloxStream) whose fused masked sweep is off: the generic path."""

    class Unfused(type(stream)):
        def combine_masked_(self, *args) -> bool:
            return False

    return Unfused(stream.kernel)


def check_masked_sweep(backend: str, dtype: torch.dtype, device: str) -> None:
    """Sparse MeZO's three sweeps through `backend`'s fused masked kernel and through its unfused path.

    A different mask decision would move an element by 3.5 |z|, far beyond the few ulp the two
    paths' roundings may differ by; elements on the threshold (rounded to the dtype, as torch
    compares) stay out of the mask, those one step below it are in.
    """
    from zoo.perturb import DirectionField, DirectionKey, MagnitudeMask, ParamSlot, apply_, make_backend

    fused_backend = make_backend(backend)
    n = 2 * 4096 + 1001
    theta = torch.randn(n, generator=torch.Generator().manual_seed(4)).to(dtype).to(device)
    tau = float(theta.float().abs().quantile(0.5)) + 1e-4  # not representable in bfloat16
    tau_p = torch.tensor(tau, dtype=dtype)
    theta[200:210] = tau_p
    theta[210:220] = tau_p.float().nextafter(torch.tensor(0.0)).to(dtype) if dtype == torch.float32 else (
        tau_p - tau_p * 2**-8)
    results = []
    for stream in (fused_backend.stream, without_masked_fusion(fused_backend.stream)):
        mask = MagnitudeMask(sparsity=0.5)
        mask.thresholds[0] = tau
        field = DirectionField(stream=stream, magnitude=mask)
        slot = ParamSlot(0, theta.clone(), {"eps": 1.0})
        key = DirectionKey(12, 0)
        field.begin_step([slot], base_seed=0, step=0, step_seed=0, cache_masks=True)
        for coef, at_theta in ((0.5, True), (-1.0, False), (4.0, False)):
            apply_(fused_backend, field, [slot], [(key, {0: coef})], at_theta=at_theta)
        field.end_step()
        results.append(slot.param.clone())
    fused, unfused = results
    ulp = torch.finfo(dtype).eps * unfused.float().abs().clamp(min=1.0)
    assert ((fused.float() - unfused.float()).abs() <= 2 * ulp).all()
    moved = (fused != theta).cpu()
    assert not moved[200:210].any() and moved[210:220].all()
    assert 0.4 < moved.float().mean().item() < 0.6


def interrupt_at(monkeypatch, step: int):
    """Makes the fine-tuning loop raise KeyboardInterrupt (a user's Ctrl-C) when it reaches `step`;
    returns the function that undoes it."""
    from zoo.finetune import loop

    real = loop.minibatch

    def interrupting(n, b, seed, at):
        if at == step:
            raise KeyboardInterrupt
        return real(n, b, seed, at)

    monkeypatch.setattr(loop, "minibatch", interrupting)
    return lambda: monkeypatch.setattr(loop, "minibatch", real)


def stop_at(monkeypatch, step: int, *finetune_args):
    """Runs `finetune(*finetune_args)` as a user who presses Ctrl-C when it reaches `step`."""
    from zoo.finetune.loop import finetune

    undo = interrupt_at(monkeypatch, step)
    with pytest.raises(KeyboardInterrupt):
        finetune(*finetune_args, progress=False)
    undo()


@pytest.fixture(autouse=True)
def _own_cached_states():
    """Each test computes its cached activations: the process-wide store (zoo/finetune/state_store.py)
    would otherwise hand one test the states of another's identically seeded model."""
    from zoo.finetune.state_store import forget

    forget()
    yield
    forget()


def free_port() -> int:
    """A TCP port free on this machine, for a test's process group."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def small_mlp(inputs: int, hidden: int, classes: int = 3):
    """A seeded Linear-Tanh-Linear classifier, the same weights on every rank of a distributed test."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(inputs, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, classes))


def class_batches(steps: int, rows: int, inputs: int, classes: int = 3):
    """(x [steps, rows, inputs], y [steps, rows]) drawn from a fixed generator."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(steps, rows, inputs, generator=g), torch.randint(0, classes, (steps, rows), generator=g)


class RankDone(Exception):
    """A distributed test worker's case finished early, its results saved."""


def run_rank(body) -> None:
    """Runs a 2-rank test worker's `body()` in its process group, then leaves the process.

    Known open bug (issue 29 notes): a 2-rank run sometimes aborts in interpreter teardown with "terminate
    called without an active exception", or hangs there. One hang was caught with py-spy (2026-12-07): the
    main thread, holding the GIL, freed the last reference to the gloo process group (from a DDP reducer),
    and ~ProcessGroupGloo joined a worker thread that was itself waiting for the GIL to release an
    all-gather's Python tensors. Leaving with os._exit after destroy_process_group skips that teardown and
    keeps the check on what the ranks computed (the tests read every rank's results from files).
    """
    import os

    import torch.distributed as dist

    try:
        body()
    except RankDone:
        pass
    except BaseException:
        dist.destroy_process_group()
        raise
    dist.destroy_process_group()
    os._exit(0)


def benchmark_script(name: str):
    """benchmarks/<name>.py imported as a fresh module (the scripts are not a package), for its tests."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(f"{name}_under_test",
                                                  Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
