"""Linear probing: logistic regression on frozen features (the LP row of MeZO's tables).

Features are the last hidden state at the final context token in prompt mode
(the template is kept, so LP sees what the prompt-based runs see), or the
mean-pooled states of an encoder. The L2 strength is chosen on dev.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize

from ..placement import model_device
from .scoring import PromptScorer, _position_ids, left_pad


@torch.no_grad()
def features(model, scorer, examples, batch_size: int = 32) -> np.ndarray:
    out, device = [], model_device(model)
    for i in range(0, len(examples), batch_size):
        chunk = examples[i:i + batch_size]
        if isinstance(scorer, PromptScorer):
            ctx = [scorer._ids(scorer.prefix + scorer.template.context(e))[-scorer.max_length:] for e in chunk]
            ids, mask = (t.to(device) for t in left_pad(ctx, scorer.pad_id))
            h = model(input_ids=ids, attention_mask=mask, position_ids=_position_ids(mask),
                      output_hidden_states=True, logits_to_keep=1).hidden_states[-1][:, -1]
        else:
            enc = scorer.encode(chunk).to(device)
            base = getattr(model, "encoder", model)
            states = base(input_ids=enc.input_ids, attention_mask=enc.attention_mask).last_hidden_state
            m = enc.attention_mask.unsqueeze(-1).to(states.dtype)
            h = (states * m).sum(1) / m.sum(1)
        out.append(h.float().cpu().numpy())
    return np.concatenate(out).astype(np.float64)


def fit_logistic(x: np.ndarray, y: np.ndarray, num_classes: int, l2: float) -> np.ndarray:
    """Multinomial logistic regression by L-BFGS; returns W of shape [features + 1, classes]."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    onehot = np.eye(num_classes)[y]

    def loss_grad(flat):
        w = flat.reshape(xb.shape[1], num_classes)
        z = xb @ w
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
        loss = -np.mean(np.sum(onehot * np.log(p + 1e-300), 1)) + 0.5 * l2 * np.sum(w[:-1] ** 2)
        g = xb.T @ (p - onehot) / len(xb)
        g[:-1] += l2 * w[:-1]
        return loss, g.ravel()

    res = minimize(loss_grad, np.zeros(xb.shape[1] * num_classes), jac=True, method="L-BFGS-B",
                   options={"maxiter": 500})
    return res.x.reshape(xb.shape[1], num_classes)


def linear_probe(model, scorer, splits, num_classes: int, l2_grid=(1e-4, 1e-3, 1e-2, 1e-1, 1.0)) -> dict:
    xs = {name: features(model, scorer, getattr(splits, name)) for name in ("train", "dev", "test")}
    ys = {name: np.array([e.label for e in getattr(splits, name)]) for name in ("train", "dev", "test")}
    mu, sd = xs["train"].mean(0), xs["train"].std(0) + 1e-6
    norm = {k: (v - mu) / sd for k, v in xs.items()}

    def acc(w, name):
        z = np.hstack([norm[name], np.ones((len(norm[name]), 1))]) @ w
        return float((z.argmax(1) == ys[name]).mean())

    fits = [(acc(w := fit_logistic(norm["train"], ys["train"], num_classes, l2), "dev"), -l2, w, l2)
            for l2 in l2_grid]
    dev_acc, _, w, l2 = max(fits, key=lambda f: (f[0], f[1]))
    return {"accuracy": acc(w, "test"), "dev_accuracy": dev_acc, "l2": l2, "examples": len(ys["test"])}
