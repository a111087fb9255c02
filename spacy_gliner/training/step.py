"""One training step on word lists: windows, label sets, forward, loss, rehearsal (no spaCy).

The component turns spaCy Examples into ``(words, spans)`` rows; everything after that is here.
"""

from __future__ import annotations

import contextlib
import copy
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

import torch

from ..engine.token_spans import SPAN_LISTS
from ..engine.windows import plan_windows
from ..io.tokenizers import max_sequence_tokens
from ..model.families import family_of
from .labels import sample_label_sets
from .targets import Span, span_targets, token_targets

SHORT_TEXT_WORDS = 32  # texts up to this many words are never windowed


class Text(NamedTuple):
    """One training text: words, gold (start, end inclusive, prompt) spans, and per word whether
    its annotation is unknown (spans touching such words are left out of the loss).

    ``labels``: the prompts of this text, used as they are (the reference's ``ner_labels``);
    ``negatives``: its negative prompts instead of the in-batch sample (``ner_negatives``)."""

    words: list[str]
    spans: list[Span]
    unknown: Optional[list[bool]] = None
    labels: Optional[list[str]] = None
    negatives: Optional[list[str]] = None


@dataclass
class Rows:
    """Training rows: words of each window, its gold spans (window word indices), labels, and
    the unknown-annotation flags of its words (None: all annotated)."""

    words: list[list[str]]
    spans: list[list[Span]]
    label_sets: list[list[str]]
    unknown: list[Optional[list[bool]]]


def window_rows(
    gliner: Any, texts: Sequence[Text], prompt_budget: int
) -> tuple[list, list, list, list[int]]:
    """Cut long texts into windows sized like inference windows; spans follow their window.
    The last list holds the index of each row's text."""
    cfg = gliner.config
    words_list, spans_list, unknown_list, origin = [], [], [], []
    for i, text in enumerate(texts):
        words, spans, unknown = Text(*text)[:3]
        windows: list[tuple[int, int]] = [(0, len(words))]
        if len(words) > SHORT_TEXT_WORDS:
            counts = gliner.prompts.word_token_counts(words)
            planned = plan_windows(counts, prompt_budget, cfg.max_len, cfg.max_width)
            windows = [(w.start, w.end) for w in planned]
        for start, end in windows:
            words_list.append(words[start:end])
            inside = [(s - start, e - start, lab) for s, e, lab in spans if s >= start and e < end]
            spans_list.append(inside)
            unknown_list.append(unknown[start:end] if unknown is not None else None)
            origin.append(i)
    return words_list, spans_list, unknown_list, origin


def prompt_budget(gliner: Any, prompts: Sequence[str], max_types: int) -> int:
    """Sub-tokens left for words beside the largest label prompt a training row can get."""
    counts = sorted((gliner.prompts.prompt_token_count([p]) - 2 for p in prompts), reverse=True)
    prompt = sum(counts[:max_types]) + min(max_types, len(counts)) + 1
    encoder_config = gliner.model.token_rep_layer.bert_layer.model.config
    limit = max_sequence_tokens(gliner.tokenizer, encoder_config)
    return max(64, limit - gliner.prompts.num_special - prompt)


def make_rows(
    gliner: Any,
    texts: Sequence[Text],
    prompts: Sequence[str],
    max_types: int,
    max_neg_type_ratio: int,
    rng: random.Random,
) -> Rows:
    """Windows of every text with sampled label sets (the reference collator's sampling)."""
    long_text = any(len(text[0]) > SHORT_TEXT_WORDS for text in texts)
    own = [p for t in texts for p in (Text(*t).labels or []) + (Text(*t).negatives or [])]
    every = list(dict.fromkeys([*prompts, *own]))
    budget = prompt_budget(gliner, every, max_types) if long_text else 0
    words, spans, unknown, origin = window_rows(gliner, texts, budget)
    types = [[label for _, _, label in row] for row in spans]
    given = [Text(*texts[i]) for i in origin]
    label_sets = sample_label_sets(
        types,
        list(prompts),
        max_types,
        max_neg_type_ratio,
        rng,
        labels=[t.labels for t in given],
        negatives=[t.negatives for t in given],
    )
    keep = [i for i, w in enumerate(words) if w]
    return Rows(
        [words[i] for i in keep],
        [spans[i] for i in keep],
        [label_sets[i] for i in keep],
        [unknown[i] for i in keep],
    )


def forward(
    gliner: Any,
    module: torch.nn.Module,
    words: Sequence[Sequence[str]],
    label_sets: Sequence[Sequence[str]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (``[B, W, K, C]``; token-level models ``[B, W, C, 3]``) and label mask ``[B, C]``
    of ``module`` (the model or a copy)."""
    device = next(module.parameters()).device
    inputs = {k: v.to(device) for k, v in gliner.prompts.encode(words, label_sets).items()}
    if gliner.config.is_bi_encoder:
        inputs["labels_embeddings"], inputs["labels_mask"] = bi_encoder_labels(
            gliner, module, label_sets, device
        )
    logits, _, label_mask = module(**inputs)
    return logits, label_mask


def bi_encoder_labels(
    gliner: Any, module: Any, label_sets: Sequence[Sequence[str]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label vectors ``[B, C, D]`` (with gradients) and mask ``[B, C]`` for per-row label sets."""
    union = list(dict.fromkeys(label for labels in label_sets for label in labels))
    enc = {k: v.to(device) for k, v in gliner.prompts.encode_labels(union).items()}
    vectors = module.encode_labels(**enc)  # [N, D]
    position = {label: i for i, label in enumerate(union)}
    width = max(len(labels) for labels in label_sets)
    index = torch.zeros(len(label_sets), width, dtype=torch.long, device=device)
    mask = torch.zeros(len(label_sets), width, dtype=torch.bool, device=device)
    for i, labels in enumerate(label_sets):
        index[i, : len(labels)] = torch.tensor([position[lab] for lab in labels], device=device)
        mask[i, : len(labels)] = True
    return vectors[index] * mask.unsqueeze(-1), mask


class Rehearsal:
    """Distils a frozen copy of the starting model's scores for fixed prompts into training."""

    def __init__(self, labels: Sequence[str], weight: float) -> None:
        self.labels = list(labels)
        self.weight = weight
        self.teacher: Optional[torch.nn.Module] = None

    @property
    def active(self) -> bool:
        return self.weight > 0 and bool(self.labels)

    def loss(self, gliner: Any, words: Sequence[Sequence[str]]) -> torch.Tensor:
        """Mean BCE between the student's and the teacher's probabilities (valid spans, or
        for token-level models valid words)."""
        if self.teacher is None:
            self.teacher = copy.deepcopy(gliner.model).eval()
            self.teacher.requires_grad_(False)
        label_sets = [self.labels] * len(words)
        with torch.no_grad():
            target, _ = forward(gliner, self.teacher, words, label_sets)
        logits, _ = forward(gliner, gliner.model, words, label_sets)
        valid = _valid_cells(logits, [len(w) for w in words], is_token_level(gliner))
        bce = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, torch.sigmoid(target), reduction="none"
        )
        return (bce * valid).sum() / valid.sum().clamp(min=1.0)


def is_token_level(gliner: Any) -> bool:
    """Whether ``gliner``'s family outputs token-level logits ``[B, W, C, 3]``; raises for the
    token-level families with span representations, which training does not cover."""
    output = family_of(gliner.config.to_dict()).output
    if output == SPAN_LISTS:
        raise ValueError(
            "gliner: training token-level models with represent_spans is not implemented (the "
            "reference adds a loss on the span logits of gold spans to the token loss); they "
            "predict only. Train a token-level checkpoint without represent_spans instead."
        )
    return output == "token"


def _valid_cells(logits: torch.Tensor, lengths: Sequence[int], token: bool) -> torch.Tensor:
    """Float 0/1 mask broadcastable to ``logits``: cells of real words (token-level) or of spans
    that end inside their text (span-level)."""
    device = logits.device
    length = torch.tensor(list(lengths), device=device)
    words = torch.arange(logits.size(1), device=device)
    if token:
        return (words[None, :] < length[:, None])[:, :, None, None].float()
    ends = words[:, None] + torch.arange(logits.size(2), device=device)
    return (ends[None] < length[:, None, None]).unsqueeze(-1).float()


@contextlib.contextmanager
def head_dropout(module: Any, drop: Optional[float]) -> Iterator[None]:
    """Dropout probability ``drop`` in every GLiNER layer outside the Hugging Face encoder (the
    layers the checkpoint's ``dropout`` configures) for the duration; None keeps the model's."""
    if drop is None:
        yield
        return
    encoder = module.token_rep_layer.bert_layer.model
    inside = {id(m) for m in encoder.modules()}
    layers = [
        m for m in module.modules() if isinstance(m, torch.nn.Dropout) and id(m) not in inside
    ]
    before = [m.p for m in layers]
    for m in layers:
        m.p = float(drop)
    try:
        yield
    finally:
        for m, p in zip(layers, before):
            m.p = p


def train_step(
    gliner: Any,
    rows: Rows,
    loss_fn: Callable,
    rehearsal: Optional[Rehearsal] = None,
    drop: Optional[float] = None,
) -> float:
    """Forward, loss (plus rehearsal), backward on ``rows``; returns the loss. The model is in
    training mode during the step and in evaluation mode after it; ``drop`` (if given) is the
    dropout of the layers outside the encoder for this step."""
    module = gliner.model
    module.train()
    try:
        with head_dropout(module, drop):
            return _loss_and_backward(gliner, module, rows, loss_fn, rehearsal)
    finally:
        module.eval()


def _loss_and_backward(
    gliner: Any, module: Any, rows: Rows, loss_fn: Callable, rehearsal: Optional[Rehearsal]
) -> float:
    logits, label_mask = forward(gliner, module, rows.words, rows.label_sets)
    loss = rows_loss(gliner, logits, label_mask, rows, loss_fn)
    if rehearsal is not None and rehearsal.active:
        loss = loss + rehearsal.weight * rehearsal.loss(gliner, rows.words)
    loss.backward()
    return float(loss.detach())


def rows_loss(
    gliner: Any, logits: torch.Tensor, label_mask: torch.Tensor, rows: Rows, loss_fn: Callable
) -> torch.Tensor:
    """The loss of ``logits`` against the gold spans of ``rows``: span targets and ``loss_fn``
    (span-level families), word targets and ``loss_fn.token`` (token-level families)."""
    lengths = [len(w) for w in rows.words]
    device = logits.device
    if is_token_level(gliner):
        token_loss = getattr(loss_fn, "token", None)
        if token_loss is None:
            raise ValueError(
                "gliner: this token-level model needs a loss with a token-level form (a .token "
                "method), such as spacy_gliner.span_loss.v1; the configured loss has none."
            )
        targets, word_mask = token_targets(rows.spans, rows.label_sets, lengths, rows.unknown)
        return token_loss(logits, targets.to(device), word_mask.to(device), label_mask)
    targets, span_mask = span_targets(
        rows.spans, rows.label_sets, lengths, gliner.config.max_width, unknown=rows.unknown
    )
    return loss_fn(logits, targets.to(device), span_mask.to(device), label_mask)


def rehearse_step(gliner: Any, words: Sequence[Sequence[str]], rehearsal: Rehearsal) -> float:
    """Rehearsal only, on unlabelled word lists; returns the loss."""
    gliner.model.train()
    try:
        loss = rehearsal.loss(gliner, words)
        loss.backward()
    finally:
        gliner.model.eval()
    return float(loss.detach())
