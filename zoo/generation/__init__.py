"""Generation tasks: SQuAD v1.1 with its official answer metrics, and batched greedy decoding."""

from .decode import greedy_decode, stop_token_ids
from .metrics import exact_match, normalize_answer, squad_scores, token_f1
from .squad import SquadExample, load_squad, pools, squad_splits, squad_prompt

__all__ = ["SquadExample", "exact_match", "greedy_decode", "load_squad", "normalize_answer", "pools",
           "squad_prompt", "squad_scores", "squad_splits", "stop_token_ids", "token_f1"]
