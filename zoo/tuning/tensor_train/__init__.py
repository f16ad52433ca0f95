"""Tensor-train adapters (AdaZeta, arXiv 2406.18060): config, the TT linear map, and their placement."""

from .adapter import TTAdapter, add_tt_adapters
from .config import TTAdapterConfig, factorize
from .tt_linear import TTLinear

__all__ = ["TTAdapter", "TTAdapterConfig", "TTLinear", "add_tt_adapters", "factorize"]
