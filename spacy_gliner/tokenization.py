"""Words and label prompts -> sub-token tensors, with GLiNER's sub-token -> word map."""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np
import torch

from .config import GLiNERConfig

SPECIAL_TOKENS = ("[FLERT]",)  # then ent_token, sep_token: the order published checkpoints use


def add_special_tokens(tokenizer, config: GLiNERConfig) -> None:
    """Add ``[FLERT]``, ``<<ENT>>``, ``<<SEP>>`` and record ``class_token_index`` / ``vocab_size``."""
    tokenizer.add_tokens([*SPECIAL_TOKENS, config.ent_token, config.sep_token], special_tokens=True)
    config.class_token_index = len(tokenizer) - 2
    config.vocab_size = len(tokenizer)


def check_special_tokens(tokenizer, config: GLiNERConfig, source: str) -> None:
    """Raise if the tokenizer does not hold the checkpoint's ``<<ENT>>`` token at ``class_token_index``."""
    ent_id = tokenizer.convert_tokens_to_ids(config.ent_token)
    if ent_id != config.class_token_index or ent_id == tokenizer.unk_token_id:
        raise ValueError(
            f"The tokenizer for {source} maps {config.ent_token!r} to id {ent_id}, but the checkpoint's "
            f"class_token_index is {config.class_token_index} (tokenizer length {len(tokenizer)}). The "
            "checkpoint's tokenizer files are missing or belong to another model: save the tokenizer "
            "that was used in training next to gliner_config.json."
        )


def max_sequence_tokens(tokenizer, encoder_config) -> int:
    """The encoder's sub-token window: the tokenizer limit, capped by position embeddings (default 512)."""
    limits = [int(tokenizer.model_max_length)] if tokenizer.model_max_length < 1_000_000 else []
    positions = getattr(encoder_config, "max_position_embeddings", None)
    if positions and getattr(encoder_config, "position_embedding_type", "absolute") == "absolute":
        limits.append(int(positions))
    return min(limits) if limits else 512


class PromptTokenizer:
    """Builds encoder inputs for (words, labels) pairs the way GLiNER does.

    Uni-encoder input words are ``<<ENT>> l1 <<ENT>> l2 ... <<SEP>> w1 w2 ...``; bi-encoders see only
    the words. ``words_mask`` holds the 1-based word index on each selected sub-token (first / last /
    every sub-token for first / last / mean and max pooling) and 0 elsewhere. Word indices come from
    the tokenizer's word ids, so a word that yields no sub-token keeps its slot (a zero vector)
    instead of shifting later words, as gliner 0.2.27+ does.
    """

    def __init__(self, tokenizer, config: GLiNERConfig, labels_tokenizer=None) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("spacy-gliner needs a fast (Rust) Hugging Face tokenizer for word alignment.")
        self.tokenizer = tokenizer
        self.labels_tokenizer = labels_tokenizer
        self.config = config
        self.num_special = len(tokenizer.build_inputs_with_special_tokens([]))

    def prompt_words(self, labels: Sequence[str]) -> List[str]:
        if self.config.is_bi_encoder:
            return []
        words: List[str] = []
        for label in labels:
            words += [self.config.ent_token, label]
        return words + [self.config.sep_token]

    def word_token_counts(self, words: Sequence[str]) -> np.ndarray:
        """Number of sub-tokens of each word (0 is possible, e.g. a lone combining accent)."""
        if not words:
            return np.zeros(0, dtype=np.int64)
        enc = self.tokenizer(list(words), is_split_into_words=True, add_special_tokens=False, verbose=False)
        ids = np.array([w for w in enc.word_ids() if w is not None], dtype=np.int64)
        return np.bincount(ids, minlength=len(words))

    def prompt_token_count(self, labels: Sequence[str]) -> int:
        return int(self.word_token_counts(self.prompt_words(labels)).sum())

    def encode(self, word_lists: Sequence[Sequence[str]], label_lists: Sequence[Sequence[str]]) -> Dict[str, torch.Tensor]:
        """Tensors ``input_ids, attention_mask, words_mask, text_lengths`` for a batch."""
        prompts = [self.prompt_words(labels) for labels in label_lists]
        inputs = [p + list(w) for p, w in zip(prompts, word_lists)]
        enc = self.tokenizer(inputs, is_split_into_words=True, truncation=True, padding="longest", return_tensors="pt")
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

    def encode_labels(self, labels: Sequence[str]) -> Dict[str, torch.Tensor]:
        """Bi-encoder: one row per label for the labels encoder."""
        enc = self.labels_tokenizer(list(labels), padding="longest", truncation=True, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
