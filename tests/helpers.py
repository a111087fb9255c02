"""Tiny random encoders and reference checkpoints, built offline (reference doc, section 8)."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

WORDS = [
    "the",
    "a",
    "an",
    "of",
    "in",
    "on",
    "at",
    "to",
    "for",
    "and",
    "or",
    "is",
    "was",
    "were",
    "be",
    "born",
    "died",
    "city",
    "country",
    "president",
    "company",
    "barack",
    "obama",
    "hawaii",
    "paris",
    "france",
    "london",
    "google",
    "apple",
    "microsoft",
    "new",
    "york",
    "john",
    "smith",
    "mary",
    "river",
    "university",
    "house",
    "visited",
    "founded",
    "works",
    "lives",
    "capital",
    "state",
    "river",
    "team",
    "player",
    "won",
    "cup",
    "game",
    "film",
    "song",
    "band",
    "music",
    "album",
    "book",
    "author",
    "wrote",
    "novel",
    "king",
    "queen",
    "war",
    "army",
    "doctor",
    "disease",
    "cancer",
    "drug",
    "person",
    "location",
    "organization",
    "date",
    "time",
    "money",
    "event",
    "product",
]


def write_bert_encoder(
    directory: Path, hidden: int = 32, layers: int = 2, heads: int = 2, seed: int = 0
) -> Path:
    """A random BERT with a WordPiece vocab of ~150 tokens, saved as a Hugging Face directory."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += list(string.ascii_lowercase) + list(string.digits) + list(".,;:!?'\"()-_/@&$%")
    vocab += ["##" + c for c in string.ascii_lowercase]
    vocab += [w for w in dict.fromkeys(WORDS) if w not in vocab]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 2,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(directory)
    # From the vocab file in the directory: the constructor's argument is ``vocab_file`` in
    # transformers 4 and ``vocab`` in 5, ``from_pretrained`` reads the file in both.
    BertTokenizerFast.from_pretrained(str(directory), model_max_length=512).save_pretrained(
        directory
    )
    return directory


def write_deberta_encoder(directory: Path, hidden: int = 32, seed: int = 0) -> Path:
    """A random DeBERTa-v2 backbone with the tiny BERT WordPiece tokenizer (numerics only)."""
    from transformers import BertTokenizerFast

    directory = Path(directory)
    write_bert_encoder(directory, hidden=hidden, seed=seed)
    for f in ("config.json", "model.safetensors", "pytorch_model.bin"):
        if (directory / f).exists():
            (directory / f).unlink()
    tok = BertTokenizerFast.from_pretrained(str(directory))
    save_tiny_deberta(directory, len(tok), hidden, seed)
    return directory


def save_tiny_deberta(
    directory: Path, vocab_size: int, hidden: int, seed: int, **extra: Any
) -> None:
    """A random 2-layer DeBERTa-v2 backbone (relative attention, as DeBERTa-v3) saved in ``directory``."""
    import torch
    from transformers import DebertaV2Config, DebertaV2Model

    torch.manual_seed(seed)
    config = DebertaV2Config(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=512,
        relative_attention=True,
        pos_att_type=["p2c", "c2p"],
        position_buckets=32,
        max_relative_positions=64,
        **extra,
    )
    DebertaV2Model(config).save_pretrained(str(directory))


def write_modernbert_encoder(directory: Path, hidden: int = 32, seed: int = 0) -> Path:
    """A random 3-layer ModernBERT (rotary positions, alternating global / 8-token local
    attention) with a byte-level BPE tokenizer trained offline, built like the published one:
    ``PreTrainedTokenizerFast``, ``[CLS] $A [SEP]``, no ``token_type_ids``, no bos / eos."""
    import random

    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import BpeTrainer
    from transformers import ModernBertConfig, ModernBertModel, PreTrainedTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    vocab = WORDS + [w.capitalize() for w in WORDS] + ["1999", "2009", "e-mail", ",", ".", "!"]
    corpus = [" ".join(rng.choice(vocab) for _ in range(12)) for _ in range(500)]
    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=alphabet, show_progress=False
    )
    tok.train_from_iterator(corpus, trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        **{f"{name}_token": f"[{name.upper()}]" for name in ("unk", "cls", "sep", "pad", "mask")},
        model_max_length=512,
        model_input_names=["input_ids", "attention_mask"],
    )
    fast.save_pretrained(str(directory))
    torch.manual_seed(seed)
    config = ModernBertConfig(
        vocab_size=len(fast),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=3,
        num_attention_heads=2,
        max_position_embeddings=512,
        global_attn_every_n_layers=2,
        local_attention=8,
        initializer_range=0.3,  # sharp attention: rotary positions separate repeated words
        pad_token_id=fast.pad_token_id,
        cls_token_id=cls,
        sep_token_id=sep,
        bos_token_id=cls,
        eos_token_id=sep,
    )
    ModernBertModel(config).save_pretrained(str(directory))
    return directory


def write_reference_checkpoint(
    encoder_dir: Path, out_dir: Path, seed: int = 0, head_scale: float = 0.05, **config: Any
) -> Path:
    """Create a GLiNER model with the reference package and save it (random heads, perturbed by
    Gaussian noise of standard deviation ``head_scale``)."""
    import torch
    from gliner import GLiNER as RefGLiNER
    from gliner import GLiNERConfig as RefConfig

    torch.manual_seed(seed)
    settings: dict[str, Any] = {"hidden_size": 32, "max_width": 4, "dropout": 0.0}
    settings.update(config)
    model = RefGLiNER.from_config(
        RefConfig(model_name=str(encoder_dir), **settings), backbone_from_pretrained=True
    )
    _perturb_heads(model.model, seed, head_scale)
    model.save_pretrained(str(out_dir))
    return Path(out_dir)


def _perturb_heads(model, seed: int, scale: float) -> None:
    """Random heads give near-zero logits; widen them so decoding selects real spans."""
    import torch

    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith("token_rep_layer.bert_layer.model"):
                p.add_(torch.randn(p.shape, generator=gen) * scale)


def make_examples(nlp, data):
    """spaCy Examples from ``[(whitespace-tokenized text, [(start, end, label), ...]), ...]``."""
    from spacy.tokens import Doc, Span
    from spacy.training import Example

    examples = []
    for text, spans in data:
        ref = Doc(nlp.vocab, words=text.split())
        ref.ents = [Span(ref, s, e, label=lab) for s, e, lab in spans]
        examples.append(Example(Doc(nlp.vocab, words=text.split()), ref))
    return examples


def first_and_last_loss(nlp, examples, steps: int, learn_rate: float = 1e-3):
    """Losses of the first and the last of ``steps + 1`` ``nlp.update`` calls on ``examples``."""
    import torch

    optimizer = nlp.create_optimizer()
    optimizer.learn_rate = learn_rate
    torch.manual_seed(0)
    first = last = nlp.update(examples, sgd=optimizer, losses={})["gliner"]
    for _ in range(steps):
        last = nlp.update(examples, sgd=optimizer, losses={})["gliner"]
    return first, last


def write_gpt2_decoder(
    directory: Path, hidden: int = 16, seed: int = 0, eos_scale: float = 1.0
) -> Path:
    """A random 2-layer GPT-2 language model with a byte-level BPE tokenizer trained offline
    (eos ``<|endoftext|>``, no pad), saved as a Hugging Face directory: the label decoder of
    label-decoder checkpoints. ``eos_scale`` scales eos's (tied) embedding, so some greedy
    generations end early."""
    import random

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.trainers import BpeTrainer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    corpus = [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(300)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    tok.model.save(str(directory))  # vocab.json, merges.txt
    fast = GPT2TokenizerFast(
        vocab_file=str(directory / "vocab.json"), merges_file=str(directory / "merges.txt")
    )
    fast.save_pretrained(str(directory))
    torch.manual_seed(seed)
    eos = fast.eos_token_id
    config = GPT2Config(
        vocab_size=len(fast),
        n_embd=hidden,
        n_layer=2,
        n_head=2,
        n_positions=256,
        bos_token_id=eos,
        eos_token_id=eos,
    )
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        model.transformer.wte.weight[eos] *= eos_scale
    model.save_pretrained(str(directory))
    return directory
