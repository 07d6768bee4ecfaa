"""The TFT's variable selection networks with every variable's GRN run as one batch.

pytorch-forecasting's ``VariableSelectionNetwork`` runs a prescaler and a gated residual
network (~15 small ops) per input variable: ~30 variables make that most of our small TFT's
op count, in training and in serving alike. When every variable has the same shape (all-real
inputs, as ours are), the same parameters can run as batched matmuls over stacked weights:
the same arithmetic in another summation order, so outputs agree to float rounding (training:
``tests/models/test_training_step.py``; serving: ``tests/models/test_lean_network.py``).
"""

from __future__ import annotations

from typing import Any

import torch

VSN_NAMES = (
    "static_variable_selection",
    "encoder_variable_selection",
    "decoder_variable_selection",
)


def stackable(vsn: Any) -> bool:
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


def select_stacked(
    vsn: Any, values: torch.Tensor, context: torch.Tensor | None = None, *, exact: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``VariableSelectionNetwork.forward`` on ``values`` ``[..., V]`` (one raw scalar per
    input, in ``vsn.input_sizes`` order): (the selected embedding ``[..., H]``, the selection
    weights ``[..., 1, V]``), as the stock forward returns them, in ~30 ops instead of ~15 per
    variable. ``vsn`` must be ``stackable``.

    ``exact=True`` picks, for each step, the kernel that rounds as the stock per-variable op
    does (the one-input prescaler as ``nn.Linear`` rounds it, each gate's sigmoid on its own,
    ``addcmul`` for the LayerNorm affine, the interpolation itself, the weighted sum as a product
    and a sum), so the result
    is bit-identical to the stock forward (``tests/models/test_lean_network.py``); serving uses it. Training keeps
    the first rewrite's arithmetic (a matmul for the interpolation, a bmm for the sum): the
    shipped checkpoint's weights were trained with it and its command reproduces them bit for
    bit.
    """
    from torch.nn import functional as nnf

    names = list(vsn.input_sizes)
    grns = [vsn.single_variable_grns[n] for n in names]
    pre = [vsn.prescalers[n] for n in names]
    g0 = grns[0]
    n_v, size_in, size_out = len(names), g0.input_size, g0.output_size

    def stacked(get: Any) -> torch.Tensor:  # [V, 1, ...]: one row per variable
        return torch.stack([get(m) for m in grns])[:, None]

    def linear(h: torch.Tensor, get: Any) -> torch.Tensor:  # per-variable nn.Linear
        mods = [get(g) for g in grns]
        weight = torch.stack([m.weight for m in mods]).transpose(1, 2)
        bias = torch.stack([m.bias for m in mods])[:, None]
        if exact:  # rounds as addmm does, without baddbmm's copy of the broadcast bias
            return torch.bmm(h, weight).add_(bias)  # in place: a fresh tensor, serving only
        return torch.baddbmm(bias, h, weight)

    def layer_norm(h: torch.Tensor, get: Any) -> torch.Tensor:  # per-variable nn.LayerNorm
        h = nnf.layer_norm(h, (size_out,), eps=get(g0).eps)
        gamma, beta = stacked(lambda g: get(g).weight), stacked(lambda g: get(g).bias)
        return torch.addcmul(beta, h, gamma) if exact else h * gamma + beta

    lead = values.shape[:-1]
    values = values.reshape(-1, n_v).t()[:, :, None]  # [V, N, 1]
    pre_bias = torch.stack([p.bias for p in pre])[:, None]  # [V, 1, I]
    if exact:
        pre_weight = torch.stack([p.weight[:, 0] for p in pre])[:, None]  # [V, 1, I]
        # nn.Linear on one input: a fused multiply-add for 2-d input (addmm), a product then
        # a sum for more dimensions (matmul, then the bias added)
        if len(lead) == 1:
            emb = torch.addcmul(pre_bias, values, pre_weight)
        else:
            emb = values * pre_weight + pre_bias
        resampled = nnf.interpolate(
            emb.reshape(-1, 1, size_in), size_out, mode="linear", align_corners=True
        ).reshape(n_v, -1, size_out)
    else:
        emb = torch.baddbmm(pre_bias, values, torch.stack([p.weight for p in pre]).transpose(1, 2))
        # ResampleNorm's linear interpolation to the output size is a fixed linear map
        eye = torch.eye(size_in, dtype=emb.dtype, device=emb.device)
        resampled = (
            emb @ nnf.interpolate(eye[:, None], size_out, mode="linear", align_corners=True)[:, 0]
        )
    if exact:  # each mask's sigmoid alone: on the stacked masks it rounds differently
        gate = stacked(lambda g: torch.sigmoid(g.resample_norm.mask))
    else:
        gate = torch.sigmoid(stacked(lambda g: g.resample_norm.mask))
    residual = resampled * (gate * 2.0)
    residual = layer_norm(residual, lambda g: g.resample_norm.norm)
    h = nnf.elu(linear(emb, lambda g: g.fc1))
    h = linear(h, lambda g: g.fc2)
    h = nnf.dropout(h, g0.gate_norm.glu.dropout.p, vsn.training)
    h = nnf.glu(linear(h, lambda g: g.gate_norm.glu.fc), dim=-1)
    out = layer_norm(h + residual, lambda g: g.gate_norm.add_norm.norm)  # [V, N, H]
    flat = emb.permute(1, 0, 2).reshape(*lead, -1)
    weights = vsn.softmax(vsn.flattened_grn(flat, context))  # [..., V]
    if exact:  # the stock layout [..., H, V] and reduction
        per_var = out.permute(1, 2, 0).contiguous().reshape(*lead, size_out, n_v)
        return (per_var * weights.unsqueeze(-2)).sum(dim=-1), weights.unsqueeze(-2)
    outputs = torch.bmm(out.permute(1, 2, 0), weights.reshape(-1, n_v, 1))
    return outputs.reshape(*lead, size_out), weights.unsqueeze(-2)


def stacked_forward(
    vsn: Any, x: dict[str, torch.Tensor], context: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A drop-in ``VariableSelectionNetwork.forward``: ``select_stacked`` on the input dict."""
    return select_stacked(vsn, torch.cat([x[n] for n in vsn.input_sizes], dim=-1), context)
