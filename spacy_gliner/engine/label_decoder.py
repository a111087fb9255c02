"""Label generation: word lists x entity types -> entities, each with a generated type name.

A label-decoder GLiNER (``labels_decoder`` set, ``decoder_mode == "span"``) scores spans as a
span-level uni-encoder and, for every span with some label above its threshold, writes a type
name with its decoder, greedily (the reference samples at temperature 0.01 by default; greedy
search is its ``do_sample=False`` output, and reproducible). A token-level one scores the spans
its token logits list (``token_spans.listed_candidates``) and names those whose best label
probability is above 0.5 (``token_decoder_model``), so an entity between a threshold below 0.5
and 0.5 has no name (``None``). All entity types go in one prompt
per row, so a call runs one label group. Texts are windowed as for entity models; a span's
generated name comes from the window that owns the span. As in the reference, a span's name
depends on the other rows of its batch (``label_decoder.py``); for a text that fits one window,
in a batch of the same texts, names and scores are the reference's.

Thread safety: everything a call computes lives in the call; the engine holds only settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Optional, Union

import numpy as np
import torch

from ..io.tokenizers import Row, TextTokens
from ..model.label_decoder import MAX_LABEL_TOKENS
from ..model.span_decoder_model import DecoderOutput
from ..model.token_decoder_model import TokenDecoderOutput
from .batches import Task, make_batches, make_tasks, plan_text_windows, threshold_table
from .decode import Decoded
from .engine import Engine
from .labels import LabelSet, check_prompt_text, group_table
from .results import WordsResult
from .score import candidates_function, collect_results, listed_candidates
from .torch_context import attention_backends, eval_mode
from .windows import Window, owned_spans

Generated = dict[tuple[int, int], str]  # (first word, last word) -> generated name
Output = Union[DecoderOutput, TokenDecoderOutput]


class GeneratedResult:
    """One text's entity candidates (a :class:`WordsResult`) and the generated name of every
    span that had some label above its threshold (so of every decoded entity)."""

    def __init__(self, entities: WordsResult, generated: Generated) -> None:
        self.entities = entities
        self.generated = generated

    def decode(
        self, flat_ner: bool = True, multi_label: bool = False
    ) -> list[tuple[Decoded, Optional[str]]]:
        """Decoded entities (as ``WordsResult.decode``), each with its generated name (``None``
        when the model generates none: ``decoder_mode`` null)."""
        return [
            (ent, self.generated.get((ent[0], ent[1])))
            for ent in self.entities.decode(flat_ner, multi_label)
        ]


class _Call(NamedTuple):
    words: Sequence[Sequence[str]]
    tokens: list[TextTokens]
    windows: list[list[Window]]
    prompt: np.ndarray  # encoder sub-token ids of the one prompt
    prompt_words: list[str]
    per_label: np.ndarray  # [labels] thresholds
    max_new_tokens: int


class LabelDecoderEngine:
    """Runs a label-decoder GLiNER with the settings of an :class:`Engine` (batching, windows,
    dtype); see the module docstring."""

    def __init__(self, engine: Engine) -> None:
        tokenizer = getattr(engine.gliner, "decoder_tokenizer", None)
        if tokenizer is None:
            raise ValueError(
                "Label generation needs a label-decoder GLiNER checkpoint (labels_decoder set "
                "in gliner_config.json); this model only classifies spans."
            )
        self.engine = engine
        self.tokenizer = tokenizer

    def __call__(
        self,
        word_lists: Sequence[Sequence[str]],
        labels: LabelSet,
        *,
        thresholds: float | Sequence[float] = 0.5,
        max_new_tokens: int = MAX_LABEL_TOKENS,
        sentence_starts: Sequence[Sequence[int]] | None = None,
    ) -> list[GeneratedResult]:
        """Entities and generated names of each word list; ``thresholds`` (one, or one per
        label) select the candidates and the spans that get a name (strictly above)."""
        if len(labels) == 0:
            raise ValueError("GLiNER needs at least one entity label.")
        per_label = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (len(labels),))
        if not word_lists:
            return []
        engine, prompts = self.engine, self.engine.gliner.prompts
        check_prompt_text(list(labels.prompts), prompts.reserved_tokens())
        prompt = prompts.prompt_ids([list(labels.prompts)])[0]
        tokens = prompts.tokenize_words(word_lists)
        fixed = len(prompts.prefix) + len(prompts.suffix)
        budget = engine.max_tokens - fixed - len(prompt)
        if budget < engine.max_width:
            raise ValueError(
                f"The prompt of {len(labels)} entity types takes {len(prompt)} sub-tokens of the "
                f"encoder's {engine.max_tokens}: a label-decoder model reads all types in one "
                "prompt; use fewer or shorter ones."
            )
        windows = plan_text_windows(
            tokens, budget, engine.window_words, engine.overlap, sentence_starts
        )
        words = prompts.prompt_words(list(labels.prompts))
        call = _Call(word_lists, tokens, windows, prompt, words, per_label, max_new_tokens)
        tasks = make_tasks(tokens, windows, [len(prompt)], fixed)
        found, generated, truncated = self._run_tasks(call, tasks)
        lengths = [len(w) for w in word_lists]
        entities = collect_results(windows, lengths, found, truncated, 1, engine.max_width)
        return [GeneratedResult(e, g) for e, g in zip(entities, generated)]

    def _run_tasks(self, call: _Call, tasks: list[Task]) -> tuple[list, list[Generated], Any]:
        engine, prompts = self.engine, self.engine.gliner.prompts
        table = group_table([list(range(len(call.per_label)))])
        limits = threshold_table(table, np.asarray(call.per_label))
        truncated = np.zeros(len(call.tokens), dtype=np.int64)
        found: list = []
        generated: list[Generated] = [{} for _ in call.tokens]
        candidates = candidates_function("span", engine.max_width)
        where = (call.windows, call.tokens)
        with eval_mode(engine.gliner.model):
            for batch in make_batches(tasks, engine.batch_size, engine.max_batch_tokens):
                rows = [
                    Row(call.tokens[t.text], *call.windows[t.text][t.window], call.prompt)
                    for t in batch
                ]
                inputs, cut = prompts.assemble(rows, engine.max_tokens)
                for task, n in zip(batch, cut):
                    truncated[task.text] += n
                inputs.update(self._decoder_inputs(call, batch))
                out = self._run(inputs, call)
                if isinstance(out, TokenDecoderOutput):
                    lists = (out.span_idx, out.span_mask, out.span_logits)
                    found.append(listed_candidates(*lists, batch, *where, table, limits))
                else:
                    probs = torch.sigmoid(out.logits.float())
                    found.append(candidates(probs, batch, *where, table, limits))
                self._collect_names(out, batch, call, generated)
        return found, generated, truncated

    def _decoder_inputs(self, call: _Call, batch: Sequence[Task]) -> dict[str, torch.Tensor]:
        """The reference processor's ``decoder_input_ids`` / ``decoder_words_mask``: each row's
        prompt words and window words, a space before all but the first, split into words;
        padded here on the tokenizer's padding side (its padding state is shared, so calls
        never change it; token-level decoders read padding tokens, word id 0, in order)."""
        texts, skip = [], len(call.prompt_words)
        for t in batch:
            win = call.windows[t.text][t.window]
            row = [*call.prompt_words, *call.words[t.text][win.start : win.end]]
            texts.append([f" {w}" if i else w for i, w in enumerate(row)])
        enc = self.tokenizer(texts, is_split_into_words=True, verbose=False)
        width = max(len(ids) for ids in enc["input_ids"])
        ids = np.full((len(texts), width), self.tokenizer.pad_token_id, dtype=np.int64)
        word_ids = np.zeros((len(texts), width), dtype=np.int64)
        left = self.tokenizer.padding_side == "left"
        for r, row_ids in enumerate(enc["input_ids"]):
            at = width - len(row_ids) if left else 0
            ids[r, at : at + len(row_ids)] = row_ids
            for j, w in enumerate(enc.word_ids(r)):
                if w is not None and w >= skip:
                    word_ids[r, at + j] = w - skip + 1
        return {
            "decoder_input_ids": torch.from_numpy(ids),
            "decoder_words_mask": torch.from_numpy(word_ids),
        }

    @torch.inference_mode()
    def _run(self, inputs: dict, call: _Call) -> Output:
        gliner = self.engine.gliner
        device = gliner.device
        inputs = {k: v.to(device) for k, v in inputs.items()}
        limit = torch.tensor(np.array(call.per_label), dtype=torch.float32, device=device)
        dtype = self.engine.options.dtype
        with (
            torch.autocast(device.type, dtype=dtype, enabled=dtype is not None),
            attention_backends(device),
        ):
            return gliner.model.generate(
                **inputs,
                threshold=limit,
                eos_token_id=self.tokenizer.eos_token_id,
                pad_token_id=self.tokenizer.pad_token_id,
                max_new_tokens=call.max_new_tokens,
            )

    def _collect_names(
        self, out: Output, batch: Sequence[Task], call: _Call, generated: list[Generated]
    ) -> None:
        """Decoded names of the batch's selected spans, kept for the spans of the window's words
        that the window owns."""
        names = self.tokenizer.batch_decode(out.token_ids.cpu(), skip_special_tokens=True)
        rows, starts, widths = (x.cpu().numpy() for x in (out.rows, out.starts, out.widths))
        for r in np.unique(rows).tolist():
            task = batch[r]
            wins = call.windows[task.text]
            win = wins[task.window]
            at = np.flatnonzero((rows == r) & (starts + widths < win.end - win.start))
            first = starts[at] + win.start
            last = first + widths[at]
            if len(wins) > 1:
                num_words = len(call.words[task.text])
                at = at[owned_spans(wins, task.window, num_words, first, last)]
                first = starts[at] + wins[task.window].start
                last = first + widths[at]
            for m, a, b in zip(at.tolist(), first.tolist(), last.tolist()):
                generated[task.text][(a, b)] = names[m]
