"""Prompt tuning (Lester et al. 2021; CPM-2, arXiv 2106.10715) through peft, with zoo's scorer for it."""

from .scorer import PromptTuningScorer
from .setup import VIRTUAL_TOKENS, add_prompt_tuning

__all__ = ["PromptTuningScorer", "VIRTUAL_TOKENS", "add_prompt_tuning"]
