"""The span-level GLiNER network: encoder -> words and label vectors -> span x label logits."""
from __future__ import annotations

import contextlib
from typing import Dict, Iterator, Optional, Tuple

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..config import GLiNERConfig
from .dropout import use_fast_dropout
from .encoder import TokenRepLayer
from .fusion import CrossFuser
from .layers import projection_mlp
from .span_rep import SpanRepLayer
from .span_scores import marker_span_logits, marker_span_logits_inference

# Word vectors per block through the span MLPs (8 MB [rows, 4D] temporaries at hidden 512).
TERM_BLOCK_ROWS = 1024


class BiLSTM(nn.Module):
    """``rnn.lstm``: a bidirectional LSTM over the words of each text (zeros at padding).

    On CPU in float32, from ``UNPACKED_MIN_WORDS`` words, each direction runs as its own pass over the
    padded batch, the backward one over every text reversed within its own length. The values are those of
    the packed bidirectional LSTM (padding only ever follows a text), but the pass takes oneDNN's
    fused LSTM kernel, which packed sequences never reach: 1.5-3x faster with 2 threads.
    """

    UNPACKED_MIN_WORDS = 16

    def __init__(self, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(hidden_size, hidden_size // 2, num_layers=num_layers, bidirectional=True, batch_first=True)

    def forward(self, words: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        fused = words.device.type == "cpu" and words.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
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
            right_to_left = _take_words(self._direction(_take_words(x, reverse), layer, "_reverse"), reverse)
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
        weights = [getattr(lstm, f"{name}_l{layer}{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        h0 = x.new_zeros(1, x.size(0), lstm.hidden_size)
        out, _, _ = torch.lstm(x, (h0, h0), weights, True, 1, 0.0, self.training, False, True)
        return out


def _take_words(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, index[b, w]]`` for every (b, w): [B, W, D]."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))


def pool_words(
    hidden: torch.Tensor, words_mask: torch.Tensor, attention_mask: torch.Tensor, num_words: int, pooling: str
) -> torch.Tensor:
    """Word vectors from sub-token vectors; ``words_mask`` holds 1-based word ids (0 = not selected)."""
    batch, _, dim = hidden.shape
    words = hidden.new_zeros(batch, num_words, dim)  # [B, W, D]
    if pooling in ("first", "last"):
        b, t = torch.nonzero(words_mask > 0, as_tuple=True)
        words[b, words_mask[b, t] - 1] = hidden[b, t]
        return words
    keep = (words_mask > 0) & (attention_mask > 0) & (words_mask <= num_words)
    b, t = torch.nonzero(keep, as_tuple=True)
    flat_index = (b * num_words + words_mask[b, t] - 1).unsqueeze(-1).expand(-1, dim)
    flat = words.view(batch * num_words, dim)
    reduce = "mean" if pooling == "mean" else "amax"
    flat = flat.scatter_reduce(0, flat_index, hidden[b, t], reduce=reduce, include_self=False)
    return flat.view(batch, num_words, dim)


def gather_prompts(
    hidden: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor, class_token_index: int, shift: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Vectors at the ``<<ENT>>`` tokens (or ``shift`` positions after them), in prompt order."""
    is_ent = (input_ids == class_token_index) & (attention_mask > 0)  # [B, T]
    counts = is_ent.sum(-1)
    num_classes = int(counts.max()) if counts.numel() else 0
    prompts = hidden.new_zeros(hidden.size(0), num_classes, hidden.size(-1))  # [B, C, D]
    b, t = torch.nonzero(is_ent, as_tuple=True)
    slot = torch.cumsum(is_ent.long(), dim=-1)[b, t] - 1
    prompts[b, slot] = hidden[b, t + shift]
    mask = torch.arange(num_classes, device=hidden.device)[None, :] < counts[:, None]  # [B, C]
    return prompts, mask


def enumerate_spans(lengths: torch.Tensor, num_words: int, max_width: int) -> torch.Tensor:
    """``span_idx`` [B, W*K, 2]: (i, i+k), start-major; spans past a text's end point at word 0."""
    start = torch.arange(num_words, device=lengths.device).repeat_interleave(max_width)
    end = start + torch.arange(max_width, device=lengths.device).repeat(num_words)
    idx = torch.stack([start, end], dim=-1).unsqueeze(0)  # [1, W*K, 2]
    valid = (end.unsqueeze(0) < lengths.unsqueeze(-1)).unsqueeze(-1)  # [B, W*K, 1]
    return idx * valid


class GLiNERModel(nn.Module):
    """Span-level GLiNER (uni-encoder, or bi-encoder when ``config.labels_encoder`` is set).

    Attribute names follow the reference so state dicts map key for key.
    """

    def __init__(self, config: GLiNERConfig, text_model: nn.Module, labels_model: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.config = config
        dim = config.hidden_size
        self.token_rep_layer = TokenRepLayer(text_model, dim, config.fuse_layers, labels_model)
        if config.num_rnn_layers > 0:
            self.rnn = BiLSTM(dim, config.num_rnn_layers)
        self.span_rep_layer = SpanRepLayer(config.span_mode, dim, config.max_width, config.dropout)
        self.prompt_rep_layer = projection_mlp(dim, config.dropout)
        if config.fusion_schema:
            heads = text_model.config.num_attention_heads
            self.cross_fuser = CrossFuser(dim, heads, config.num_post_fusion_layers, config.dropout, config.fusion_schema)
        use_fast_dropout(self)  # CPU training: dropout masks from random bits (see dropout.py)
        self._workspace: Optional[Dict[str, torch.Tensor]] = None
        self._workspace_rows = 0

    @contextlib.contextmanager
    def reusing_buffers(self, max_rows: int = 0) -> Iterator[None]:
        """Inference inside this context keeps its largest per-batch buffers (markerV0's span terms,
        [B * W, 4D] each) and reuses them in every batch instead of allocating them anew; they are
        freed on exit. ``max_rows``: the largest B * W to come, so that each buffer is allocated once.
        Over the hundreds of batches of a long document, differently sized buffers allocated per
        batch fragment glibc's heap, so resident memory would grow with the number of batches."""
        outer = self._workspace
        if outer is None:
            self._workspace, self._workspace_rows = {}, int(max_rows)
        try:
            yield
        finally:
            if outer is None:
                self._workspace, self._workspace_rows = None, 0

    def _buffer(self, name: str, rows: int, cols: int, like: torch.Tensor) -> torch.Tensor:
        """An uninitialised [rows, cols] tensor like ``like``: a view of the workspace's buffer when one
        is open (allocated for ``max_rows`` rows, or more if a batch needs it), else a new tensor."""
        ws = self._workspace
        if ws is None or torch.is_grad_enabled():
            return like.new_empty(rows, cols)
        buf = ws.get(name)
        if buf is None or buf.numel() < rows * cols or buf.dtype != like.dtype or buf.device != like.device:
            ws[name] = buf = None  # free the old buffer first
            buf = ws[name] = like.new_empty(max(rows, self._workspace_rows) * cols)
        return buf[: rows * cols].view(rows, cols)

    # ----------------------------------------------------------------------------------------
    @property
    def uses_rnn(self) -> bool:
        # The reference bi-encoder builds its LSTM but never calls it.
        return hasattr(self, "rnn") and (not self.config.is_bi_encoder or self.config.documented_architecture)

    @property
    def uses_fusion(self) -> bool:
        # The reference uni-encoder builds its CrossFuser but never calls it.
        return hasattr(self, "cross_fuser") and (self.config.is_bi_encoder or self.config.documented_architecture)

    def encode_labels(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Bi-encoder label vectors ``[N, D]`` (before the prompt MLP); cacheable per label set."""
        return self.token_rep_layer.encode_labels(input_ids, attention_mask)

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        words_mask: torch.Tensor,
        text_lengths: torch.Tensor,
        labels_embeddings: Optional[torch.Tensor] = None,
        labels_mask: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Contextual word vectors [B, W, D] + mask, label vectors [B, C, D] + mask."""
        cfg = self.config
        text_lengths = text_lengths.view(-1)
        num_words = int(text_lengths.max()) if text_lengths.numel() else 0
        hidden = self.token_rep_layer.encode_text(input_ids, attention_mask)  # [B, T, D]
        if cfg.is_bi_encoder:
            if labels_embeddings is None or labels_mask is None:
                raise ValueError("A bi-encoder GLiNER needs labels_embeddings and labels_mask.")
            prompts, prompts_mask = labels_embeddings, labels_mask.bool()
        else:
            shift = 0 if cfg.embed_ent_token else 1
            prompts, prompts_mask = gather_prompts(hidden, input_ids, attention_mask, cfg.class_token_index, shift)
        words = pool_words(hidden, words_mask, attention_mask, num_words, cfg.subtoken_pooling)  # [B, W, D]
        word_mask = torch.arange(num_words, device=words.device)[None, :] < text_lengths[:, None]  # [B, W]
        if self.uses_rnn:
            words = self.rnn(words, text_lengths)
        if self.uses_fusion:
            prompts, words = self.cross_fuser(prompts, words, prompts_mask, word_mask)
            prompts = prompts * prompts_mask.unsqueeze(-1).to(prompts.dtype)
        return words, word_mask, prompts, prompts_mask

    def score_spans(self, words: torch.Tensor, word_mask: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """Logits [B, W, K, C] for every (start word, width, label)."""
        labels = self.prompt_rep_layer(prompts)  # [B, C, D]
        span_layer = self.span_rep_layer.span_rep_layer
        if hasattr(span_layer, "span_terms"):
            return self._score_marker_factored(span_layer, words, labels)
        lengths = word_mask.sum(-1)
        span_idx = enumerate_spans(lengths, words.size(1), self.config.max_width)
        spans = self.span_rep_layer(words, span_idx)  # [B, W, K, D]
        return torch.einsum("bwkd,bcd->bwkc", spans, labels)

    def _score_marker_factored(self, span_layer: nn.Module, words: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """markerV0 without materialising span vectors of size D.

        ``out_project`` = Linear1 -> ReLU -> Dropout -> Linear2 over ReLU([S; E]); Linear1 splits into a
        per-start plus a per-end term, and Linear2 folds into the label vectors, so each span costs an
        add, a ReLU and a product with C label vectors (``span_scores.py``).
        """
        width = self.config.max_width
        out = span_layer.out_project
        last = out[3]
        label_vecs = labels @ last.weight  # [B, C, 4D]
        label_bias = labels @ last.bias  # [B, C]
        start_term, end_term = self._span_terms(span_layer, words)  # [B, W, 4D] each
        if not torch.is_grad_enabled():
            logits = marker_span_logits_inference(start_term, end_term, label_vecs, width)
            return logits.add_(label_bias[:, None, None, :])
        batch, num_words, hidden4 = start_term.shape
        num_labels = label_vecs.size(1)
        if num_words == 0 or num_labels == 0:
            return start_term.new_zeros(batch, num_words, width, num_labels)
        if not torch.is_autocast_enabled(start_term.device.type):
            drop = out[2].p if out[2].training else 0.0
            scaled = label_vecs * (1.0 / (1.0 - drop)) if drop else label_vecs
            return marker_span_logits(start_term, end_term, scaled, width, drop) + label_bias[:, None, None, :]
        # Training under autocast: plain autograd, a few start words at a time. Cells with end >= W get a
        # zero end term (the same value for every such width).
        tail = torch.einsum("bwh,bch->bwc", out[2](torch.relu(start_term)), label_vecs)  # [B, W, C]
        padded = torch.cat([end_term, end_term.new_zeros(batch, width - 1, hidden4)], dim=1)  # [B, W+K-1, 4D]
        step = max(1, (2 << 20) // max(1, batch * width * hidden4 * start_term.element_size()))
        pieces = []
        for w0 in range(0, num_words, step):
            w1 = min(num_words, w0 + step)
            k_used = min(width, num_words - w0)  # widths whose end is < W for some start in the chunk
            ends = padded[:, w0 : w1 + k_used - 1].unfold(1, k_used, 1).transpose(-1, -2)  # [B, w, k, 4D]
            spans = out[2](torch.relu(start_term[:, w0:w1, None, :] + ends))
            piece = torch.einsum("bwkh,bch->bwkc", spans, label_vecs)  # [B, w, k, C]
            if k_used < width:
                rest = tail[:, w0:w1, None, :].expand(batch, w1 - w0, width - k_used, num_labels)
                piece = torch.cat([piece, rest], dim=2)
            pieces.append(piece)
        logits = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
        return logits + label_bias[:, None, None, :]

    def _span_terms(self, span_layer: nn.Module, words: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``span_layer.span_terms(words)``, ``TERM_BLOCK_ROWS`` word vectors at a time into two output
        buffers (at inference the MLPs' [rows, 4D] temporaries stay small). Word vectors that are all
        zero (batch padding, words without sub-tokens) are not run: they share the zero vector's terms."""
        batch, num_words, dim = words.shape
        flat = words.reshape(-1, dim)
        real = flat.abs().amax(-1) != 0  # [B*W] (float reduction: bool kernels are slow on CPU)
        zero_start, zero_end = span_layer.span_terms(words.new_zeros(1, 1, dim))  # [1, 1, 4D]
        hidden4 = zero_start.size(-1)
        start = self._buffer("start_terms", flat.size(0), hidden4, zero_start)  # [B*W, 4D] (autocast: the terms' dtype)
        end = self._buffer("end_terms", flat.size(0), hidden4, zero_end)
        rows = real.nonzero().squeeze(1)
        contiguous = rows.numel() == flat.size(0)
        if not contiguous:
            start[~real] = zero_start.view(hidden4)
            end[~real] = zero_end.view(hidden4)
        for r0 in range(0, rows.numel(), TERM_BLOCK_ROWS):
            r1 = min(rows.numel(), r0 + TERM_BLOCK_ROWS)
            if contiguous:
                s, e = span_layer.span_terms(flat[r0:r1].unsqueeze(0))
                start[r0:r1], end[r0:r1] = s[0], e[0]
            else:
                idx = rows[r0:r1]
                s, e = span_layer.span_terms(flat.index_select(0, idx).unsqueeze(0))
                start.index_copy_(0, idx, s[0])
                end.index_copy_(0, idx, e[0])
        return start.view(batch, num_words, hidden4), end.view(batch, num_words, hidden4)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        words_mask: torch.Tensor,
        text_lengths: torch.Tensor,
        labels_embeddings: Optional[torch.Tensor] = None,
        labels_mask: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(logits [B, W, K, C], word_mask [B, W], label_mask [B, C])``."""
        words, word_mask, prompts, prompts_mask = self.encode(
            input_ids, attention_mask, words_mask, text_lengths, labels_embeddings, labels_mask
        )
        return self.score_spans(words, word_mask, prompts), word_mask, prompts_mask
