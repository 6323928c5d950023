"""Linear probe: a softmax classifier fit on frozen features (used for the PCA and random baselines).

Features are standardised with training-set statistics, then a multinomial logistic regression is
fit full-batch with L-BFGS in torch (fast and deterministic for up to a few hundred thousand rows).
"""

from __future__ import annotations

import numpy as np
import torch

from mrl.checks import check_labels, check_matrix


def fit_linear_probe(train_x: np.ndarray, train_y: np.ndarray, *, num_classes: int | None = None, weight_decay: float = 1e-4, max_iter: int = 200, seed: int = 0) -> LinearProbe:
    """Fit a probe. Shape: ``train_x [N, d]`` float, ``train_y [N]`` int."""
    check_matrix(train_x, "probe features")
    check_labels(train_y, train_x.shape[0], "probe labels")
    c = int(num_classes or train_y.max() + 1)
    x = torch.from_numpy(np.asarray(train_x, dtype=np.float32))
    y = torch.from_numpy(np.asarray(train_y, dtype=np.int64))
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    xs = (x - mean) / std
    gen = torch.Generator().manual_seed(seed)
    linear = torch.nn.Linear(x.shape[1], c)
    with torch.no_grad():
        linear.weight.normal_(0, 0.01, generator=gen)
        linear.bias.zero_()
    opt = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(xs), y) + weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return LinearProbe(linear.eval(), mean, std)


class LinearProbe:
    """A fitted probe. ``predict_logits(x [N, d]) -> [N, C]`` numpy."""

    def __init__(self, linear: torch.nn.Linear, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.linear, self.mean, self.std = linear, mean, std

    @torch.no_grad()
    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        check_matrix(x, "probe features", cols=self.linear.in_features)
        xs = (torch.from_numpy(np.asarray(x, dtype=np.float32)) - self.mean) / self.std
        return self.linear(xs).numpy()
