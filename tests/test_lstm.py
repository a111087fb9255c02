"""The word-level BiLSTM: every padded batch gives each text the outputs of the LSTM run on that text
alone (the reference packs its batches), with zeros at padding, on both of its CPU paths."""

import pytest
import torch

from spacy_gliner.model.lstm import BiLSTM


def _alone(module: BiLSTM, words: torch.Tensor, lengths: torch.Tensor) -> list:
    """Each text through ``nn.LSTM`` on its own: no padding anywhere."""
    return [module.lstm(words[b : b + 1, : int(n)])[0][0] for b, n in enumerate(lengths)]


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("num_words", [8, BiLSTM.UNPACKED_MIN_WORDS + 23])
def test_padded_batch_equals_each_text_alone(num_layers, num_words):
    torch.manual_seed(num_layers * 100 + num_words)
    module = BiLSTM(32, num_layers).eval()
    lengths = torch.tensor([num_words, 1, num_words - 3, 5, num_words])
    words = torch.randn(len(lengths), num_words, 32)
    with torch.no_grad():
        out = module(words, lengths)
        alone = _alone(module, words, lengths)
    assert out.shape == (len(lengths), num_words, 32)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(out[b, :n], alone[b], rtol=0, atol=1e-6)
        assert torch.all(out[b, n:] == 0)


def test_unpacked_path_gradients_equal_each_text_alone():
    torch.manual_seed(3)
    module = BiLSTM(16, 2)
    num_words = BiLSTM.UNPACKED_MIN_WORDS + 4
    lengths = torch.tensor([num_words, 7, num_words - 1])
    words = torch.randn(3, num_words, 16, requires_grad=True)
    grad_out = torch.randn(3, num_words, 16)

    def grads(outputs):
        module.zero_grad()
        words.grad = None
        sum((o * grad_out[b, : o.size(0)]).sum() for b, o in enumerate(outputs)).backward()
        return words.grad.clone(), {k: p.grad.clone() for k, p in module.named_parameters()}

    out = module(words, lengths)
    batched = grads([out[b, :n] for b, n in enumerate(lengths.tolist())])
    alone = grads(_alone(module, words, lengths))
    torch.testing.assert_close(batched[0], alone[0], rtol=0, atol=1e-6)
    for name, grad in alone[1].items():
        torch.testing.assert_close(batched[1][name], grad, rtol=0, atol=1e-5, msg=name)
