"""Session fixtures: tiny encoders and reference (gliner==0.2.29) checkpoints, each built once."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict

import pytest

from helpers import write_bert_encoder, write_deberta_encoder, write_reference_checkpoint


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


@pytest.fixture(scope="session")
def reference_checkpoint(tmp_path_factory, bert_dir, labels_bert_dir, deberta_dir) -> Callable[..., Path]:
    """``reference_checkpoint(encoder="bert", **gliner_config)``: a checkpoint saved by the reference
    package, built once per distinct configuration for the whole session."""
    pytest.importorskip("gliner")
    encoders = {"bert": bert_dir, "deberta": deberta_dir}
    cache: Dict[str, Path] = {}

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


@pytest.fixture(scope="session")
def nlp_blank():
    import spacy

    return spacy.blank("en")
