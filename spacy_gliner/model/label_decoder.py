"""The generative label decoder of gliner's label-decoder models: a causal language model from
transformers (GPT-2, Llama, ...) that writes an entity type name for a span, greedily.

Decoder inputs are built as the reference's ``select_span_decoder_embedding`` builds them
(``decoder_mode == "span"``), and the generation is the reference's ``generate`` with greedy
search (``do_sample=False``, one sequence), so generated token ids match it exactly:

* each selected span reads ``[zeros ..., span vector, embeddings of the span's decoder tokens]``
  (``full_decoder_context``; otherwise the span vector alone), left-padded with zero vectors to
  one length ``T`` for the batch, **and every position is attended** (the reference passes no
  attention mask to ``generate``). ``T - 1`` is the largest count of decoder tokens with a word
  id in ``[start + 1, end + 1]`` over the selected spans and, from the reference's padding slots
  (span index -1, read as words ``[0, max_width - 1]``), over each row's tokens with a word id in
  that range (word id 0: prompt, special and padding tokens). A span's generated label therefore
  depends on the other rows of its batch, as in the reference.
* generation stops a row at ``eos``; finished rows are padded with ``pad``.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn

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
    vectors = span_vectors[rows, flat]  # [M, D]
    if token_embeds is None or token_words is None:
        return vectors.unsqueeze(1), rows, flat
    start = flat // max_width + 1
    end = flat % max_width + start
    words = token_words[rows]  # [M, L]
    in_span = (words >= start[:, None]) & (words <= end[:, None])
    counts = in_span.sum(-1)
    # The reference's padding slots (index -1: words 0 .. max_width - 1) count too.
    slot = (token_words >= 0) & (token_words <= max_width - 1)
    has_slot = keep.sum(-1) < keep.size(1)
    longest = torch.cat([counts, slot.sum(-1)[has_slot]]).max() if counts.numel() else 0
    length = int(longest) + 1
    out = vectors.new_zeros(rows.numel(), length, vectors.size(-1))
    offset = length - counts  # >= 1
    pos = offset[:, None] + in_span.cumsum(-1) - 1
    m, t = torch.nonzero(in_span, as_tuple=True)
    out[m, pos[m, t]] = token_embeds[rows[m], t].to(out.dtype)
    out[torch.arange(rows.numel(), device=out.device), offset - 1] = vectors
    return out, rows, flat
