"""Tokenizers: loading, GLiNER's prompt tokens, and the one builder of encoder inputs.

Uni-encoder inputs are ``[prefix] <<ENT>> l1 <<ENT>> l2 ... <<SEP>> w1 w2 ... [suffix]``;
bi-encoders see only the words. ``words_mask`` holds the 1-based word index on each selected
sub-token (first / last / every sub-token for first / last / mean and max pooling), 0 elsewhere.
A word that yields no sub-token keeps its slot (a zero vector) instead of shifting later words.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..model.config import GLiNERConfig
from .errors import CheckpointError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger("spacy_gliner")

SPECIAL_TOKENS = ("[FLERT]",)  # then ent_token, sep_token: the order published checkpoints use


def load_tokenizer(
    directory: Path, fallback: str, hub_kwargs: dict[str, Any], what: str = "tokenizer"
) -> Any:
    """The checkpoint's own tokenizer files, or the encoder's (``model_name``) for older ones."""
    from transformers import AutoTokenizer

    if (directory / "tokenizer_config.json").exists():
        try:
            return AutoTokenizer.from_pretrained(str(directory), use_fast=True)
        except Exception as err:  # tokenizers raises bare Exceptions on corrupt JSON
            raise CheckpointError(
                f"Could not read the {what} files in {directory} ({type(err).__name__}: "
                f"{str(err)[:200]}): tokenizer.json or tokenizer_config.json is corrupt or "
                "truncated. Save the tokenizer of the checkpoint again."
            ) from err
    logger.info("%s has no %s files; loading the %s of %s", directory, what, what, fallback)
    try:
        return AutoTokenizer.from_pretrained(fallback, use_fast=True, **hub_kwargs)
    except Exception as err:
        raise CheckpointError(
            f"{directory} has no {what} files and the {what} of its encoder {fallback!r} could "
            f"not be loaded ({type(err).__name__}: {err}). Save the {what} into the checkpoint "
            f"directory or make {fallback!r} available locally."
        ) from err


def add_special_tokens(tokenizer: Any, config: GLiNERConfig) -> None:
    """Add ``[FLERT]``, ``<<ENT>>``, ``<<SEP>>`` (relation models: ``<<ENT>>``, ``<<SEP>>``,
    ``<<REL>>``, as the reference); record ``class_token_index`` (``rel_token_index``) and
    ``vocab_size``."""
    if config.is_relex:
        tokenizer.add_tokens(
            [config.ent_token, config.sep_token, config.rel_token], special_tokens=True
        )
        config.class_token_index = len(tokenizer) - 3
        config.extra["rel_token_index"] = len(tokenizer) - 1
    else:
        tokens = [*SPECIAL_TOKENS, config.ent_token, config.sep_token]
        tokenizer.add_tokens(tokens, special_tokens=True)
        config.class_token_index = len(tokenizer) - 2
    config.vocab_size = len(tokenizer)


def check_special_tokens(tokenizer: Any, config: GLiNERConfig, source: str) -> None:
    """Raise if the tokenizer does not hold the checkpoint's ``<<ENT>>`` at ``class_token_index``."""
    expected = [(config.ent_token, config.class_token_index, "class_token_index")]
    if config.is_relex:
        expected.append((config.rel_token, config.rel_token_index, "rel_token_index"))
    for token, index, field in expected:
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id != index or token_id == tokenizer.unk_token_id:
            raise CheckpointError(
                f"The tokenizer for {source} maps {token!r} to id {token_id}, but the "
                f"checkpoint's {field} is {index} (tokenizer length {len(tokenizer)}). The "
                "checkpoint's tokenizer files are missing or belong to another model: save the "
                "tokenizer that was used in training next to gliner_config.json."
            )


def max_sequence_tokens(tokenizer: Any, encoder_config: Any) -> int:
    """The encoder's sub-token window: the tokenizer limit, capped by ``max_position_embeddings``
    unless the config names relative positions (absolute embeddings have no more rows; rotary
    encoders such as ModernBERT, whose configs name no kind, were trained up to it). 512 when
    neither says."""
    limit = int(tokenizer.model_max_length)
    limits = [limit] if limit < 1_000_000 else []
    positions = getattr(encoder_config, "max_position_embeddings", None)
    kind = getattr(encoder_config, "position_embedding_type", "absolute")
    if positions and kind == "absolute":
        limits.append(int(positions))
    return min(limits) if limits else 512


class TextTokens(NamedTuple):
    """Sub-token ids of one text's words: ``ids[offsets[w]:offsets[w + 1]]`` belong to word w."""

    ids: np.ndarray  # [sub-tokens] int64
    offsets: np.ndarray  # [words + 1] int64, non-decreasing, offsets[0] == 0

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)


class Row(NamedTuple):
    """One encoder row: words ``start:end`` of a text, after the given prompt ids."""

    tokens: TextTokens
    start: int
    end: int
    prompt_ids: np.ndarray


class PromptTokenizer:
    """GLiNER's view of a Hugging Face fast tokenizer (immutable after construction).

    ``encode`` tokenizes (words, labels) pairs in one tokenizer call, as the reference does (used
    by training). ``tokenize_words`` + ``assemble`` build the same tensors from per-word ids
    cached once per text (used by inference, where a text's windows and label groups share them);
    a test pins the two equal.
    """

    def __init__(self, tokenizer: Any, config: GLiNERConfig, labels_tokenizer: Any = None) -> None:
        if not getattr(tokenizer, "is_fast", True):
            raise ValueError(
                "spacy-gliner needs a fast (Rust) Hugging Face tokenizer for word alignment."
            )
        self.tokenizer = tokenizer
        self.labels_tokenizer = labels_tokenizer
        self.config = config
        # Sub-tokens the tokenizer adds around a text ([CLS] ... [SEP]); transformers 4 and 5.
        self.num_special = len(tokenizer("", add_special_tokens=True)["input_ids"])
        self.prefix, self.suffix = self._special_ids()
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.left_pad = getattr(tokenizer, "padding_side", "right") == "left"

    def _special_ids(self) -> tuple[np.ndarray, np.ndarray]:
        """Sub-token ids the tokenizer puts before and after a text (e.g. [CLS] / [SEP])."""
        enc = self.tokenizer(["hello"], is_split_into_words=True)
        ids = enc["input_ids"]
        inside = [i for i, w in enumerate(enc.word_ids()) if w is not None]
        if not inside:
            return np.zeros(0, dtype=np.int64), np.asarray(ids, dtype=np.int64)
        prefix = np.asarray(ids[: inside[0]], dtype=np.int64)
        return prefix, np.asarray(ids[inside[-1] + 1 :], dtype=np.int64)

    def reserved_tokens(self) -> list[str]:
        """Strings a label prompt must not contain."""
        specials = [str(t) for t in getattr(self.tokenizer, "all_special_tokens", [])]
        cfg = self.config
        relex = [cfg.rel_token] if cfg.is_relex else []
        return [cfg.ent_token, cfg.sep_token, *relex, *SPECIAL_TOKENS, *specials]

    def prompt_words(self, labels: Sequence[str], relations: Sequence[str] = ()) -> list[str]:
        """``<<ENT>> l1 <<ENT>> l2 ... <<SEP>>``; relation models add their relation part,
        ``<<REL>> r1 <<REL>> r2 ... <<SEP>>`` (empty but for ``<<SEP>>`` without relations)."""
        cfg = self.config
        if cfg.is_bi_encoder:
            return []
        words: list[str] = []
        for label in labels:
            words += [cfg.ent_token, label]
        words.append(cfg.sep_token)
        if cfg.is_relex:
            for relation in relations:
                words += [cfg.rel_token, relation]
            words.append(cfg.sep_token)
        elif relations:
            raise ValueError("Relation types need a relation-extraction model (relations_layer).")
        return words

    def word_token_counts(self, words: Sequence[str]) -> np.ndarray:
        """Number of sub-tokens of each word (0 is possible, e.g. a lone combining accent)."""
        if not words:
            return np.zeros(0, dtype=np.int64)
        enc = self.tokenizer(
            list(words), is_split_into_words=True, add_special_tokens=False, verbose=False
        )
        ids = np.array([w for w in enc.word_ids() if w is not None], dtype=np.int64)
        return np.bincount(ids, minlength=len(words))

    def prompt_token_count(self, labels: Sequence[str]) -> int:
        return int(self.word_token_counts(self.prompt_words(labels)).sum())

    def prompt_ids(
        self, label_groups: Sequence[Sequence[str]], relations: Sequence[str] = ()
    ) -> list[np.ndarray]:
        """Sub-token ids of each group's prompt (empty for bi-encoders); ``relations``: the
        relation types every prompt of a relation model ends with."""
        if self.config.is_bi_encoder or not label_groups:
            return [np.zeros(0, dtype=np.int64) for _ in label_groups]
        words = [self.prompt_words(group, relations) for group in label_groups]
        enc = self.tokenizer(
            words, is_split_into_words=True, add_special_tokens=False, verbose=False
        )
        return [np.asarray(ids, dtype=np.int64) for ids in enc["input_ids"]]

    def tokenize_words(self, word_lists: Sequence[Sequence[str]]) -> list[TextTokens]:
        """Per-word sub-token ids of every text, in one tokenizer call."""
        empty = TextTokens(np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64))
        out = [empty] * len(word_lists)
        todo = [i for i, words in enumerate(word_lists) if len(words)]
        if not todo:
            return out
        enc = self.tokenizer(
            [list(word_lists[i]) for i in todo],
            is_split_into_words=True,
            add_special_tokens=False,
            verbose=False,
        )
        for row, i in enumerate(todo):
            ids = np.asarray(enc["input_ids"][row], dtype=np.int64)
            word_ids = np.asarray(enc.word_ids(row), dtype=np.int64)
            counts = np.bincount(word_ids, minlength=len(word_lists[i]))
            offsets = np.zeros(len(counts) + 1, dtype=np.int64)
            np.cumsum(counts, out=offsets[1:])
            out[i] = TextTokens(ids, offsets)
        return out

    def assemble(
        self, rows: Sequence[Row], max_tokens: int
    ) -> tuple[dict[str, torch.Tensor], list[int]]:
        """:meth:`assemble_arrays` as torch tensors (sharing the arrays' memory)."""
        import torch

        arrays, truncated = self.assemble_arrays(rows, max_tokens)
        return {k: torch.from_numpy(v) for k, v in arrays.items()}, truncated

    def assemble_arrays(
        self, rows: Sequence[Row], max_tokens: int
    ) -> tuple[dict[str, np.ndarray], list[int]]:
        """Encoder inputs for ``rows`` (at most ``max_tokens`` sub-tokens each) as int64 arrays
        (``input_ids``, ``attention_mask``, ``words_mask`` ``[B, T]``; ``text_lengths`` ``[B]``)
        and, per row, the number of words that fell past that limit (they get zero vectors, as
        the reference's truncating tokenizer gives them)."""
        limit = max_tokens - len(self.prefix) - len(self.suffix)
        seqs, masks, truncated = [], [], []
        for row in rows:
            body, pos, val = self._row_body(row)
            cut = 0
            if len(body) > limit:
                body = body[:limit]
                keep = pos < len(self.prefix) + limit
                cut = len(np.unique(val[~keep]))
                pos, val = pos[keep], val[keep]
            seqs.append(np.concatenate([self.prefix, body, self.suffix]))
            masks.append((pos, val))
            truncated.append(cut)
        return self._pad(seqs, masks, [row.end - row.start for row in rows]), truncated

    def _row_body(self, row: Row) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Prompt + word ids of a row, and the (position, 1-based word) pairs of ``words_mask``."""
        tokens, a, b = row.tokens, row.start, row.end
        lo, hi = int(tokens.offsets[a]), int(tokens.offsets[b])
        body = np.concatenate([row.prompt_ids, tokens.ids[lo:hi]])
        base = len(self.prefix) + len(row.prompt_ids)
        offsets = tokens.offsets[a : b + 1] - lo
        counts = np.diff(offsets)
        word_no = np.arange(1, b - a + 1, dtype=np.int64)
        pooling = self.config.subtoken_pooling
        if pooling == "first":
            return body, base + offsets[:-1][counts > 0], word_no[counts > 0]
        if pooling == "last":
            return body, base + offsets[1:][counts > 0] - 1, word_no[counts > 0]
        return body, base + np.arange(hi - lo, dtype=np.int64), np.repeat(word_no, counts)

    def _pad(self, seqs: list, masks: list, lengths: list[int]) -> dict[str, np.ndarray]:
        width = max(len(s) for s in seqs)
        input_ids = np.full((len(seqs), width), self.pad_id, dtype=np.int64)
        attention = np.zeros((len(seqs), width), dtype=np.int64)
        words_mask = np.zeros((len(seqs), width), dtype=np.int64)
        for r, (seq, (pos, val)) in enumerate(zip(seqs, masks)):
            shift = width - len(seq) if self.left_pad else 0
            input_ids[r, shift : shift + len(seq)] = seq
            attention[r, shift : shift + len(seq)] = 1
            words_mask[r, pos + shift] = val
        return {
            "input_ids": input_ids,
            "attention_mask": attention,
            "words_mask": words_mask,
            "text_lengths": np.asarray(lengths, dtype=np.int64),
        }

    def encode(
        self, word_lists: Sequence[Sequence[str]], label_lists: Sequence[Sequence[str]]
    ) -> dict[str, torch.Tensor]:
        """Tensors ``input_ids, attention_mask, words_mask, text_lengths`` for a batch."""
        import torch

        prompts = [self.prompt_words(labels) for labels in label_lists]
        inputs = [p + list(w) for p, w in zip(prompts, word_lists)]
        enc = self.tokenizer(
            inputs,
            is_split_into_words=True,
            truncation=True,
            padding="longest",
            return_tensors="pt",
        )
        pooling = self.config.subtoken_pooling
        words_mask = np.zeros(enc["input_ids"].shape, dtype=np.int64)
        for row, prompt in enumerate(prompts):
            wid = np.array([-1 if w is None else w for w in enc.word_ids(row)], dtype=np.int64)
            if pooling == "first":
                selected = wid != np.concatenate([[-1], wid[:-1]])
            elif pooling == "last":
                selected = wid != np.concatenate([wid[1:], [-1]])
            else:
                selected = np.ones_like(wid, dtype=bool)
            selected &= wid >= len(prompt)
            words_mask[row] = np.where(selected, wid - len(prompt) + 1, 0)
        return {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "words_mask": torch.from_numpy(words_mask),
            "text_lengths": torch.tensor([len(w) for w in word_lists], dtype=torch.long),
        }

    def encode_labels(self, labels: Sequence[str]) -> dict[str, torch.Tensor]:
        """Bi-encoder: one row per label for the labels encoder."""
        enc = self.labels_tokenizer(
            list(labels), padding="longest", truncation=True, return_tensors="pt"
        )
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
