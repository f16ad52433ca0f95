"""The fine-tuning loop: minibatches, ZO or first-order steps, evaluation, checkpoints and resume.

A run is fully determined by its config: the minibatch of step t comes from
(seed, epoch) alone, and the estimator's state_dict holds its seed and step,
so a run resumed from a checkpoint retraces the uninterrupted run exactly.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..memory import reset_peak, rss_peak_bytes
from ..perturb.modes import half_precision_names
from ..placement import checked_device, dtype_of, model_device
from ..progress import progress as progress_bar
from ..provenance import machine
from ..tasks import Splits
from ..validation import integer, number
from .build import Built
from .evaluate import evaluate
from .objectives import DIFFERENTIABLE, get_objective
from ..files import RunFileError, load_torch, read_json, save_torch, write_json
from .interrupt import StepGuard
from .lock import exclusive
from .metrics_log import MetricsLog
from .step import zo_step
from .ranks import check_data_parallel, rank_and_world
from .trajectory import TrajectoryLog, fingerprint_of, trained_state, weights_fingerprint

logger = logging.getLogger("zoo")

FIRST_ORDER = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}


@dataclass
class FinetuneConfig:
    """Everything that defines a run. Saved in results.json and checked on resume."""

    model: str = "smollm2-135m"
    task: str = "sst2"
    estimator: str = "mezo-sgd"
    steps: int = 100
    k: int = 16
    protocol: str = "kshot"
    seed: int = 0
    lr: float = 1e-6
    eps: float = 1e-3
    batch_size: int = 16
    mode: str = "prompt"
    tuning: str = "full"
    template: str | None = None
    objective: str = "ce"
    eval_every: int = 0
    test_limit: int | None = None
    max_length: int = 256
    checkpoint_every: int = 50
    estimator_options: dict = field(default_factory=dict)
    dtype: str = "float32"  # of the pretrained weights (zoo.placement says what stays float32)
    device: str = "cpu"
    blocks: int | None = None  # tuning "blocks": how many top transformer blocks train
    activation_cache: bool = True  # tuning "blocks", prompt mode: run only the top blocks on cached states
    max_new_tokens: int = 16  # generation tasks (squad): the longest answer decoded
    tuning_options: dict = field(default_factory=dict)  # tuning "sparse-delta": density, regrowth, every, drop

    def validate(self) -> None:
        from .. import estimators

        if self.estimator not in FIRST_ORDER:
            estimators.spec(self.estimator)  # raises with the closest registered names
        elif self.objective not in DIFFERENTIABLE:
            raise ValueError(f"objective {self.objective!r} is not differentiable: first-order {self.estimator!r} "
                             "cannot use it; pick a ZO estimator")
        elif self.estimator_options:
            raise ValueError(f"{', '.join(sorted(self.estimator_options))}: options of the ZO estimators; "
                             f"first-order {self.estimator!r} takes none")
        if self.task == "squad":
            self._validate_generation()
        else:
            get_objective(self.objective)
        for name in ("steps", "k", "batch_size", "max_length", "checkpoint_every", "max_new_tokens"):
            integer(name, getattr(self, name), minimum=1)
        integer("eval_every", self.eval_every, minimum=0, note="0: a tenth of the steps")
        integer("seed", self.seed)
        if self.test_limit is not None:
            integer("test_limit", self.test_limit, minimum=1, note="or None: the whole test split")
        number("lr", self.lr, minimum=0.0)
        number("eps", self.eps, minimum=0.0, strict=True, what="the perturbation scale")
        if not isinstance(self.estimator_options, dict):
            raise ValueError(f"estimator_options: must be a dict, got {type(self.estimator_options).__name__}")
        from .adapters import TUNINGS
        from .build import MODES

        if self.mode not in MODES:
            raise ValueError(f"mode: unknown mode {self.mode!r}; use one of {', '.join(MODES)}")
        if self.tuning not in TUNINGS:
            raise ValueError(f"tuning: unknown tuning {self.tuning!r}; use one of {', '.join(TUNINGS)}")
        if (self.tuning == "blocks") != (self.blocks is not None):
            raise ValueError("blocks: give --blocks K exactly with --tuning blocks" if self.tuning == "blocks" else
                             f"blocks: only for tuning 'blocks', not {self.tuning!r}")
        if self.blocks is not None:
            integer("blocks", self.blocks, minimum=1, what="the number of top blocks to train")
        if not isinstance(self.activation_cache, bool):
            raise ValueError(f"activation_cache: must be True or False, got {self.activation_cache!r}")
        if self.tuning == "head" and self.mode != "head":
            raise ValueError("tuning 'head' trains a new classification head: it needs mode 'head' (--mode head)")
        if self.protocol not in ("kshot", "mezo"):
            raise ValueError(f"unknown protocol {self.protocol!r}: use kshot or mezo")
        dtype_of(self.dtype)
        checked_device(self.device)

    def _validate_generation(self) -> None:
        from ..generation.training import OBJECTIVES

        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective {self.objective!r}: squad takes {' or '.join(OBJECTIVES)} (f1: minus the "
                             "mean token F1 of greedy answers)")
        if self.mode != "prompt" or self.tuning == "head":
            raise ValueError("squad is a generation task: it needs mode 'prompt' and a tuning other than 'head'")
        if self.template is not None:
            raise ValueError(f"template: squad uses MeZO's prompt, not {self.template!r}")
        if self.tuning in ("prefix", "prompt"):  # peft replaces the KV cache (prefix) or prepends the prompt
            raise ValueError(f"tuning {self.tuning!r}: not for squad; zoo's cached greedy decoder does not yet carry "
                             "peft's prefix or soft prompt (the tokens would differ from peft's own); use --tuning "
                             "lora, tt-adapter or full")


def completed_config(saved: dict) -> dict:
    """A saved config with the defaults of fields added since it was written (an older zoo ran with them)."""
    return {**asdict(FinetuneConfig()), **saved}


def minibatch(n: int, batch_size: int, seed: int, step: int) -> list[int]:
    """Indices of step `step`'s minibatch: epochs are seeded permutations of range(n)."""
    per_epoch = math.ceil(n / batch_size)
    epoch, i = divmod(step, per_epoch)
    order = list(range(n))
    random.Random(f"{seed}/epoch{epoch}").shuffle(order)
    return order[i * batch_size:(i + 1) * batch_size]


def _saved_stream(optimizer_state: dict | None, logged: dict | None) -> str | None:
    """The noise stream of what a ZO run resumes from: its checkpoint's optimizer state, else its log."""
    if optimizer_state is not None:
        from ..estimators.base import saved_stream

        return saved_stream(optimizer_state)
    return logged.get("noise_stream") if logged is not None else None


def build_optimizer(cfg: FinetuneConfig, params, module, stream: str | None = None):
    """The run's optimizer: torch's SGD/Adam for first-order runs, else the registered ZO estimator.

    `stream`: the noise stream a resumed or replayed ZO run drew. Unless the config names a backend, the
    estimator gets the one that draws it here, not `auto`'s pick for this machine (which differs on a
    machine without a C compiler).
    """
    if cfg.estimator in FIRST_ORDER:
        opt = FIRST_ORDER[cfg.estimator](params, lr=cfg.lr, **cfg.estimator_options)
    else:
        from .. import estimators
        from ..perturb.backend import backend_for_stream

        options = dict(cfg.estimator_options)
        if stream is not None and "backend" not in options:
            options["backend"] = backend_for_stream(stream, params[0].device)
        opt = estimators.get(cfg.estimator, params, lr=cfg.lr, eps=cfg.eps, seed=cfg.seed, module=module, **options)
    if cfg.tuning == "sparse-delta":  # the index sets change after given steps, live and in a replay alike
        from ..tuning.sparse_delta import IndexSetUpdates

        opt.index_set_updates = IndexSetUpdates(module, opt)
    return opt


def _trainable_state(model) -> dict:
    # views, not copies: torch.save writes them straight from the weights, so a checkpoint of the full
    # model costs no second copy of it (a 540 MB peak on SmolLM2-135M, more than MeZO's whole overhead)
    return trained_state(model)


@torch.no_grad()
def load_trainable_state(model, params: dict) -> None:
    """Copy a checkpoint's trainable parameters (by name), and sparse deltas' index sets, into `model`."""
    named = {**dict(model.named_buffers()), **dict(model.named_parameters())}
    for n, v in params.items():
        named[n].copy_(v)


def optimizer_state_bytes(opt, first_order: bool) -> int:
    """Bytes the optimizer keeps besides the weights (moments, masks, subspace factors)."""
    if not first_order:
        return opt.extra_state_bytes()
    return sum(t.numel() * t.element_size() for st in opt.state.values() for t in st.values()
               if torch.is_tensor(t) and t.dim() > 0)


def _on_cuda() -> bool:
    return torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0


def peak_memory_bytes() -> int:
    """The peak since the last `reset_peak_memory()`: GPU memory allocated, else the process's RSS."""
    return torch.cuda.max_memory_allocated() if _on_cuda() else rss_peak_bytes()


def reset_peak_memory() -> str:
    """Starts a new peak, so that a run's peak is its own and not that of an earlier run in the process.

    Returns the scope of the next `peak_memory_bytes()`: "run", or "process" where the peak cannot be reset.
    """
    return "run" if reset_peak(cuda=_on_cuda()) else "process"


def save_snapshot(out: Path, step: int, model) -> Path:
    """DIR/snapshots/step<N>.pt: the trainable weights after `step` steps."""
    folder = out / "snapshots"
    folder.mkdir(exist_ok=True)
    path = folder / f"step{step}.pt"
    save_torch(path, {"step": step, "params": _trainable_state(model)})
    return path


def snapshots(out: str | Path) -> list[Path]:
    """A run's snapshots, in step order."""
    return sorted(Path(out).glob("snapshots/step*.pt"), key=lambda p: int(p.stem[4:]))


def check_same_config(path: Path, saved: dict, cfg: FinetuneConfig) -> None:
    """Refuses to resume from a file written by a run with another config."""
    saved = completed_config(saved)
    if saved != asdict(cfg):
        changed = sorted(k for k, v in asdict(cfg).items() if saved.get(k) != v)
        raise ValueError(f"{path} belongs to a run with a different config ({', '.join(changed)}); "
                         "use another --out or delete it")


class Checkpoint:
    """`DIR/checkpoint.pt`, written atomically: a crash or a full disk mid-save keeps the previous one.

    It holds the trainable weights with their fingerprint, so that a file altered since (a valid
    torch file with other weights) is refused instead of resumed.
    """

    KEYS = {"config": dict, "step": int, "params": dict, "optimizer": dict, "history": dict, "elapsed": float}

    def __init__(self, out: Path):
        self.path = out / "checkpoint.pt"

    def save(self, payload: dict) -> None:
        save_torch(self.path, payload)

    def load(self, cfg: FinetuneConfig, model) -> dict | None:
        """The checkpoint, checked against `model`'s trainable parameters; None where there is none.

        Raises:
            RunFileError: damaged, or its weights are not those it was saved with.
            ValueError: it belongs to a run with another config.
        """
        if not self.path.exists():
            return None
        payload = load_torch(self.path)
        for key, kind in self.KEYS.items():
            value = payload.get(key)
            if not isinstance(value, (int, float) if kind is float else kind) or isinstance(value, bool):
                raise RunFileError(f"{self.path}: damaged: '{key}' is missing or not a {kind.__name__}")
        check_same_config(self.path, payload["config"], cfg)
        params = payload["params"]
        mine = _trainable_state(model)
        if list(params) != list(mine) or any(not torch.is_tensor(params[n]) or params[n].shape != p.shape
                                             or params[n].dtype != p.dtype for n, p in mine.items()):
            raise RunFileError(f"{self.path}: damaged: its weights are not the model's trainable parameters "
                               "(and sparse deltas' index sets)")
        return verified(self.path, payload)


def verified(path: Path, payload: dict) -> dict:
    """`payload` (a loaded checkpoint) once its weights match the fingerprint saved with them.

    Raises:
        RunFileError: they do not, or there are no weights.
    """
    params, saved = payload.get("params"), payload.get("fingerprint")  # no fingerprint: an older zoo's
    if not isinstance(params, dict) or (saved is not None and fingerprint_of(params.items()) != saved):
        raise RunFileError(f"{path}: damaged: its weights differ from those it was saved with "
                           "(their fingerprint does not match)")
    return payload


def _finished(out: Path, cfg: FinetuneConfig) -> dict | None:
    """A finished run's results (curve.png redrawn where a kill lost it), or None to run or resume it.

    A damaged results.json is rebuilt where checkpoint.pt or trajectory.json still holds the run.
    """
    path = out / "results.json"
    if not path.exists():
        return None
    try:
        done = read_json(path)
    except RunFileError as e:
        if Checkpoint(out).path.exists() or TrajectoryLog(out).path.exists():
            logger.warning("zoo: %s; rebuilding it from the run's checkpoint or loss log", e)
            return None
        raise RunFileError(f"{e}; nothing else in {out} holds the run: delete it to run again") from None
    if not isinstance(done.get("config"), dict) or completed_config(done["config"]) != asdict(cfg):
        raise ValueError(f"{path} holds the results of a run with a different config; use another --out")
    curve = out / "curve.png"
    if not curve.exists():
        from .plots import plot_curve

        plot_curve(done, curve)
    return done


def _resume_source(ckpt: Checkpoint, log: TrajectoryLog, cfg: FinetuneConfig, model,
                   first_order: bool) -> tuple[dict | None, dict | None]:
    """(checkpoint, loss log) to resume from, at most one of them: the one further on.

    A damaged one is passed over with a warning where the other holds the run; where neither does,
    the first problem is raised, naming its file.
    """
    problems, state, logged = [], None, None
    try:
        state = ckpt.load(cfg, model)
    except RunFileError as e:
        problems.append(e)
    if not first_order:
        try:
            logged = log.load(cfg)
        except RunFileError as e:
            problems.append(e)
    if state is None and logged is None:
        if problems:
            raise RunFileError(f"{problems[0]}; nothing else holds the run: delete it to start the run over") from None
        return None, None
    use_log = logged is not None and (state is None or logged["step"] > state["step"])
    for problem in problems:
        logger.warning("zoo: %s; resuming from %s instead", problem, log.path.name if use_log else ckpt.path.name)
    return (None, logged) if use_log else (state, None)


def finetune(cfg: FinetuneConfig, built: Built, splits: Splits, out: str | Path, progress: bool = True,
             snapshot_every: int | None = None, test_curve: bool = False, tensorboard: bool = False) -> dict:
    """Train `built.model` on `splits.train`, evaluate on dev along the way and on test at the end.

    Writes DIR/checkpoint.pt every `checkpoint_every` steps (and on Ctrl-C),
    then DIR/curve.png and DIR/results.json, each atomically. Calling it again
    with the same config resumes from the checkpoint, or returns the finished
    results. ZO runs also write DIR/trajectory.json, each step's losses:
    without checkpoint.pt (a fresh clone, say), or where it is damaged, the run
    resumes by replaying them. It goes once results.json, whose history keeps
    the same losses, is written. A Ctrl-C during a step lets the step finish
    first, so that the resumed run retraces the uninterrupted one bit for bit.
    One process at a time trains in DIR (a second gets a FolderInUse error).
    With `snapshot_every`, the trainable weights are also kept every that many
    steps (and at the end) as DIR/snapshots/step<N>.pt, e.g. for measuring the
    Hessian along the trajectory (`zoo theory effective-rank --run DIR --over-training`).
    With `test_curve`, every dev evaluation also scores the test split (its accuracy goes into
    the evaluation's record), for test accuracy against forward passes; it costs a test pass per
    evaluation and changes nothing the run trains on.
    DIR/metrics.jsonl gets a line per step and per evaluation as they happen (zoo/finetune/metrics_log.py);
    with `tensorboard`, DIR/tensorboard gets the same as TensorBoard events.
    """
    cfg.validate()
    if snapshot_every is not None:
        integer("snapshot_every", snapshot_every, minimum=1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rank, world = rank_and_world()
    check_data_parallel(cfg.estimator, cfg.estimator in FIRST_ORDER, cfg.batch_size, world)
    with exclusive(out) if rank == 0 else contextlib.nullcontext():
        done = _finished(out, cfg)
        if done is not None:
            return done
        return _train(cfg, built, splits, out, progress, snapshot_every, test_curve, tensorboard)


def _train(cfg: FinetuneConfig, built: Built, splits: Splits, out: Path, progress: bool,
           snapshot_every: int | None, test_curve: bool, tensorboard: bool) -> dict:
    return TrainingRun(cfg, built, splits, out, progress, snapshot_every, test_curve, tensorboard).train()


class TrainingRun:
    """One run of `finetune`: its model, optimizer and history, the files it writes, and its loop.

    Construction resumes what DIR holds (a checkpoint, else the loss log replayed); `train()` runs the
    remaining steps, each inside a StepGuard so that Ctrl-C lands between steps, and returns results.json.
    Every step follows the contract ZOTrainer shares (zoo/integrations/hf.py): one closure over the
    step's batch, the estimator's recorded losses logged for replay, a checkpoint that resumes bit-exactly.
    """

    def __init__(self, cfg: FinetuneConfig, built: Built, splits: Splits, out: Path, progress: bool,
                 snapshot_every: int | None, test_curve: bool, tensorboard: bool):
        self.peak_scope = reset_peak_memory()
        self.cfg, self.splits, self.out, self.progress = cfg, splits, out, progress
        self.snapshot_every, self.test_curve = snapshot_every, test_curve
        self.rank, self.world = rank_and_world()
        self.leader = self.rank == 0  # under torchrun rank 0 writes the run's files; the replicas are identical
        self.model, self.scorer = built.model, built.scorer
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("no trainable parameters")
        # a generation task's scorer computes its own objective and metrics (zoo/generation/training.py)
        self.generation = hasattr(self.scorer, "batch_loss")
        self.objective = None if self.generation else get_objective(cfg.objective)
        self.reported = getattr(self.scorer, "reported", ("accuracy",))  # the metrics of every evaluation
        self.first_order = cfg.estimator in FIRST_ORDER
        self.ckpt, self.log = Checkpoint(out), TrajectoryLog(out)
        self._resume()
        self.eval_every = cfg.eval_every or max(cfg.steps // 10, 1)
        self.scored_test = {}  # step -> test metrics, so that the last evaluation's test pass is not run twice
        # Counts the rows the model itself ran inside training steps, so a benchmark can check each
        # estimator's declared forwards per step against what it really ran. Rows, not calls: the
        # scorer may run one pass over a batch as several length-sorted chunks.
        self.rows_run = 0
        self.passes = 0.0  # passes of this step, each over its own batch (a full batch counts one)
        self.step_scorer = self.scorer
        if not self.first_order and self.opt.perturbation.name == "exact":  # each model call costs a sweep more
            self.step_scorer = self.scorer.for_exact_perturbation(
                sum(p.numel() for p in self.params) / sum(p.numel() for p in self.model.parameters()))
        self.history.setdefault("model_calls", 0)
        self.history.setdefault("step_seconds", [])  # training steps alone, without evaluations, for cost tables
        self.metrics_log = MetricsLog(out, enabled=self.leader, tensorboard=tensorboard)
        # "clean": the weights and history are those of the last recorded step; "stepping": inside the
        # optimizer's step (an exact ZO step restores the weights' bits, the others do not); "recording"
        self.phase = "clean"

    def _resume(self) -> None:
        """The optimizer, and the weights and history of the furthest valid record in DIR."""
        cfg, model = self.cfg, self.model
        state, logged = _resume_source(self.ckpt, self.log, cfg, model, self.first_order)
        self.opt = build_optimizer(cfg, self.params, model, stream=None if self.first_order else
                                   _saved_stream(state["optimizer"] if state is not None else None, logged))
        half = half_precision_names(self.params)
        if half and not self.first_order:
            logger.warning(
                "ZO on %s weights: an update smaller than half a weight's spacing rounds away (on SmolLM2-135M at "
                "lr 3e-5 most bfloat16 weights did not move in a step: docs/performance.md, Precision); train "
                "float32 weights (--dtype float32) or use a larger lr", "/".join(half))
        self.start_fingerprint = weights_fingerprint(model) if not self.first_order else None
        self.history = {"steps": [], "forward_passes": [], "loss": [], "evals": []}
        if not self.first_order:
            self.history["step_losses"] = []
        self.start, self.elapsed = 0, 0.0
        if state is not None:
            try:
                self.opt.load_state_dict(state["optimizer"])
            except ValueError as e:
                raise RunFileError(f"{self.ckpt.path}: damaged: {e}; delete it to start the run over") from None
            load_trainable_state(model, state["params"])
            self.history, self.start, self.elapsed = state["history"], state["step"], state["elapsed"]
            if hasattr(self.opt, "index_set_updates"):
                self.opt.index_set_updates.steps_done = state["step"]
        elif logged is not None:
            self.log.replay(logged, model, self.opt, progress=self.progress)
            self.history, self.start, self.elapsed = logged["history"], logged["step"], logged["elapsed"]

    # -- records ---------------------------------------------------------------------------------------
    def forwards_so_far(self, step: int) -> int:
        return self.opt.zo_state["forward_passes"] if not self.first_order else step

    def spent(self) -> float:
        return self.elapsed + time.time() - self.t0

    def save(self, step: int) -> str:
        """Checkpoint and loss log of `step`; returns the weights' fingerprint (one hash pass)."""
        spent = self.spent()
        fingerprint = weights_fingerprint(self.model)
        if not self.leader:
            return fingerprint
        self.ckpt.save({"config": asdict(self.cfg), "step": step, "params": _trainable_state(self.model),
                        "fingerprint": fingerprint, "optimizer": self.opt.state_dict(), "history": self.history,
                        "elapsed": spent})
        if "step_losses" in self.history:
            self.log.save(self.cfg, step, self.history, spent, self.start_fingerprint, fingerprint,
                          self.opt.backend.stream.name)
        return fingerprint

    def evaluate(self, examples, progress: str | None = None) -> dict:
        if self.generation:
            return self.scorer.evaluate(self.model, examples, progress=progress)
        return evaluate(self.model, self.scorer, examples, progress=progress)

    def dev_eval(self, step: int) -> dict:
        m = self.evaluate(self.splits.dev)
        entry = {"step": step, "forward_passes": self.forwards_so_far(step),
                 **{f"dev_{k}": m[k] for k in self.reported}, "dev_loss": m["loss"]}
        if self.test_curve:
            test = self.scored_test[step] = self.evaluate(self.splits.test)
            entry.update({f"test_{k}": test[k] for k in self.reported}, test_loss=test["loss"])
        self.history["evals"].append(entry)
        self.metrics_log.evaluation(entry)
        return m

    def due_after(self, step: int, resumed: bool = False) -> None:
        """The evaluation and snapshot of `step`, where due and not yet done (a run stopped right after
        the step was recorded resumes with them), and its checkpoint (not rewritten on resume)."""
        cfg, every = self.cfg, self.snapshot_every
        if ((step % self.eval_every == 0 or step == cfg.steps)
                and not any(e["step"] == step for e in self.history["evals"])):
            m = self.dev_eval(step)
            self.bar.set_postfix(loss=f"{self.history['loss'][-1]:.3f}", **{f"dev_{self.reported[0]}":
                                                                              f"{m[self.reported[0]]:.3f}"})
        if not resumed and step % cfg.checkpoint_every == 0 and step < cfg.steps:
            self.save(step)
        if every and (step % every == 0 or step == cfg.steps) and self.leader:
            if not resumed or not (self.out / "snapshots" / f"step{step}.pt").exists():
                save_snapshot(self.out, step, self.model)

    # -- steps -----------------------------------------------------------------------------------------
    def _count_rows(self, module, args, kwargs) -> None:
        if kwargs.get("cache") is not None or kwargs.get("past_key_values") is not None:
            return  # a decoded token's pass continues the forward that read the prompt, counted there
        # a head-only run's scorer passes cached encoder features as `pooled` instead of token ids
        rows = next((t for t in (kwargs.get("input_ids"), kwargs.get("inputs_embeds"), kwargs.get("pooled"), *args[:1])
                     if torch.is_tensor(t)), None)
        self.rows_run += 0 if rows is None else rows.shape[0]

    def loss_on(self, batch):
        """The closure of a step on `batch`: its loss, counted as the passes it ran."""
        def closure():
            before = self.rows_run
            if self.generation:
                loss = self.step_scorer.batch_loss(self.model, batch, self.cfg.objective)
            else:
                loss = self.objective(self.step_scorer(self.model, batch), batch.labels)
            self.passes += (self.rows_run - before) / batch.input_ids.shape[0]
            return loss

        return closure

    def step(self, step: int, closure, full_closure) -> None:
        """Step `step` (0-based) and its record in the history."""
        history, opt = self.history, self.opt
        self.passes = 0.0
        self.phase = "stepping"
        step_start = time.perf_counter()
        if self.first_order:
            opt.zero_grad(set_to_none=True)
            with torch.enable_grad():
                loss = closure()
                loss.backward()
            opt.step()
        else:
            loss, losses = zo_step(opt, closure, full_closure)  # losses: what `replay` takes
        self.phase = "recording"
        calls = round(self.passes, 9)
        history["step_seconds"].append(time.perf_counter() - step_start)
        history["model_calls"] += int(calls) if calls.is_integer() else calls
        history["steps"].append(step + 1)
        history["forward_passes"].append(self.forwards_so_far(step + 1))
        history["loss"].append(float(loss.detach()))
        if "step_losses" in history:  # absent when resumed from a checkpoint of an older zoo
            history["step_losses"].append(losses)
        self.metrics_log.step(history, opt.param_groups[0]["lr"])
        self.phase = "clean"

    def train(self) -> dict:
        cfg, splits, scorer, history = self.cfg, self.splits, self.scorer, self.history
        rank, world = self.rank, self.world
        # the module each scoring call runs once: the model itself, or what a cached scorer calls instead
        counted = getattr(scorer, "counted_module", lambda m: m)(self.model)
        hook = counted.register_forward_pre_hook(self._count_rows, with_kwargs=True)
        self.metrics_log.start(history)
        self.t0 = time.time()
        self.model.train(False)  # dropout off: ZO differences must see the same function twice
        device = model_device(self.model)
        self.bar = progress_bar(range(self.start, cfg.steps), initial=self.start, total=cfg.steps,
                                enabled=self.progress and self.leader,
                                desc=f"{cfg.estimator} {cfg.task} ({cfg.tuning})", unit="step")
        # MeZO-SVRG's anchor steps: the whole training split (this rank's shard of it), encoded once
        full_closure = None
        if not self.first_order and self.opt.plan.uses_full_batch:
            full_closure = self.loss_on(scorer.encode(list(splits.train)[rank::world]).to(device))
        guard = StepGuard()
        try:
            with guard.installed():
                if self.start == 0 and not history["evals"]:
                    self.dev_eval(0)
                elif self.start > 0:
                    self.due_after(self.start, resumed=True)
                for step in self.bar:
                    idx = minibatch(len(splits.train), cfg.batch_size, cfg.seed, step)[rank::world]  # this rank's
                    closure = self.loss_on(scorer.encode([splits.train[i] for i in idx]).to(device))
                    with guard.step():
                        self.step(step, closure, full_closure)
                    self.due_after(step + 1)
        except KeyboardInterrupt:
            exact_restore = (self.phase == "stepping" and not self.first_order
                             and self.opt.perturbation.name == "exact")
            if self.phase != "clean" and not exact_restore:
                logger.warning("zoo: stopped inside step %d, whose weights are not restored bit for bit; nothing "
                               "was saved from it, and the run resumes from its last checkpoint",
                               len(history["steps"]) + 1)
            elif history["steps"]:
                self.save(history["steps"][-1])
            raise
        finally:
            hook.remove()
            self.bar.close()
            self.metrics_log.close()
        return self.finish()

    def finish(self) -> dict:
        """The final checkpoint, the test evaluation, and results.json (with curve.png) where this rank writes."""
        cfg, history, opt, first_order = self.cfg, self.history, self.opt, self.first_order
        final_fingerprint = self.save(cfg.steps)
        test = self.scored_test.get(cfg.steps) or self.evaluate(self.splits.test,
                                                                progress="test" if self.progress else None)
        dev = history["evals"][-1]
        scores = {k: test[k] for k in (*self.reported, "macro_f1") if k in test}
        result = {
            "config": asdict(cfg),
            "metric": self.reported[0],  # the headline metric of the metrics below: accuracy, or squad's F1
            "metrics": {**scores, "test_loss": test["loss"], "test_examples": test["examples"],
                        **{f"dev_{k}": dev[f"dev_{k}"] for k in self.reported},
                        "train_examples": len(self.splits.train), "dev_examples": len(self.splits.dev),
                        "test_source": self.splits.test_source},
            "forward_passes": self.forwards_so_far(cfg.steps),
            # points evaluated: the forward passes, except under perturbation="batched" (each pass, all a step's points)
            "queries": cfg.steps if first_order else opt.zo_state["queries"],
            "model_calls": history["model_calls"],
            # how the scorer split batches into length-sorted chunks (None: whole); step times depend on it
            "call_cost_tokens": getattr(self.step_scorer, "call_cost_tokens", None),
            "backward_passes": cfg.steps if first_order else 0,
            "wall_time_s": self.spent(),
            "measured": machine(),  # of the session that finished the run: a resumed run's earlier steps may differ
            "median_step_s": statistics.median(history["step_seconds"]) if history["step_seconds"] else None,
            "peak_memory_bytes": peak_memory_bytes(),
            "peak_memory_scope": self.peak_scope,
            "trainable_params": sum(p.numel() for p in self.params),
            "extra_state_bytes": optimizer_state_bytes(opt, first_order),
            "skipped_steps": 0 if first_order else opt.zo_state["skipped_steps"],
            "perturbation": None if first_order else opt.perturbation.name,  # the one asked for, or the default
            # the directions' stream: backend "auto" draws philox where the C kernel builds, else torch-generator
            "noise_stream": None if first_order else opt.backend.stream.name,
            "world_size": self.world,  # ranks whose mean losses the steps used (torchrun); the log holds those
            "history": history,
        }
        if "predictions" in test:
            result["predictions"] = test["predictions"]
        if history["evals"] and all(f"test_{self.reported[0]}" in e for e in history["evals"]):
            result["test_curve"] = {"source": "scored during the run"}
        if "step_losses" in history:  # lets `load_run_weights` rebuild these weights from the log and check them
            result["weights_fingerprint"] = {"start": self.start_fingerprint, "at_step": final_fingerprint}
        if not self.leader:
            return result
        from .plots import plot_curve

        # the curve first: a kill between the two leaves no results.json, so the rerun draws it again
        plot_curve(result, self.out / "curve.png")
        write_json(self.out / "results.json", result, indent=1)
        self.log.path.unlink(missing_ok=True)  # results.json's history holds the same losses
        return result
