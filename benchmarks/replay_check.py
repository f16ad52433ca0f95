"""Usage: python benchmarks/replay_check.py [full|lora|prefix]

Replay check on SmolLM2-135M: an 8-step SST-2 run interrupted before step 6, whose checkpoint.pt is then
deleted, resumes from trajectory.json alone and must end on the same weights (fingerprint), loss history
and metrics as the uninterrupted run. Prints the sizes of the log and of the checkpoint it replaces."""
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from zoo.finetune import commands, loop
from zoo.finetune.loop import FinetuneConfig
from zoo.finetune.trajectory import weights_fingerprint

root = Path(tempfile.mkdtemp(prefix="zoo-replay-"))
tuning = sys.argv[1] if len(sys.argv) > 1 else "full"  # full, lora or prefix


def cfg():
    return FinetuneConfig(model="smollm2-135m", task="sst2", steps=8, k=16, seed=0, lr=3e-5 if tuning == "full" else 3e-3,
                          eps=1e-3 if tuning == "full" else 1e-2, batch_size=16, tuning=tuning, template="review",
                          eval_every=8, checkpoint_every=50, test_limit=16)


finals = {}
orig_finetune = commands.finetune


def capture(name):
    def f(c, built, splits, out, **kw):
        r = orig_finetune(c, built, splits, out, **kw)
        finals[name] = weights_fingerprint(built.model)
        return r
    return f


for d in ("a", "b"):
    shutil.rmtree(root / tuning / d, ignore_errors=True)
commands.finetune = capture("straight")
a = commands.run_finetune(cfg(), str(root / tuning / "a"), {}, progress=False)
real = loop.minibatch


def stop(n, b, seed, step):
    if step == 5:
        raise KeyboardInterrupt
    return real(n, b, seed, step)


loop.minibatch = stop
try:
    commands.run_finetune(cfg(), str(root / tuning / "b"), {}, progress=False)
except KeyboardInterrupt:
    pass
loop.minibatch = real
log = root / tuning / "b" / "trajectory.json"
print(tuning, "log bytes at step", json.loads(log.read_text())["step"], log.stat().st_size,
      "checkpoint bytes", (root / tuning / "b" / "checkpoint.pt").stat().st_size)
(root / tuning / "b" / "checkpoint.pt").unlink()
commands.finetune = capture("resumed")
t = time.time()
b = commands.run_finetune(cfg(), str(root / tuning / "b"), {}, progress=False)
print(tuning, "resume+3 steps+evals s", round(time.time() - t, 1))
same = (finals["straight"] == finals["resumed"], a["history"]["loss"] == b["history"]["loss"],
        a["metrics"] == b["metrics"])
print(tuning, "same final weights: %s, same loss history: %s, same metrics: %s" % same)
shutil.rmtree(root)
sys.exit(0 if all(same) else 1)
