"""The BiLSTM over word vectors (``rnn.lstm`` in checkpoints)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

# ``torch.lstm`` (the ATen op nn.LSTM calls) with positional arguments: its signature has been
# stable since torch 1.x; checked here so a change falls back to the packed nn.LSTM path.
FUSED_LSTM_AVAILABLE = callable(getattr(torch, "lstm", None))


class BiLSTM(nn.Module):
    """``rnn.lstm``: a bidirectional LSTM over the words of each text (zeros at padding).

    On CPU in float32, from ``UNPACKED_MIN_WORDS`` words, each direction runs as its own pass over the
    padded batch, the backward one over every text reversed within its own length. The values are those of
    the packed bidirectional LSTM (padding only ever follows a text), but the pass takes oneDNN's
    fused LSTM kernel, which packed sequences never reach. ``tests/test_lstm.py`` pins both paths equal.
    """

    UNPACKED_MIN_WORDS = 16

    def __init__(self, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            hidden_size,
            hidden_size // 2,
            num_layers=num_layers,
            bidirectional=True,
            batch_first=True,
        )

    def forward(self, words: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        fused = (
            FUSED_LSTM_AVAILABLE
            and words.device.type == "cpu"
            and words.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu")
        )
        if not fused or words.size(1) < self.UNPACKED_MIN_WORDS or words.size(0) == 0:
            return self._packed(words, lengths)
        num_words = words.size(1)
        pos = torch.arange(num_words, device=words.device)[None, :]
        lengths = lengths.to(words.device)[:, None]
        valid = pos < lengths  # [B, W]
        reverse = torch.where(valid, lengths - 1 - pos, pos)  # each text reversed, padding in place
        x = words
        for layer in range(self.lstm.num_layers):
            left_to_right = self._direction(x, layer, "")
            right_to_left = _take_words(
                self._direction(_take_words(x, reverse), layer, "_reverse"), reverse
            )
            x = torch.cat([left_to_right, right_to_left], dim=-1)
        return x * valid.unsqueeze(-1).to(x.dtype)  # [B, W, D]

    def _packed(self, words: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(words, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=words.size(1))
        return out  # [B, W, D]

    def _direction(self, x: torch.Tensor, layer: int, suffix: str) -> torch.Tensor:
        """One direction of one layer, left to right over ``x`` [B, W, I] -> [B, W, H]."""
        lstm = self.lstm
        weights = [
            getattr(lstm, f"{name}_l{layer}{suffix}")
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ]
        h0 = x.new_zeros(1, x.size(0), lstm.hidden_size)
        out, _, _ = torch.lstm(x, (h0, h0), weights, True, 1, 0.0, self.training, False, True)
        return out


def _take_words(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, index[b, w]]`` for every (b, w): [B, W, D]."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))
