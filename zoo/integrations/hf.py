"""`ZOTrainer`: zoo's estimators inside the Hugging Face `Trainer`, through its public methods only.

Every public ZO trainer so far overrides the Trainer's private `_inner_training_loop` (MeZO pins
transformers 4.28 for it, ZO2 re-copied 4.51's). This one overrides three public methods and keeps
the loop, logging, evaluation, checkpointing, schedulers and callbacks as the Trainer has them:

- `get_batch_samples`, which the loop calls once per optimizer step for that step's
  `gradient_accumulation_steps` micro-batches: they are kept, so that the step sees all of them;
- `training_step`, called per micro-batch: at the first micro-batch of a window the estimator takes
  its whole step, each of its losses the mean over every micro-batch of the window (weighted by their
  sizes) at one fixed direction, so that one ZO step's two losses cover the whole effective batch;
  it returns the step's mean loss there and zeros for the window's other micro-batches, whose sum is
  what the Trainer logs per step (as its own per-micro-batch loss / accumulation steps sums to);
- `create_optimizer`, which builds the registered estimator over the trainable parameters (weight
  decay on matrices only, by shape, not by parameter-name strings) and hands the Trainer a
  `StepTakenOptimizer`: the Trainer's own `optimizer.step()` after the window then has nothing left
  to do, and its learning-rate scheduler drives the estimator's `param_groups` as it would torch's.

The estimator's `state_dict` is the Trainer's `optimizer.pt`, so `train(resume_from_checkpoint=...)`
continues with the same step counter and seed: the same directions, bit for bit.

Losses come from `compute_loss`, so a subclass that overrides it (a non-differentiable objective, say)
trains on that. Oldest transformers supported: 4.46, whose loop first fetches a step's micro-batches
through `get_batch_samples`; the tests run the version this project installs.
"""

from __future__ import annotations

import torch
import transformers
from torch import nn

from .. import estimators
from ..finetune.step import window_closure, zo_step

#: The oldest transformers whose training loop calls the public methods this trainer overrides.
OLDEST_TRANSFORMERS = "4.46"


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".")[:2] if x.isdigit())


class StepTakenOptimizer(torch.optim.Optimizer):
    """The Trainer's view of a zoo estimator whose step already ran inside `training_step`.

    It shares the estimator's `param_groups` and `state` (so learning-rate schedulers move the
    estimator's lr), saves and loads the estimator's `state_dict`, and takes a step only when given
    a closure: the loop's own `optimizer.step()` after a window is then a no-op.
    """

    def __init__(self, estimator: torch.optim.Optimizer):  # noqa: super().__init__ would copy the groups
        self.estimator = estimator
        self.defaults = estimator.defaults
        self._optimizer_step_pre_hooks = estimator._optimizer_step_pre_hooks
        self._optimizer_step_post_hooks = estimator._optimizer_step_post_hooks
        self._optimizer_state_dict_pre_hooks = estimator._optimizer_state_dict_pre_hooks
        self._optimizer_state_dict_post_hooks = estimator._optimizer_state_dict_post_hooks
        self._optimizer_load_state_dict_pre_hooks = estimator._optimizer_load_state_dict_pre_hooks
        self._optimizer_load_state_dict_post_hooks = estimator._optimizer_load_state_dict_post_hooks

    @property
    def param_groups(self):
        return self.estimator.param_groups

    @param_groups.setter
    def param_groups(self, groups):
        self.estimator.param_groups = groups

    @property
    def state(self):
        return self.estimator.state

    @state.setter
    def state(self, state):
        self.estimator.state = state

    def step(self, closure=None):
        return None if closure is None else self.estimator.step(closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Nothing to zero: ZO steps compute no gradients."""

    def state_dict(self):
        return self.estimator.state_dict()

    def load_state_dict(self, state_dict) -> None:
        self.estimator.load_state_dict(state_dict)

    def __repr__(self) -> str:
        return f"StepTakenOptimizer({self.estimator!r})"


class ZOTrainer(transformers.Trainer):
    """A `transformers.Trainer` that trains with a registered zoo estimator, forward passes only.

    Args:
        estimator: a name from `zoo.available()` (default "mezo-sgd").
        estimator_options: its options beyond lr, weight decay and seed (eps, n, perturbation, ...).
        (the rest as `transformers.Trainer`)

    From `TrainingArguments` it takes `learning_rate`, `weight_decay`, `seed` (the estimator's seed:
    its directions) and, through the Trainer's own loop, the scheduler and warmup, `max_steps`,
    logging, saving, evaluation, `report_to` and `gradient_accumulation_steps`.

    Example:
        >>> trainer = ZOTrainer(model, TrainingArguments("out", learning_rate=1e-6, max_steps=100),
        ...                     train_dataset=ds, estimator="mezo-sgd", estimator_options={"eps": 1e-3})
        >>> trainer.train()
    """

    def __init__(self, *args, estimator: str = "mezo-sgd", estimator_options: dict | None = None, **kwargs):
        if _version_tuple(transformers.__version__) < _version_tuple(OLDEST_TRANSFORMERS):
            raise RuntimeError(f"ZOTrainer needs transformers >= {OLDEST_TRANSFORMERS}, found {transformers.__version__}")
        spec = estimators.spec(estimator)  # an unknown name fails here, before any model work
        self.estimator_name = spec.name
        self.estimator_options = dict(estimator_options or {})
        taken = {"lr", "weight_decay", "seed"} & set(self.estimator_options)
        if taken:
            raise ValueError(f"estimator_options: {', '.join(sorted(taken))} come from TrainingArguments "
                             "(learning_rate, weight_decay, seed)")
        self._window: list | None = None
        self.last_record: list[float] = []  # the last step's query values, as `estimator.replay` takes them
        super().__init__(*args, **kwargs)
        if self.args.max_grad_norm:
            self.args.max_grad_norm = 0.0  # no gradients to clip; the Trainer would compute a norm of nothing

    # -- the optimizer -------------------------------------------------------------------------------
    def create_optimizer(self, model=None):
        if self.optimizer is None:
            model = model if model is not None else self.model
            trained = [p for p in model.parameters() if p.requires_grad]
            if not trained:
                raise ValueError("ZOTrainer: the model has no trainable parameters")
            decay = self.args.weight_decay
            groups = [{"params": [p for p in trained if p.ndim >= 2], "weight_decay": decay},
                      {"params": [p for p in trained if p.ndim < 2], "weight_decay": 0.0}]
            groups = [g for g in groups if g["params"]]
            zo = estimators.get(self.estimator_name, groups, lr=self.args.learning_rate, seed=self.args.seed,
                                module=model, **self.estimator_options)
            self.optimizer = StepTakenOptimizer(zo)
        return self.optimizer

    @property
    def estimator(self):
        """The zoo estimator the Trainer's optimizer wraps (None before training starts)."""
        opt = self.optimizer
        while opt is not None and not isinstance(opt, StepTakenOptimizer):
            opt = getattr(opt, "optimizer", None)  # accelerate's AcceleratedOptimizer wraps it
        return None if opt is None else opt.estimator

    # -- the step ------------------------------------------------------------------------------------
    def get_batch_samples(self, epoch_iterator, num_batches, device):
        batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        self._window = list(batches)
        return batches, num_items

    def training_step(self, model: nn.Module, inputs, num_items_in_batch=None) -> torch.Tensor:
        device = self.args.device
        if self._window is None:  # the window's step is taken: its other micro-batches add nothing
            return torch.zeros((), device=device)
        window, self._window = self._window, None
        model.eval()  # dropout off: a ZO difference must see the same function at both points
        prepared = [self._prepare_inputs(b) for b in window]
        closures = [lambda b=b: self.compute_loss(model, b).detach().double() for b in prepared]
        loss, self.last_record = zo_step(self.estimator, window_closure(closures, [_rows(b) for b in prepared]))
        return loss.to(device=device, dtype=torch.float32)


def _rows(batch) -> int:
    for value in (batch.values() if isinstance(batch, dict) else [batch]):
        if torch.is_tensor(value) and value.ndim > 0:
            return int(value.shape[0])
    return 1
