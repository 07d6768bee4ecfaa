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

    def per_target(self, y_pred: list[torch.Tensor], y_actual: Any) -> torch.Tensor:
        """``[n_targets]`` masked mean quantile losses (unweighted)."""
        targets, bits = y_actual
        if isinstance(targets, torch.Tensor):
            targets = [targets[..., k] for k in range(targets.shape[-1])]
        bits_i = bits.to(torch.int64)
        out = []
        for k, (pred, target) in enumerate(zip(y_pred, targets, strict=True)):
            metric = self.metrics[k]
            q = torch.tensor(metric.quantiles, dtype=pred.dtype, device=pred.device)
            w = ((bits_i >> k) & 1).to(pred.dtype)
            err = torch.nan_to_num(target)[..., None] - pred
            loss = 2 * torch.maximum((q - 1) * err, q * err)
            total = (loss * w[..., None]).sum()
            out.append(total / (len(metric.quantiles) * w.sum().clamp_min(1.0)))
        return torch.stack(out)

    def forward(self, y_pred: Any, y_actual: Any, **kwargs: Any) -> torch.Tensor:
        per = self.per_target(y_pred, y_actual)
        weights = torch.tensor(self.weights, dtype=per.dtype, device=per.device)
        return (per * weights).sum()
