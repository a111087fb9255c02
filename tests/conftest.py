"""Session fixtures: tiny encoders and reference (gliner==0.2.29) checkpoints, each built once."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import (
    save_tiny_deberta,
    write_bert_encoder,
    write_deberta_encoder,
    write_modernbert_encoder,
    write_reference_checkpoint,
)

# The models here are tiny: intra-op threads only add synchronisation cost (10x slower on a busy
# 2-core machine), and one thread keeps float results independent of the core count.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory) -> Path:
    """Tiny random BERT (hidden 32, 2 layers) with its WordPiece tokenizer."""
    return write_bert_encoder(tmp_path_factory.mktemp("bert") / "enc", seed=0)


@pytest.fixture(scope="session")
def labels_bert_dir(tmp_path_factory) -> Path:
    """A second tiny BERT (other weights) used as the labels encoder of bi-encoders."""
    return write_bert_encoder(tmp_path_factory.mktemp("bert_labels") / "enc", seed=7)


@pytest.fixture(scope="session")
def deberta_dir(tmp_path_factory) -> Path:
    """Tiny random DeBERTa-v2 backbone (BERT WordPiece tokenizer)."""
    return write_deberta_encoder(tmp_path_factory.mktemp("deberta") / "enc", seed=0)


def write_deberta_spm_encoder(directory: Path, hidden: int = 32, seed: int = 0) -> Path:
    """A random DeBERTa-v2 with a real SentencePiece (DeBERTa-v3 style) tokenizer trained offline
    on a tiny corpus: words split into a lone "▁" plus pieces, as in published checkpoints."""
    import random

    import sentencepiece as spm
    from helpers import WORDS
    from transformers import DebertaV2TokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    vocab = (
        list(WORDS)
        + [w.capitalize() for w in WORDS]
        + ["1999", "2009", "e-mail", "Dr", ",", ".", "!", "?"]
    )
    corpus = directory / "corpus.txt"
    corpus.write_text(
        "\n".join(" ".join(rng.choice(vocab) for _ in range(12)) for _ in range(1500))
    )
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(directory / "spm"),
        vocab_size=200,
        model_type="unigram",
        character_coverage=1.0,
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        user_defined_symbols=["[CLS]", "[SEP]", "[MASK]"],
        minloglevel=2,
    )
    corpus.unlink()
    # Reads spm.model from the directory (the constructor takes vocab_file in 4.x, vocab in 5.x).
    tok = DebertaV2TokenizerFast.from_pretrained(
        str(directory),
        bos_token="[CLS]",
        eos_token="[SEP]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="[MASK]",
    )
    tok.save_pretrained(str(directory))
    save_tiny_deberta(directory, len(tok), hidden, seed, pad_token_id=0)
    return directory


@pytest.fixture(scope="session")
def deberta_spm_dir(tmp_path_factory) -> Path:
    return write_deberta_spm_encoder(tmp_path_factory.mktemp("deberta_spm") / "enc")


@pytest.fixture(scope="session")
def modernbert_dir(tmp_path_factory) -> Path:
    """Tiny random ModernBERT: the text encoder of the gliner-bi-*-v2.0 checkpoints."""
    return write_modernbert_encoder(tmp_path_factory.mktemp("modernbert") / "enc")


@pytest.fixture(scope="session")
def reference_checkpoint(
    tmp_path_factory, bert_dir, labels_bert_dir, deberta_dir, deberta_spm_dir, modernbert_dir
) -> Callable[..., Path]:
    """``reference_checkpoint(encoder="bert", **gliner_config)``: a checkpoint saved by the reference
    package, built once per distinct configuration for the whole session."""
    pytest.importorskip("gliner")
    encoders = {
        "bert": bert_dir,
        "deberta": deberta_dir,
        "deberta_spm": deberta_spm_dir,
        "modernbert": modernbert_dir,
    }
    cache: dict[str, Path] = {}

    def build(encoder: str = "bert", seed: int = 0, **config: Any) -> Path:
        if config.get("labels_encoder") == "labels_bert":
            config["labels_encoder"] = str(labels_bert_dir)
        key = json.dumps({"encoder": encoder, "seed": seed, **config}, sort_keys=True)
        if key not in cache:
            out = tmp_path_factory.mktemp("ref_ckpt") / "ckpt"
            cache[key] = write_reference_checkpoint(encoders[encoder], out, seed=seed, **config)
        return cache[key]

    return build


@pytest.fixture(scope="session")
def default_checkpoint(reference_checkpoint) -> Path:
    """markerV0 + 1-layer LSTM on the tiny BERT: the shape of the published checkpoints."""
    return reference_checkpoint()
