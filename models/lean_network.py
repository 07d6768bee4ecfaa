"""The TFT's forward for serving: the same parameters and layers, fewer and larger ops.

pytorch-forecasting's forward splits the inputs into one tensor per variable (a dict of ~30),
slices each again for the static, encoder and decoder parts, and runs every variable's
prescaler and GRN on its own: ~1,100 small ops a call, of which the variable selection is
most. ``LeanTFT`` reads each part's variables with one index, runs the variable selection
stacked (``models.variable_selection``) and calls the TFT's own submodules for everything
else (LSTMs, attention, gates, output layers, de-normalisation), in the same order.

The stacked steps use the kernels that round as the stock per-variable ops do
(``select_stacked(exact=True)``): on the shipped model the outputs equal the stock network's
bit for bit on the benchmark's batches of 32, 64 and 1000, and otherwise differ by a float32
rounding step or two (at most 1.5e-5 over 120k evaluation windows, in mg/dL and mmHg; 3e-5 at
batch 1, where the stock linear layers take another BLAS path). That depends on the BLAS
build, so ``models.runners.TorchRunner`` checks each lean trace against the stock one when it
is made and keeps the stock trace if they differ by more than ``LEAN_TOLERANCE``
(``tests/models/test_lean_network.py``).
"""

from __future__ import annotations

from typing import Any

import torch

from models.variable_selection import VSN_NAMES, select_stacked, stackable

# Largest difference from the stock network a lean trace may show on the check windows: the
# bound the fast path is held to against predict(). Another rounding differs by a few float32
# steps (~3e-5 on glucose in mg/dL); a wrong layer or variable order by far more.
LEAN_TOLERANCE = 1e-4


def leanable(tft: Any) -> bool:
    """Whether ``LeanTFT`` covers this network: all-real inputs, every VSN stackable, and the
    static variables present (ours always are)."""
    hp = tft.hparams
    categorical = (
        hp.static_categoricals
        or hp.time_varying_categoricals_encoder
        or hp.time_varying_categoricals_decoder
    )
    return (
        not categorical
        and len(tft.static_variables) > 0
        and all(stackable(getattr(tft, n)) for n in VSN_NAMES)
    )


class LeanTFT(torch.nn.Module):
    """``(encoder_cont, decoder_cont, target_scale) -> (prediction [N, T, D, Q], static
    weights, encoder weights, encoder attention)``, every batch at full encoder and decoder
    lengths - the signature of ``models.runners._Exportable`` with a target scale."""

    def __init__(self, tft: Any) -> None:
        super().__init__()
        if not leanable(tft):
            raise ValueError("LeanTFT needs an all-real TFT with stackable variable selection")
        self.tft = tft
        reals = list(tft.hparams.x_reals)
        # index tensors, not lists: a traced list index would become one select per entry
        self.register_buffer("static_idx", _index(reals, tft.static_variables), persistent=False)
        self.register_buffer("enc_idx", _index(reals, tft.encoder_variables), persistent=False)
        self.register_buffer("dec_idx", _index(reals, tft.decoder_variables), persistent=False)

    def forward(
        self, encoder_cont: torch.Tensor, decoder_cont: torch.Tensor, target_scale: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        t = self.tft
        e, d = encoder_cont.shape[1], decoder_cont.shape[1]
        ones = torch.ones_like(encoder_cont[:, 0, 0], dtype=torch.long)
        encoder_lengths, decoder_lengths = ones * e, ones * d

        statics = encoder_cont[:, 0].index_select(-1, self.static_idx)
        static_embedding, static_weights = select_stacked(
            t.static_variable_selection, statics, exact=True
        )
        context = t.static_context_variable_selection(static_embedding)[:, None]
        encoder_in, encoder_weights = select_stacked(
            t.encoder_variable_selection,
            encoder_cont.index_select(-1, self.enc_idx),
            context.expand(-1, e, -1),
            exact=True,
        )
        decoder_in, _ = select_stacked(
            t.decoder_variable_selection,
            decoder_cont.index_select(-1, self.dec_idx),
            context.expand(-1, d, -1),
            exact=True,
        )

        layers = t.hparams.lstm_layers
        hidden = t.static_context_initial_hidden_lstm(static_embedding).expand(layers, -1, -1)
        cell = t.static_context_initial_cell_lstm(static_embedding).expand(layers, -1, -1)
        encoder_out, (hidden, cell) = t.lstm_encoder(
            encoder_in, (hidden, cell), lengths=encoder_lengths, enforce_sorted=False
        )
        decoder_out, _ = t.lstm_decoder(
            decoder_in, (hidden, cell), lengths=decoder_lengths, enforce_sorted=False
        )
        lstm_encoder = t.post_lstm_add_norm_encoder(
            t.post_lstm_gate_encoder(encoder_out), encoder_in
        )
        lstm_decoder = t.post_lstm_add_norm_decoder(
            t.post_lstm_gate_decoder(decoder_out), decoder_in
        )
        lstm_output = torch.cat([lstm_encoder, lstm_decoder], dim=1)

        enrichment = t.static_context_enrichment(static_embedding)[:, None].expand(-1, e + d, -1)
        attn_input = t.static_enrichment(lstm_output, enrichment)
        attn_output, attn_weights = t.multihead_attn(
            q=attn_input[:, e:],
            k=attn_input,
            v=attn_input,
            mask=t.get_attention_mask(
                encoder_lengths=encoder_lengths, decoder_lengths=decoder_lengths
            ),
        )
        attn_output = t.post_attn_gate_norm(attn_output, attn_input[:, e:])
        output = t.pre_output_gate_norm(t.pos_wise_ff(attn_output), lstm_output[:, e:])
        if t.n_targets > 1:
            output = [layer(output) for layer in t.output_layer]
        else:
            output = t.output_layer(output)
        scales = [target_scale[:, k] for k in range(target_scale.shape[1])]
        prediction = t.transform_output(output, target_scale=scales)
        if isinstance(prediction, list | tuple):
            prediction = torch.stack(list(prediction), dim=1)
        else:
            prediction = prediction[:, None]  # one target: the same target axis
        return prediction, static_weights, encoder_weights, attn_weights[..., :e]


def _index(reals: list[str], names: list[str]) -> torch.Tensor:
    return torch.tensor([reals.index(n) for n in names], dtype=torch.long)
