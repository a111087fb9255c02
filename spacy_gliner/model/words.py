"""Word and label vectors from sub-token vectors, and span enumeration (pure tensor functions)."""

from __future__ import annotations

import torch


def pool_words(
    hidden: torch.Tensor,
    words_mask: torch.Tensor,
    attention_mask: torch.Tensor,
    num_words: int,
    pooling: str,
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
    if torch.jit.is_tracing():
        return _traced_reduce(flat, flat_index, hidden[b, t], pooling).view(batch, num_words, dim)
    reduce = "mean" if pooling == "mean" else "amax"
    flat = flat.scatter_reduce(0, flat_index, hidden[b, t], reduce=reduce, include_self=False)
    return flat.view(batch, num_words, dim)


def _traced_reduce(
    flat: torch.Tensor, index: torch.Tensor, values: torch.Tensor, pooling: str
) -> torch.Tensor:
    """``scatter_reduce(..., include_self=False)`` of zeros ``flat`` in ops ONNX has (it has no
    mean reduction and no ``include_self=False``): mean = sum / count, max over a -inf start;
    slots that receive nothing stay 0. Same values within float rounding (an export is checked
    against the model before it is kept)."""
    if pooling == "mean":
        total = flat.scatter_add(0, index, values)
        count = flat.scatter_add(0, index, torch.ones_like(values))
        return total / count.clamp(min=1)
    start = torch.full_like(flat, float("-inf"))
    top = start.scatter_reduce(0, index, values, reduce="amax", include_self=True)
    return torch.where(torch.isinf(top), flat, top)


def largest(values: torch.Tensor) -> int:
    """``int(values.max())`` (0 for an empty tensor). While ``torch.jit`` traces the model for
    an ONNX export, the 0-d tensor itself (typed as an int for the callers, which only use it in
    tensor sizes and arithmetic), so the exported graph keeps word and label counts dynamic."""
    if torch.jit.is_tracing():
        return values.max()  # type: ignore[return-value]
    return int(values.max()) if values.numel() else 0


def gather_prompts(
    hidden: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    class_token_index: int,
    shift: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectors at the ``<<ENT>>`` tokens (or ``shift`` positions after them), in prompt order."""
    is_ent = (input_ids == class_token_index) & (attention_mask > 0)  # [B, T]
    counts = is_ent.sum(-1)
    num_classes = largest(counts)
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
