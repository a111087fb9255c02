"""Shared by the label-decoder and token-level span-list parity tests: comparing outputs with
the reference's, and preparing the reference's checkpoints and instances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import transformers

TOL = 1e-5
HEAD_SCALE = 0.12
EOS_SCALE = 40.0  # eos's row of the decoder's tied embedding: some generations end early
# Under transformers 5 the tiny random GPT-2 of the fixtures (other random init) ends every
# greedy label at eos at once, in the reference as in ours: spans, scores and the (empty) labels
# are still compared, but label variety is only checked on transformers 4.x.
EMPTY_LABELS_FIXTURE = int(transformers.__version__.split(".")[0]) >= 5
EMPTY_LABELS_REASON = "transformers 5: the tiny GPT-2 fixture generates only empty labels"


def entity_key(e: dict) -> tuple:
    return (e["start"], e["end"], e["label"], tuple(e.get("generated_labels") or ()))


def assert_same(ref_out: list[list[dict]], our_out: list[list[dict]], where: str) -> int:
    """Identical spans, labels and generated labels (order included); scores within TOL."""
    assert len(ref_out) == len(our_out)
    for ref, ours in zip(ref_out, our_out):
        assert [entity_key(e) for e in ours] == [entity_key(e) for e in ref], where
        np.testing.assert_allclose(
            [e["score"] for e in ours], [e["score"] for e in ref], atol=TOL, rtol=0, err_msg=where
        )
    return sum(len(r) for r in ref_out)


def end_some_generations(ckpt: Path, ref_gliner) -> None:
    """Scale eos's row of the decoder's (tied) embedding once, so greedy generations differ in
    length (random heads otherwise never write eos)."""
    path, marker = ckpt / "pytorch_model.bin", ckpt / "eos_scaled"
    if marker.exists():
        return
    state = torch.load(path, map_location="cpu")
    eos = ref_gliner.GLiNER.from_pretrained(str(ckpt), local_files_only=True)
    eos_id = eos.data_processor.decoder_tokenizer.eos_token_id
    for key in ("transformer.wte.weight", "lm_head.weight"):
        full = f"decoder.decoder_layer.model.{key}"
        if full in state:
            state[full] = state[full].clone()
            state[full][eos_id] *= EOS_SCALE
    torch.save(state, path)
    marker.write_text("")


def use_reference_greedy_loop(ref) -> None:
    """Without full_decoder_context each span's prefix is one vector, and transformers'
    ``generate`` (4.x) then feeds that vector again at every step instead of the token just
    generated (``prepare_inputs_for_generation`` takes a prefix as long as the new positions
    for the prompt), so the reference's labels never read their own tokens. We decode greedily
    as the reference's own loop ``Decoder.generate_from_embeds_custom`` does (equal to
    ``generate`` for every longer prefix, as the full-context models check): compare with
    that loop on this reference instance."""
    decoder = ref.model.decoder
    decoder.generate_from_embeds = decoder.generate_from_embeds_custom


def without_padding_spans(decode_batch):
    """The reference's ``decode_batch`` over its listed spans minus those reaching past their
    text's words (token-level span lists cover the batch's padding words; the reference then
    fails mapping such spans to text)."""

    def decode(model_output, batch, **kwargs):
        lengths = torch.tensor([len(t) for t in batch["tokens"]])
        real = model_output.span_idx[..., 1] < lengths[:, None].to(model_output.span_idx.device)
        model_output.span_mask = model_output.span_mask & real
        return decode_batch(model_output, batch, **kwargs)

    return decode
