"""HVPs of real (tiny) models, SLQ densities, the forward-only trace probe."""

import math

import pytest
import torch
from torch import nn

from zoo.theory import HessianOperator, slq, trace_probe
from conftest import lm_batch, tiny_llama


class Tiny(nn.Module):
    def __init__(self, padding_idx=None):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.emb = nn.Embedding(7, 3, padding_idx=padding_idx).double()
        self.lin = nn.Linear(3, 2).double()
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))

    def forward(self, ids, labels):
        return nn.functional.cross_entropy(self.lin(torch.tanh(self.emb(ids).mean(1))), labels)


BATCH = {"ids": torch.tensor([[1, 2, 0], [3, 0, 4], [5, 6, 1]]), "labels": torch.tensor([0, 1, 1])}
loss_fn = lambda model, batch: model(**batch)


def dense_hessian(model):
    params = list(model.parameters())
    names = [n for n, _ in model.named_parameters()]

    def f(*flat):
        from torch.func import functional_call
        return functional_call(model, dict(zip(names, flat)), kwargs=BATCH)

    blocks = torch.autograd.functional.hessian(f, tuple(p.detach() for p in params))
    sizes = [p.numel() for p in params]
    return torch.cat([torch.cat([blocks[i][j].reshape(sizes[i], sizes[j]) for j in range(len(params))], 1)
                      for i in range(len(params))], 0)


@pytest.mark.parametrize("mode", ["rev-rev", "fwd-rev", "fd"])
def test_hvp_modes_match_the_dense_hessian(mode):
    model = Tiny()
    h = dense_hessian(model)
    op = HessianOperator(model, loss_fn, BATCH, mode=mode, fd_step=1e-5)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        v = torch.randn(op.dim, generator=g, dtype=torch.float64)
        tol = 1e-6 if mode == "fd" else 1e-10
        torch.testing.assert_close(op(v), h @ v, rtol=tol, atol=tol)


def test_a_kept_graph_gives_the_same_products_and_follows_weight_changes():
    model = Tiny()
    kept, fresh = HessianOperator(model, loss_fn, BATCH), HessianOperator(model, loss_fn, BATCH, keep_graph=False)
    g = torch.Generator().manual_seed(3)
    v = torch.randn(kept.dim, generator=g, dtype=torch.float64)
    torch.testing.assert_close(kept(v), fresh(v), rtol=1e-13, atol=1e-13)
    first = kept(v)
    with torch.no_grad():  # an in-place change through torch bumps the version the kept graph checks
        model.lin.weight[0].add_(0.5)  # one row: a shift of every logit alike would change nothing
    torch.testing.assert_close(kept(v), dense_hessian(model) @ v, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(kept(v), first)
    model.lin.weight.data[0].sub_(0.5)  # .data writes bypass version counters: refresh() is the way
    kept.refresh()
    torch.testing.assert_close(kept(v), first, rtol=1e-12, atol=1e-12)


def test_padding_rows_are_removed_so_the_operator_is_symmetric():
    model = Tiny(padding_idx=0)
    op = HessianOperator(model, loss_fn, BATCH)
    g = torch.Generator().manual_seed(2)
    u, w = (torch.randn(op.dim, generator=g, dtype=torch.float64) for _ in range(2))
    assert u @ op(w) == pytest.approx((w @ op(u)).item(), rel=1e-10)
    hv = op(w).view(-1)[: 7 * 3].view(7, 3)
    assert torch.equal(hv[0], torch.zeros(3, dtype=torch.float64)) and hv[1:].abs().sum() > 0


def test_fd_restores_weights_exactly():
    model = Tiny()
    before = [p.detach().clone() for p in model.parameters()]
    HessianOperator(model, loss_fn, BATCH, mode="fd")(torch.ones(sum(p.numel() for p in before), dtype=torch.float64))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_hvp_on_a_tiny_llama_subset():
    model = tiny_llama(torch.float64)
    params = list(model.model.layers[-1].mlp.parameters())
    batch = lm_batch()
    ll = lambda m, b: m(**b).loss
    a = HessianOperator(model, ll, batch, params=params)
    # HF's causal-LM loss upcasts logits to float32, so finite differences need a large step
    b = HessianOperator(model, ll, batch, params=params, mode="fd", fd_step=1e-2)
    v = torch.randn(a.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    hv = a(v)
    assert (hv - b(v)).norm() < 1e-4 * hv.norm()


def test_slq_on_the_test_spectrum():
    d = 400
    g = torch.Generator().manual_seed(0)
    q = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64)).Q
    eig = torch.full((d,), 0.0126, dtype=torch.float64)
    eig[:5] = 1.0
    eig[5] = -0.3
    h = (q * eig) @ q.T
    dens = slq(lambda v: h @ v, d, steps=40, probes=8)
    assert dens.weights.sum().item() == pytest.approx(1.0, abs=1e-9)
    ranks = dens.ranks()
    lam = eig.max().item()
    assert ranks["r"] == pytest.approx((eig.sum() / lam).item(), rel=0.1)
    assert ranks["r_plus"] == pytest.approx((eig.clamp(min=0).sum() / lam).item(), rel=0.1)
    assert ranks["stable_rank"] == pytest.approx((eig.square().sum() / lam**2).item(), rel=0.1)
    assert ranks["participation_ratio"] == pytest.approx((eig.sum() ** 2 / eig.square().sum()).item(), rel=0.15)
    assert dens.lambda_max == pytest.approx(1.0, rel=1e-6)
    assert dens.smoothed(torch.linspace(-1, 2, 3001, dtype=torch.float64), 0.02).sum().item() * 1e-3 == pytest.approx(1.0, rel=0.02)


def test_forward_only_trace_probe_is_unbiased():
    d = 30
    g = torch.Generator().manual_seed(3)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    h = a @ a.T / d
    theta = torch.randn(d, generator=g, dtype=torch.float64)
    loss = lambda: (0.5 * theta @ h @ theta + torch.sin(theta).sum() * 0).item()
    samples = []
    for _ in range(4000):
        z = torch.randn(d, generator=g, dtype=torch.float64)
        samples.append(trace_probe(loss, lambda s: theta.add_(z, alpha=s), 1e-3))
    s = torch.tensor(samples)
    assert abs(s.mean().item() - torch.trace(h).item()) < 4 * s.std().item() / math.sqrt(len(s))
