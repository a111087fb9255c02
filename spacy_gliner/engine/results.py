"""Per-text inference results: scored candidate spans as arrays, decoded on demand."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .decode import Candidate, Decoded, decode_arrays

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class WordsResult:
    """Scored candidate spans of one text and how the text was run.

    Candidates are the cells above their label's threshold, one score per (start, end, label)
    (from the window that owns the cell), held as arrays in the reference decoder's enumeration
    order: (start, end, label) for span models, (start, label, end) for token-level models (whose
    candidates are the spans formed from start / end / inside scores, ``token_spans.py``).
    ``num_windows`` / ``num_label_groups`` say how the text was split; ``unscored_spans`` counts
    spans of up to ``max_width`` words that no window could hold and ``truncated_words`` the
    words that fell past the encoder's sub-token limit (both 0 unless the sub-token budget is
    tiny or a single word is longer than the encoder window). ``span_vectors`` /
    ``label_vectors``: ``[N, D]`` float32, row for row with the candidates (an engine call with
    ``vectors=True``; see ``vectors.py``), else None. Immutable.
    """

    def __init__(
        self,
        candidates: Sequence[Candidate] | None = None,
        num_windows: int = 0,
        num_label_groups: int = 0,
        *,
        arrays: Arrays | None = None,
        unscored_spans: int = 0,
        truncated_words: int = 0,
        vectors: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        if arrays is None:
            cands = list(candidates or ())
            arrays = (
                np.array([c.start for c in cands], dtype=np.int64),
                np.array([c.end for c in cands], dtype=np.int64),
                np.array([c.label for c in cands], dtype=np.int64),
                np.array([c.score for c in cands], dtype=np.float64),
            )
        self.starts, self.ends, self.labels, self.scores = arrays
        self.num_windows = num_windows
        self.num_label_groups = num_label_groups
        self.unscored_spans = unscored_spans
        self.truncated_words = truncated_words
        pair = vectors if vectors is not None else (None, None)
        self.span_vectors: np.ndarray | None = pair[0]
        self.label_vectors: np.ndarray | None = pair[1]

    @property
    def candidates(self) -> list[Candidate]:
        return [
            Candidate(s, e, lab, p)
            for s, e, lab, p in zip(
                self.starts.tolist(), self.ends.tolist(), self.labels.tolist(), self.scores.tolist()
            )
        ]

    def __len__(self) -> int:
        return len(self.scores)

    def decode(self, flat_ner: bool = True, multi_label: bool = False) -> list[Decoded]:
        """(first word, last word inclusive, label index, score) spans under the given decoding."""
        return decode_arrays(
            self.starts, self.ends, self.labels, self.scores, bool(flat_ner), bool(multi_label)
        )

    def vectors_of(self, decoded: Sequence[Decoded]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(span vector ``[D]``, label vector ``[D]``) of each decoded span; raises
        ``ValueError`` when the call that made this result did not ask for vectors."""
        if self.span_vectors is None or self.label_vectors is None:
            raise ValueError("These results have no vectors: run the engine with vectors=True.")
        index = {
            key: i
            for i, key in enumerate(
                zip(self.starts.tolist(), self.ends.tolist(), self.labels.tolist())
            )
        }
        rows = [index[(start, end, label)] for start, end, label, _ in decoded]
        return [(self.span_vectors[i], self.label_vectors[i]) for i in rows]
