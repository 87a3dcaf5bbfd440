"""SING model: squared-Hann overlap-add, length arithmetic, chunked (truncated-BPTT) generation."""
import numpy as np
import pytest
import torch

from psmexp.models.sing import ConvDecoder, Sing, SingLengths, WindowedConvTranspose1d


def test_squared_hann_overlap_add_is_constant_at_quarter_hop():
    n, hop, frames = 1024, 256, 12
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)  # periodic Hann, numpy
    expected = np.zeros((frames - 1) * hop + n)
    for f in range(frames):
        expected[f * hop:f * hop + n] += window ** 2
    interior = expected[n - hop:len(expected) - (n - hop)]
    np.testing.assert_allclose(interior, 1.5, atol=1e-12)  # 4 * 3/8
    conv = WindowedConvTranspose1d(1, 1, n, stride=hop, bias=False)  # no padding: full overlap-add
    with torch.no_grad():
        conv.weight.fill_(1.0)
        out = conv(torch.ones(1, 1, frames, dtype=torch.float32))[0, 0].double().numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_decoder_padding_keeps_exactly_the_constant_region():
    decoder = ConvDecoder(channels=1, dimension=1, kernel_size=1024, stride=256, context_size=1, rewrite_layers=0)
    with torch.no_grad():
        for p in decoder.parameters():
            p.zero_()
        decoder.layers[0].weight.fill_(1.0)  # conv 1x1 -> ReLU passes ones
        decoder.layers[-1].weight.fill_(1.0)
        out = decoder(torch.ones(1, 1, 20))
    assert out.shape == (1, 19 * 256 + 1024 - 2 * 768)
    torch.testing.assert_close(out, torch.full_like(out, 1.5))


def test_nsynth_length_arithmetic():
    lengths = SingLengths(num_samples=64000)
    assert (lengths.strip, lengths.pad, lengths.padded_length) == (1792, 2304, 68608)
    assert lengths.num_frames == 265  # the thesis' N
    assert lengths.output_length == 65024 and lengths.margin == 512


@pytest.mark.parametrize("num_samples", [4096, 16384])
def test_model_shapes_follow_the_arithmetic(num_samples):
    torch.manual_seed(0)
    model = Sing(num_instruments=3, num_samples=num_samples, hidden_size=8, num_layers=1, channels=8,
                 dimension=4, rewrite_layers=1)
    lengths = model.lengths
    wav = torch.randn(2, lengths.padded_length)
    assert model.encode(wav).shape == (2, 4, lengths.num_frames)
    assert model.autoencode(wav).shape == model.target(wav).shape == (2, lengths.output_length)
    symbols = [torch.tensor([0, 4]), torch.tensor([2, 1]), torch.tensor([60, 61])]
    assert model(*symbols).shape == (2, lengths.output_length)
    assert model.note(*symbols).shape == (2, num_samples)


def test_target_of_padded_note_is_note_with_margin():
    lengths = SingLengths(num_samples=2048)
    note = torch.randn(1, 2048)
    padded = torch.nn.functional.pad(note, (lengths.pad, lengths.pad))
    model = Sing(num_instruments=1, num_samples=2048, hidden_size=4, num_layers=1, channels=4, dimension=2)
    target = model.target(padded)
    assert target.shape[-1] == lengths.output_length
    torch.testing.assert_close(model.trim(target), note)
    assert target[..., :lengths.margin].abs().sum() == 0


def test_bad_length_names_the_key():
    with pytest.raises(ValueError, match="num_samples"):
        SingLengths(num_samples=16000)


def test_chunked_generation_equals_whole_sequence():
    torch.manual_seed(0)
    model = Sing(num_instruments=2, num_samples=4096, hidden_size=8, num_layers=2, channels=4, dimension=3)
    gen = model.generator
    symbols = [torch.tensor([1, 3]), torch.tensor([0, 1]), torch.tensor([40, 50])]
    whole, _ = gen(*symbols)
    parts, hidden, start = [], None, 0
    while start < gen.num_frames:
        length = min(7, gen.num_frames - start)
        out, hidden = gen(*symbols, start=start, length=length, hidden=hidden)
        parts.append(out)
        start += length
    torch.testing.assert_close(torch.cat(parts, dim=-1), whole)


def test_time_embedding_can_be_removed():
    model = Sing(num_instruments=2, num_samples=4096, time_dim=0, hidden_size=4, num_layers=1, channels=4,
                 dimension=2)
    assert model.generator.time is None
    assert model.generator.lstm.input_size == 2 + 16 + 8
