"""The theory issue's validation spectrum: d=1000, five eigenvalues 1.0, 995 at 0.005025 (r = 10).

    python benchmarks/theory_validation.py
"""

import torch

from zoo.theory import effective_rank, gamma

D = 1000
g = torch.Generator().manual_seed(0)
q = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64)).Q
eig = torch.full((D,), 0.005025, dtype=torch.float64)
eig[:5] = 1.0
h = (q * eig) @ q.T
true_r = (eig.sum() / eig.max()).item()
print(f"true r = {true_r:.4f}")
for method, m in (("hutch++", 99), ("hutchinson", 100)):
    for seed in range(3):
        r = effective_rank(lambda v: h @ v, D, num_matvecs=m, method=method, seed=seed)
        print(f"{method:10s} seed {seed}: r = {r.r:.4f} +- {r.r_stderr:.4f} (error {100 * (r.r / true_r - 1):+.2f}%), "
              f"lambda_max = {r.lambda_max:.6f} (error {100 * (r.lambda_max - 1):+.4f}%), matvecs {r.matvecs}")
print("gamma gaussian n=1,4:", gamma(10, 1), gamma(10, 4), " sphere d=1000 n=1,4:",
      round(gamma(10, 1, "sphere", 1000), 4), round(gamma(10, 4, "sphere", 1000), 4))
