"""The generative label decoder of gliner's label-decoder models: a causal language model from
transformers (GPT-2, Llama, ...) that writes an entity type name for a span, greedily.

Decoder inputs are built as the reference's ``select_span_decoder_embedding`` (span-level) and
``select_token_decoder_embedding`` (token-level) build them (``decoder_mode == "span"``;
``decoder_prefixes`` is the layout both share), and the generation is the reference's
``generate`` with greedy search (``do_sample=False``, one sequence), so generated token ids
match it exactly:

* each selected span reads ``[zeros ..., span vector, embeddings of the span's decoder tokens]``
  (``full_decoder_context``; otherwise the span vector alone), left-padded with zero vectors to
  one length ``T`` for the batch, **and every position is attended** (the reference passes no
  attention mask to ``generate``). ``T - 1`` is the largest count of decoder tokens whose word
  id lies in a selected span's range and, for the reference's padding slots (rows with fewer
  selected spans than the batch's span axis), in the slot's range, counting each row's tokens
  (word id 0: prompt, special and padding tokens). Span-level: a span's range is
  ``[start + 1, end + 1]`` and a slot's ``[0, max_width - 1]``; token-level: see
  ``token_decoder_model``. A span's generated label therefore depends on the other rows of its
  batch, as in the reference.
* generation stops a row at ``eos``; finished rows are padded with ``pad``.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn

from .encoder import hf_config_from_dict
from .layers import projection_mlp

MAX_LABEL_TOKENS = 15  # the reference's default max_new_tokens for label generation


def causal_lm_from_config(hf_config: Any, attn_implementation: str | None = None) -> nn.Module:
    """A causal LM with random weights from ``hf_config`` (attention: ``attn_implementation``,
    else "sdpa" where the architecture has it, as the text encoders are built)."""
    from transformers import AutoModelForCausalLM

    if attn_implementation is not None:
        return AutoModelForCausalLM.from_config(hf_config, attn_implementation=attn_implementation)
    try:
        return AutoModelForCausalLM.from_config(hf_config, attn_implementation="sdpa")
    except (ValueError, ImportError):  # the architecture has no sdpa attention
        return AutoModelForCausalLM.from_config(hf_config)


class _DecoderLayer(nn.Module):
    """Holds the language model under the reference's name (``decoder_layer.model``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model


class LabelDecoder(nn.Module):
    """The reference's ``Decoder``: state-dict keys ``decoder_layer.model.*``. Keeps no per-call
    state (the key-value cache of a generation lives in the call)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.decoder_layer = _DecoderLayer(model)

    @property
    def lm(self) -> Any:
        """The transformers causal language model."""
        return self.decoder_layer.model

    @property
    def hidden_size(self) -> int:
        return int(self.lm.config.hidden_size)

    def token_embeddings(self, ids: Tensor) -> Tensor:
        """Input embeddings ``[..., D]`` of token ids (no position embeddings)."""
        return cast(Tensor, self.lm.get_input_embeddings()(ids))

    def greedy(
        self, inputs: Tensor, eos_token_id: int, pad_token_id: int, max_new_tokens: int
    ) -> Tensor:
        """Greedy continuation ``[M, n]`` (``n <= max_new_tokens``) of the prefixes ``inputs``
        ``[M, T, D]``, all positions attended: a row ends after its ``eos``, then reads ``pad``.
        ``[M, 0]`` when ``M == 0``."""
        model = self.lm
        rows = inputs.size(0)
        if rows == 0 or max_new_tokens <= 0:
            return torch.zeros(rows, 0, dtype=torch.long, device=inputs.device)
        mask = torch.ones(rows, inputs.size(1), dtype=torch.long, device=inputs.device)
        # The model makes its own cache (format per transformers version; an empty DynamicCache
        # passed in fails in GPT-2 before 4.53) and the loop hands it back each step.
        out = model(inputs_embeds=inputs, attention_mask=mask, use_cache=True)
        done = torch.zeros(rows, dtype=torch.bool, device=inputs.device)
        steps = []
        for _ in range(max_new_tokens):
            token = out.logits[:, -1].float().argmax(-1)
            token = torch.where(done, torch.full_like(token, pad_token_id), token)
            steps.append(token)
            done = done | (token == eos_token_id)
            if bool(done.all()) or len(steps) == max_new_tokens:
                break
            mask = torch.cat([mask, mask.new_ones(rows, 1)], dim=1)
            out = model(
                input_ids=token[:, None],
                attention_mask=mask,
                past_key_values=out.past_key_values,
                use_cache=True,
            )
        return torch.stack(steps, dim=1)


class LabelDecoding(nn.Module):
    """What label-decoder models add to their network: ``attach_decoder`` builds ``decoder`` (and
    ``_enc2dec_proj`` when the decoder's width differs from the encoder's), ``decoder_mode`` and
    ``full_decoder_context`` from the configuration, under the reference's names."""

    decoder: LabelDecoder
    decoder_mode: Any
    full_decoder_context: bool

    def attach_decoder(self, config: Any) -> None:
        """Build the decoder from ``config.extra["labels_decoder_config"]`` (random weights; a
        checkpoint's are loaded afterwards)."""
        stored = config.extra.get("labels_decoder_config")
        if not isinstance(stored, dict):
            raise ValueError(
                "A label-decoder GLiNER needs labels_decoder_config (the decoder's transformers "
                "config) in gliner_config.json; spacy-gliner loads saved label-decoder "
                "checkpoints but does not create new ones."
            )
        hf_config = hf_config_from_dict(stored, "gpt2")
        lm = causal_lm_from_config(hf_config, config._attn_implementation)
        self.decoder = LabelDecoder(lm)
        if config.hidden_size != self.decoder.hidden_size:
            self._enc2dec_proj = projection_mlp(
                config.hidden_size, config.dropout, self.decoder.hidden_size
            )
        self.decoder_mode = config.extra.get("decoder_mode")
        self.full_decoder_context = bool(config.extra.get("full_decoder_context", True))

    def to_decoder(self, vectors: Tensor) -> Tensor:
        """Span vectors ``[..., D]`` in the decoder's width (``_enc2dec_proj`` when present)."""
        if hasattr(self, "_enc2dec_proj"):
            return cast(Tensor, self._enc2dec_proj(vectors))
        return vectors

    def decoder_context(
        self, decoder_input_ids: Tensor | None, decoder_words_mask: Tensor | None
    ) -> tuple[Tensor | None, Tensor | None]:
        """``(token embeddings [B, L, D], word ids [B, L])`` the spans read
        (``full_decoder_context`` and both given), else ``(None, None)``."""
        if not self.full_decoder_context or decoder_input_ids is None:
            return None, None
        if decoder_words_mask is None:
            return None, None
        return self.decoder.token_embeddings(decoder_input_ids), decoder_words_mask


def span_decoder_inputs(
    span_vectors: Tensor,
    keep: Tensor,
    max_width: int,
    token_embeds: Tensor | None = None,
    token_words: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(inputs [M, T, D], rows [M], flat [M])`` for the kept spans (row-major; ``flat`` =
    start * max_width + width) of ``span_vectors`` ``[B, N, D]`` (``keep`` ``[B, N]``), laid out
    as the module docstring says. ``token_embeds`` ``[B, L, D]`` / ``token_words`` ``[B, L]``
    (1-based word ids, 0 elsewhere): the decoder tokens of each row; ``None``: span vector only."""
    rows, flat = torch.nonzero(keep, as_tuple=True)
    start = flat // max_width + 1
    word_range = (start, flat % max_width + start)
    # The reference's padding slots (index -1) read words 0 .. max_width - 1.
    zero = torch.zeros_like(keep[:, 0], dtype=torch.long)
    slot_range = (zero, zero + max_width - 1)
    inputs = decoder_prefixes(
        span_vectors[rows, flat], rows, word_range, keep, slot_range, token_embeds, token_words
    )
    return inputs, rows, flat


def decoder_prefixes(
    vectors: Tensor,
    rows: Tensor,
    word_range: tuple[Tensor, Tensor],
    keep: Tensor,
    slot_range: tuple[Tensor, Tensor],
    token_embeds: Tensor | None = None,
    token_words: Tensor | None = None,
) -> Tensor:
    """Decoder prefixes ``[M, T, D]`` of the selected spans (the module docstring's layout):
    ``vectors`` ``[M, D]`` of batch rows ``rows`` ``[M]``, each reading the decoder tokens whose
    word id lies in ``word_range`` (inclusive ``[M]`` bounds, compared with the ids as given).
    ``keep`` ``[B, N]``: the selection; a row with fewer than ``N`` selected spans has padding
    slots, which read ``slot_range`` (``[B]`` bounds) and count towards ``T``. ``token_embeds`` /
    ``token_words`` ``None``: span vectors alone (``T == 1``)."""
    if token_embeds is None or token_words is None:
        return vectors.unsqueeze(1)
    lo, hi = word_range
    words = token_words[rows]  # [M, L]
    in_span = (words >= lo[:, None]) & (words <= hi[:, None])
    counts = in_span.sum(-1)
    slot = (token_words >= slot_range[0][:, None]) & (token_words <= slot_range[1][:, None])
    has_slot = keep.sum(-1) < keep.size(1)
    longest = torch.cat([counts, slot.sum(-1)[has_slot]]).max() if counts.numel() else 0
    length = int(longest) + 1
    out = vectors.new_zeros(rows.numel(), length, vectors.size(-1))
    offset = length - counts  # >= 1
    pos = offset[:, None] + in_span.cumsum(-1) - 1
    m, t = torch.nonzero(in_span, as_tuple=True)
    out[m, pos[m, t]] = token_embeds[rows[m], t].to(out.dtype)
    out[torch.arange(rows.numel(), device=out.device), offset - 1] = vectors
    return out
