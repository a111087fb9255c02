"""A ``tokenizer.json`` read by the ``tokenizers`` library alone (no transformers, no torch).

:class:`JsonTokenizer` offers the part of a transformers fast tokenizer's interface that
:class:`~spacy_gliner.io.tokenizers.PromptTokenizer` calls, so the same prompt-building code runs
on it; an exported ONNX model (``spacy_gliner.export.onnx``) ships the tokenizer this way. The
settings that live outside ``tokenizer.json`` in transformers (padding side, pad id, special
tokens, length limit) come from the export's ``tokenizer_settings``. A test pins its ids equal to
the transformers tokenizer's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

TOKENIZER_FILE = "tokenizer.json"


class Encoded:
    """``input_ids`` of one sequence or a batch, and the word index of each id."""

    def __init__(self, encodings: list[Any], single: bool) -> None:
        self._encodings = encodings
        self._single = single

    def __getitem__(self, key: str) -> Any:
        if key != "input_ids":
            raise KeyError(key)
        ids = [list(e.ids) for e in self._encodings]
        return ids[0] if self._single else ids

    def word_ids(self, row: int = 0) -> list[int | None]:
        return list(self._encodings[row].word_ids)


class JsonTokenizer:
    """The ``tokenizers.Tokenizer`` of a ``tokenizer.json`` with transformers' call convention
    (``tokenizer(words, is_split_into_words=True, add_special_tokens=False)``): no padding, no
    truncation, whatever the file says. Immutable; safe to share across threads."""

    is_fast = True

    def __init__(self, tokenizer: Any, settings: Mapping[str, Any]) -> None:
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._tokenizer = tokenizer
        self.pad_token_id = settings.get("pad_token_id")
        self.padding_side = str(settings.get("padding_side", "right"))
        self.model_max_length = int(settings.get("model_max_length", 512))
        self.all_special_tokens = list(settings.get("all_special_tokens", []))

    @classmethod
    def from_file(cls, path: str | Path, settings: Mapping[str, Any]) -> JsonTokenizer:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)), settings)

    def __call__(
        self,
        text: str | Sequence[str] | Sequence[Sequence[str]],
        *,
        is_split_into_words: bool = False,
        add_special_tokens: bool = True,
        verbose: bool = True,
    ) -> Encoded:
        """One sequence (a string, or a list of words with ``is_split_into_words``) or a batch."""
        if isinstance(text, str):
            batch: list[Any] = [text]
            single = True
        elif is_split_into_words and (not text or isinstance(text[0], str)):
            batch, single = [list(text)], True
        else:
            batch, single = [t if isinstance(t, str) else list(t) for t in text], False
        encodings = self._tokenizer.encode_batch(
            batch, is_pretokenized=is_split_into_words, add_special_tokens=add_special_tokens
        )
        return Encoded(encodings, single)

    def convert_tokens_to_ids(self, token: str) -> int | None:
        return self._tokenizer.token_to_id(token)


def tokenizer_settings(tokenizer: Any) -> dict[str, Any]:
    """The settings :class:`JsonTokenizer` needs, read from a transformers tokenizer."""
    return {
        "pad_token_id": tokenizer.pad_token_id,
        "padding_side": getattr(tokenizer, "padding_side", "right"),
        "model_max_length": min(int(tokenizer.model_max_length), 1 << 30),
        "all_special_tokens": [str(t) for t in getattr(tokenizer, "all_special_tokens", [])],
    }
