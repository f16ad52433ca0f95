"""`zoo.integrations.hf.ZOTrainer`: the Hugging Face Trainer's own loop, driving a zoo estimator."""

import inspect

import pytest
import torch

transformers = pytest.importorskip("transformers")

import zoo  # noqa: E402
from conftest import bits_equal  # noqa: E402
from zoo.integrations.hf import StepTakenOptimizer, ZOTrainer  # noqa: E402


def tiny_llama(dtype=torch.float32):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return LlamaForCausalLM(cfg).to(dtype)


class Rows(torch.utils.data.Dataset):
    """Token rows of one length, labels = inputs (a causal LM's loss)."""

    def __init__(self, n=24, length=8):
        g = torch.Generator().manual_seed(1)
        self.ids = torch.randint(0, 64, (n, length), generator=g)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path), per_device_train_batch_size=4, learning_rate=1e-3, max_steps=6,
                logging_steps=1, save_strategy="no", report_to="none", seed=3, lr_scheduler_type="constant",
                use_cpu=True, disable_tqdm=True, dataloader_num_workers=0)
    base.update(kw)
    return transformers.TrainingArguments(**base)


class Recording(ZOTrainer):
    """Keeps each window's micro-batches, for a replay by hand."""

    windows: list

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        batches, n = super().get_batch_samples(epoch_iterator, num_batches, device)
        self.windows = getattr(self, "windows", []) + [[{k: v.clone() for k, v in b.items()} for b in batches]]
        return batches, n


def weights(model):
    return [p.detach().clone() for p in model.parameters()]


def test_it_overrides_public_trainer_methods_only_and_copies_no_loop():
    own = {n for n, v in vars(ZOTrainer).items() if callable(v) or isinstance(v, property)}
    overridden = {n for n in own if hasattr(transformers.Trainer, n)}
    assert overridden >= {"create_optimizer", "training_step", "get_batch_samples"}
    assert all(not n.startswith("_") or n == "__init__" for n in overridden), overridden
    source = inspect.getsource(inspect.getmodule(ZOTrainer))
    assert "def _inner_training_loop" not in source and "def _run_epoch" not in source


def test_its_steps_are_the_estimators_steps_on_the_trainers_batches(tmp_path):
    model = tiny_llama()
    start = weights(model)
    trainer = Recording(model, args(tmp_path), train_dataset=Rows(), estimator="mezo-sgd",
                        estimator_options={"eps": 1e-2})
    out = trainer.train()
    assert len(trainer.windows) == 6 and out.global_step == 6
    # the same estimator driven by hand over the same batches: the same bits
    ref = tiny_llama()
    groups = [{"params": [p for p in ref.parameters() if p.ndim >= 2], "weight_decay": 0.0},
              {"params": [p for p in ref.parameters() if p.ndim < 2], "weight_decay": 0.0}]
    opt = zoo.get("mezo-sgd", groups, lr=1e-3, eps=1e-2, seed=3, module=ref)
    ref.eval()
    losses = []
    for (batch,) in trainer.windows:
        losses.append(float(opt.step(lambda: ref(**batch).loss.double())))
    assert bits_equal(list(ref.parameters()), list(model.parameters()))
    assert not bits_equal(start, list(model.parameters()))
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert logged == pytest.approx(losses, rel=1e-6)


def test_gradient_accumulation_averages_the_micro_batches_at_one_direction(tmp_path):
    whole = tiny_llama()
    ZOTrainer(whole, args(tmp_path / "a", per_device_train_batch_size=4), train_dataset=Rows(),
              estimator_options={"eps": 1e-2}).train()
    split = tiny_llama()
    t = Recording(split, args(tmp_path / "b", per_device_train_batch_size=2, gradient_accumulation_steps=2),
                  train_dataset=Rows(), estimator_options={"eps": 1e-2})
    t.train()
    assert all(len(w) == 2 for w in t.windows) and len(t.windows) == 6
    assert t.estimator.zo_state["forward_passes"] == 12  # two per step, each over both micro-batches
    for p, q in zip(whole.parameters(), split.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_the_scheduler_drives_the_estimators_lr(tmp_path):
    model = tiny_llama()
    t = ZOTrainer(model, args(tmp_path, lr_scheduler_type="linear", warmup_steps=2), train_dataset=Rows())
    t.train()
    lrs = [h["learning_rate"] for h in t.state.log_history if "learning_rate" in h]
    assert lrs[0] < lrs[1] and lrs[-1] < lrs[1]  # warmup, then the linear decay
    assert t.estimator.param_groups[0]["lr"] == pytest.approx(t.lr_scheduler.get_last_lr()[0])
    assert isinstance(t.optimizer.optimizer if hasattr(t.optimizer, "optimizer") else t.optimizer, StepTakenOptimizer)


def test_resume_from_checkpoint_continues_bit_exactly(tmp_path):
    straight = tiny_llama()
    ZOTrainer(straight, args(tmp_path / "a"), train_dataset=Rows(), estimator="zo-momentum").train()
    first = tiny_llama()
    ZOTrainer(first, args(tmp_path / "b", max_steps=6, save_strategy="steps", save_steps=3),
              train_dataset=Rows(), estimator="zo-momentum").train()
    # a fresh process's view: a new model and trainer, from the step-3 checkpoint
    resumed = tiny_llama()
    t = ZOTrainer(resumed, args(tmp_path / "b", max_steps=6, save_strategy="steps", save_steps=3),
                  train_dataset=Rows(), estimator="zo-momentum")
    t.train(resume_from_checkpoint=str(tmp_path / "b" / "checkpoint-3"))
    assert t.estimator.zo_state["step"] == 6
    assert bits_equal(list(straight.parameters()), list(resumed.parameters()))


def test_evaluation_with_compute_metrics(tmp_path):
    def metrics(pred):
        return {"rows": float(len(pred.label_ids))}

    t = ZOTrainer(tiny_llama(), args(tmp_path, eval_strategy="steps", eval_steps=3, per_device_eval_batch_size=4),
                  train_dataset=Rows(), eval_dataset=Rows(8), compute_metrics=metrics,
                  preprocess_logits_for_metrics=lambda logits, labels: logits.argmax(-1))
    t.train()
    evals = [h for h in t.state.log_history if "eval_loss" in h]
    assert [h["step"] for h in evals] == [3, 6] and all(h["eval_rows"] == 8 for h in evals)


def test_a_non_differentiable_objective_through_compute_loss(tmp_path):
    class ErrorRate(ZOTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            logits = model(input_ids=inputs["input_ids"]).logits[:, :-1]
            return (logits.argmax(-1) != inputs["labels"][:, 1:]).float().mean()  # no gradient exists

    model = tiny_llama()
    start = weights(model)
    t = ErrorRate(model, args(tmp_path, learning_rate=0.1), train_dataset=Rows(), estimator_options={"eps": 0.05})
    t.train()
    losses = [h["loss"] for h in t.state.log_history if "loss" in h]
    assert all(0.0 <= x <= 1.0 for x in losses)
    assert not bits_equal(start, list(model.parameters()))


@pytest.mark.parametrize("method", ["lora", "prefix"])
def test_peft_lora_and_prefix_train_their_own_weights_only(tmp_path, method):
    peft = pytest.importorskip("peft")
    config = (peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]) if method == "lora" else
              peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    model = peft.get_peft_model(tiny_llama(), config)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    ZOTrainer(model, args(tmp_path, learning_rate=1e-2), train_dataset=Rows(),
              estimator_options={"eps": 1e-2}).train()
    now = dict(model.named_parameters())
    assert all(torch.equal(now[n], v) for n, v in frozen.items())
    assert any(not torch.equal(now[n], v) for n, v in lora.items())


def test_bfloat16_uses_the_exact_perturbation(tmp_path):
    model = tiny_llama(torch.bfloat16)
    start = weights(model)
    t = ZOTrainer(model, args(tmp_path, learning_rate=1e-2), train_dataset=Rows(), estimator_options={"eps": 1e-2})
    t.train()
    assert t.estimator.perturbation.name == "exact"
    assert not bits_equal(start, list(model.parameters()))


@pytest.mark.parametrize("bad", [{"lr": 1.0}, {"seed": 1}, {"momentum": 0.9}])
def test_bad_estimator_options_are_refused(tmp_path, bad):
    t = None
    with pytest.raises(ValueError, match="lr|seed|momentum"):
        t = ZOTrainer(tiny_llama(), args(tmp_path), train_dataset=Rows(), estimator_options=bad)
        t.train()


def test_an_unknown_estimator_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="mezo"):
        ZOTrainer(tiny_llama(), args(tmp_path), train_dataset=Rows(), estimator="mezo-sdg")


def _ddp_worker(rank, port, out):
    import os

    from conftest import run_rank

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_WORLD_SIZE="2")
    torch.set_num_threads(1)
    from pathlib import Path

    def body():
        model = tiny_llama()
        t = ZOTrainer(model, args(Path(out) / f"rank{rank}", ddp_backend="gloo", per_device_train_batch_size=2,
                                  max_steps=4), train_dataset=Rows(), estimator_options={"eps": 1e-2})
        t.train()
        assert t.estimator.reducer is not None and t.estimator.reducer.world == 2
        torch.save([p.detach() for p in model.parameters()], f"{out}/rank{rank}.pt")
        kept.append(t)

    # The Trainer's DDP reducer holds the gloo process group; freed in this process it would run
    # ~ProcessGroupGloo, which joins gloo's worker thread while this thread holds the GIL, and a worker still
    # releasing an all-gather's Python tensors waits for the GIL: a deadlock seen once (py-spy, issue 29).
    # So the trainer stays referenced until run_rank leaves the process with os._exit.
    kept = []
    run_rank(body)


def test_under_a_two_process_ddp_launch_the_replicas_stay_identical(tmp_path):
    import torch.multiprocessing as mp

    from conftest import free_port

    mp.spawn(_ddp_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert bits_equal(a, b) and not bits_equal(a, [p.detach() for p in tiny_llama().parameters()])


@pytest.mark.parametrize("report_to", ["none", "tensorboard"])
def test_report_to(tmp_path, report_to):
    if report_to == "tensorboard":
        pytest.importorskip("tensorboard")  # in the test extras: CI has it
    t = ZOTrainer(tiny_llama(), args(tmp_path, report_to=report_to), train_dataset=Rows())
    t.train()
    events = list(tmp_path.rglob("events.out.tfevents.*"))
    assert bool(events) == (report_to == "tensorboard")
    assert len([h for h in t.state.log_history if "loss" in h]) == 6


def test_a_window_closure_is_the_size_weighted_mean_of_its_micro_batches():
    from zoo.finetune.step import window_closure

    parts = [lambda: torch.tensor(1.0), lambda: torch.tensor(4.0)]
    assert float(window_closure(parts, [3, 1])()) == pytest.approx((3 * 1.0 + 1 * 4.0) / 4, abs=0)
    assert window_closure(parts[:1], [5]) is parts[0]  # one micro-batch: the closure itself
    with pytest.raises(ValueError, match="2 closures for 1"):
        window_closure(parts, [1])
