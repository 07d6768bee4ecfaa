"""The TFT's training loss: per-target quantile loss, masked where a target was not observed.

Vital signs arrive at different rates (a cuff every few hours, a CGM for some patients only),
so most decoder steps lack some targets. pytorch-forecasting gives a loss one weight per
decoder step, shared by all targets; ``MaskedMultiLoss`` reads that weight as a bitmask
(bit k set = target k observed, see ``dataset.target_bits``) and averages each target's
quantile loss over its observed steps only. Targets are weighted by 1 / their normalisation
scale so that bpm, mmHg and mg/dL count alike.

For one target with quantiles q and observed mask w the value is
``sum(w * 2 * max((q - 1) e, q e)) / (n_quantiles * sum(w))`` with ``e = y - y_hat`` - what
``QuantileLoss`` gives on the observed steps. It is computed directly (no torchmetrics state),
which is also what keeps it cheap in the training loop.
"""

from __future__ import annotations

from typing import Any

import torch
from pytorch_forecasting.metrics import MultiLoss, QuantileLoss


class MaskedMultiLoss(MultiLoss):
    def __init__(
        self, quantiles: list[float], n_targets: int, weights: list[float] | None = None
    ) -> None:
        super().__init__(
            [QuantileLoss(quantiles=list(quantiles)) for _ in range(n_targets)], weights
        )
        # built once, not every step (``.to`` is a no-op for the same dtype and device)
        self._q = torch.tensor(list(quantiles))
        self._w = torch.tensor(self.weights)

    def per_target(self, y_pred: list[torch.Tensor], y_actual: Any) -> torch.Tensor:
        """``[n_targets]`` masked mean quantile losses (unweighted)."""
        targets, bits = y_actual
        target = targets if isinstance(targets, torch.Tensor) else torch.stack(targets, dim=-1)
        pred = torch.stack(y_pred, dim=-2)  # [..., T, Q]
        n_t, n_q = pred.shape[-2], pred.shape[-1]
        q = self._q.to(pred)
        shifts = torch.arange(n_t, device=bits.device)
        w = ((bits.to(torch.int64)[..., None] >> shifts) & 1).to(pred.dtype)  # [..., T]
        err = torch.nan_to_num(target)[..., None] - pred
        loss = 2 * torch.maximum((q - 1) * err, q * err)
        dims = tuple(range(loss.dim() - 2))
        total = (loss.sum(-1) * w).sum(dims)
        return total / (n_q * w.sum(dims).clamp_min(1.0))

    def forward(self, y_pred: Any, y_actual: Any, **kwargs: Any) -> torch.Tensor:
        per = self.per_target(y_pred, y_actual)
        return (per * self._w.to(per)).sum()
