"""Tasks: built-in loaders for the few-shot benchmarks, users' own files, templates, sampling."""

from .catalog import BUILTIN, Task, data_dir, get_task, user_task
from .example import Example
from .readers import TaskError
from .sampling import Splits, few_shot, held_out, mezo_split, test_source
from .templates import TEMPLATES, Template

__all__ = ["BUILTIN", "Example", "Splits", "TEMPLATES", "Task", "TaskError", "Template", "data_dir",
           "few_shot", "get_task", "held_out", "mezo_split", "test_source", "user_task", "available"]


def available() -> list[str]:
    return list(BUILTIN)
