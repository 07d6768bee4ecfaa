"""Exact, faster rewrites of one training step for our small TFT.

Once batches cost nothing, a step is dominated by per-tensor overhead: Adam and clipping over
~550 small parameter tensors, and ~15 ops for each of the ~30 per-variable GRNs in the
variable selection networks. ``FlatAdam`` applies the same update over one flat buffer and
``stacked_variable_selection`` runs the GRNs as one batched matmul each; both are checked
against the stock path in ``tests/models/test_training_step.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


class FlatAdam(torch.optim.Optimizer):
    """``torch.optim.Adam`` (no weight decay) plus global-norm gradient clipping, over one flat
    buffer that every parameter and gradient of ``model`` becomes a view into.

    The TFT has ~550 small tensors: ``torch.optim.Adam`` with ``clip_grad_norm_`` costs ~15-20 %
    of a step on them (per-tensor bookkeeping and, with Lightning imported, an NVML device
    probe on every ``step``); on one buffer the same arithmetic is a dozen ops. Gradients must
    accumulate in place, so ``zero_grad`` zeroes the buffer instead of dropping the views.
    Call ``release`` when done: it gives the parameters their own storage again, so that
    ``state_dict`` and the checkpoint look exactly as without this optimiser.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        lr: float,
        grad_clip: float | None,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        n = sum(p.numel() for p in self.params)
        dtype = self.params[0].dtype
        flat = torch.empty(n, dtype=dtype)
        self.grad = torch.zeros(n, dtype=dtype)
        a = 0
        for p in self.params:
            b = a + p.numel()
            flat[a:b].copy_(p.detach().reshape(-1))
            p.data = flat[a:b].view_as(p)
            p.grad = self.grad[a:b].view_as(p)
            a = b
        self.flat = flat
        self.grad_clip = grad_clip
        self.exp_avg = torch.zeros_like(flat)
        self.exp_avg_sq = torch.zeros_like(flat)
        self.steps = 0
        super().__init__([flat], {"lr": lr, "betas": betas, "eps": eps})

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.grad.zero_()

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        group = self.param_groups[0]
        g = self.grad
        if self.grad_clip is not None:
            # clip_grad_norm_'s rule: scale by max_norm / (norm + 1e-6) when that is below 1
            norm = torch.linalg.vector_norm(g)
            g.mul_((self.grad_clip / (norm + 1e-6)).clamp_(max=1.0))
        self.steps += 1
        beta1, beta2 = group["betas"]
        self.exp_avg.lerp_(g, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        bias1 = 1 - beta1**self.steps
        bias2_sqrt = math.sqrt(1 - beta2**self.steps)
        denom = (self.exp_avg_sq.sqrt() / bias2_sqrt).add_(group["eps"])
        self.flat.addcdiv_(self.exp_avg, denom, value=-group["lr"] / bias1)

    def release(self) -> None:
        for p in self.params:
            p.data = p.data.clone()
            p.grad = None


def _stackable(vsn: Any) -> bool:
    """Whether every input of a variable selection network goes through the same-shaped
    prescaler + GRN (true for all-real inputs, as ours are): then they can run as one batch."""
    from pytorch_forecasting.models.temporal_fusion_transformer.sub_modules import (
        GatedResidualNetwork,
    )

    names = list(vsn.input_sizes)
    if vsn.num_inputs <= 1 or len({vsn.input_sizes[n] for n in names}) != 1:
        return False
    for n in names:
        g = vsn.single_variable_grns[n]
        if (
            n not in vsn.prescalers
            or not isinstance(g, GatedResidualNetwork)
            or g.context_size is not None
            or g.residual
            or g.input_size == g.output_size
            or not g.resample_norm.trainable_add
            or g.gate_norm.add_norm.trainable_add
            or g.gate_norm.add_norm.input_size != g.gate_norm.add_norm.skip_size
            or g.gate_norm.glu.dropout is None
        ):
            return False
    return True


def _stacked_forward(
    vsn: Any, x: dict[str, torch.Tensor], context: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``VariableSelectionNetwork.forward`` with its per-variable prescaler and GRN run as one
    batched matmul over stacked weights: the same parameters and arithmetic (predictions and
    gradients agree to float rounding, see ``tests/models/test_training_step.py``), in ~30 ops
    instead of ~15 per variable, which dominated the forward and backward of our small TFT."""
    from torch.nn import functional as nnf

    names = list(vsn.input_sizes)
    grns = [vsn.single_variable_grns[n] for n in names]
    pre = [vsn.prescalers[n] for n in names]
    g0 = grns[0]
    n_v, size_out = len(names), g0.output_size

    def stacked(get: Any) -> torch.Tensor:  # [V, 1, ...]: one row per variable
        return torch.stack([get(m) for m in grns])[:, None]

    def linear(h: torch.Tensor, get: Any) -> torch.Tensor:  # per-variable nn.Linear
        mods = [get(g) for g in grns]
        weight = torch.stack([m.weight for m in mods]).transpose(1, 2)
        return torch.baddbmm(torch.stack([m.bias for m in mods])[:, None], h, weight)

    def layer_norm(h: torch.Tensor, get: Any) -> torch.Tensor:  # per-variable nn.LayerNorm
        h = nnf.layer_norm(h, (size_out,), eps=get(g0).eps)
        return h * stacked(lambda g: get(g).weight) + stacked(lambda g: get(g).bias)

    values = torch.cat([x[n] for n in names], dim=-1)
    lead = values.shape[:-1]
    values = values.reshape(-1, n_v).t()[:, :, None]  # [V, N, 1]
    emb = torch.baddbmm(
        torch.stack([p.bias for p in pre])[:, None],
        values,
        torch.stack([p.weight for p in pre]).transpose(1, 2),
    )  # [V, N, I]
    # ResampleNorm's linear interpolation to the output size is a fixed linear map
    eye = torch.eye(g0.input_size, dtype=emb.dtype, device=emb.device)
    resample = nnf.interpolate(eye[:, None], size_out, mode="linear", align_corners=True)[:, 0]
    residual = (emb @ resample) * (torch.sigmoid(stacked(lambda g: g.resample_norm.mask)) * 2.0)
    residual = layer_norm(residual, lambda g: g.resample_norm.norm)
    h = nnf.elu(linear(emb, lambda g: g.fc1))
    h = linear(h, lambda g: g.fc2)
    h = nnf.dropout(h, g0.gate_norm.glu.dropout.p, vsn.training)
    h = nnf.glu(linear(h, lambda g: g.gate_norm.glu.fc), dim=-1)
    out = layer_norm(h + residual, lambda g: g.gate_norm.add_norm.norm)  # [V, N, H]
    flat = emb.permute(1, 0, 2).reshape(*lead, -1)
    weights = vsn.softmax(vsn.flattened_grn(flat, context))  # [..., V]
    outputs = torch.bmm(out.permute(1, 2, 0), weights.reshape(-1, n_v, 1))
    return outputs.reshape(*lead, size_out), weights.unsqueeze(-2)


@contextmanager
def stacked_variable_selection(model: Any) -> Iterator[None]:
    """Run the model's variable selection networks through ``_stacked_forward`` meanwhile."""
    import types

    patched = []
    names = (
        "static_variable_selection",
        "encoder_variable_selection",
        "decoder_variable_selection",
    )
    for name in names:
        vsn = getattr(model, name, None)
        if vsn is not None and _stackable(vsn):
            vsn.forward = types.MethodType(_stacked_forward, vsn)
            patched.append(vsn)
    try:
        yield
    finally:
        for vsn in patched:
            del vsn.forward
