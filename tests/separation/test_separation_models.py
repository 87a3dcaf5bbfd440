"""Demucs and Conv-TasNet: length arithmetic, shapes, weight rescaling, equivariant stabilization, chunking."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from psmexp.models.conv_tasnet import ConvTasNet, GlobalLayerNorm
from psmexp.models.demucs import Demucs, center_trim, rescale_conv_
from psmexp.models.separate import separate, separate_shifted


def forward_lengths(n0, depth, kernel, stride, context):
    """Independent trace of the unpadded network's lengths: (encoder exact?, output length or -1 if too short)."""
    exact, n = True, n0
    for _ in range(depth):
        if n < kernel:
            return exact, -1
        exact &= (n - kernel) % stride == 0
        n = (n - kernel) // stride + 1
    for _ in range(depth):
        if n < context:
            return exact, -1
        n = (n - context) * stride + kernel
    return exact, n


def test_valid_length_hand_case():
    # L=1, K=8, S=4, context=3: output 100 needs 26 bottleneck frames (ceil(92/4) + 3) -> input (26-1)*4+8 = 108.
    model = Demucs(channels=4, depth=1, lstm_layers=0)
    assert model.valid_length(100) == 108
    assert forward_lengths(108, 1, 8, 4, 3) == (True, 100)


@pytest.mark.parametrize("depth,context", [(6, 3), (4, 3), (3, 1)])
def test_valid_length_is_enough_and_exact(depth, context):
    model = Demucs(channels=4, depth=depth, context=context, lstm_layers=0)
    for length in (1, 7, 100, 4097, 44100, 123457):
        n0 = model.valid_length(length)
        exact, out = forward_lengths(n0, depth, 8, 4, context)
        assert n0 >= length and exact and out >= length
        # one stride step (4^depth samples) less would not be enough
        assert forward_lengths(n0 - 4 ** depth, depth, 8, 4, context)[1] < length or n0 - 4 ** depth < length


@pytest.mark.parametrize("length", [1, 333, 4096, 9001])
def test_output_shapes(length):
    torch.manual_seed(0)
    demucs = Demucs(channels=4, depth=3, lstm_layers=1)
    assert demucs(torch.randn(2, 2, length)).shape == (2, 4, 2, length)
    tasnet = ConvTasNet(N=8, B=8, H=16, X=2, R=1)
    assert tasnet(torch.randn(2, 2, length)).shape == (2, 4, 2, length)


def test_center_trim():
    x = torch.arange(10)
    assert center_trim(x, 7).tolist() == [1, 2, 3, 4, 5, 6, 7]
    with pytest.raises(ValueError, match="fewer than"):
        center_trim(x, 11)


def test_rescaling_sets_documented_std():
    torch.manual_seed(3)
    conv = nn.Conv1d(16, 32, 8, 4)
    std0, bias0 = conv.weight.std().item(), conv.bias.detach().clone()
    rescale_conv_(conv, 0.1)
    assert conv.weight.std().item() == pytest.approx(math.sqrt(std0 * 0.1), rel=1e-5)
    torch.testing.assert_close(conv.bias, bias0 / math.sqrt(std0 / 0.1))
    # in the model: every convolution of the rescaled Demucs is sqrt(std * a) of the plain one (same seed)
    torch.manual_seed(1)
    plain = Demucs(channels=4, depth=2, rescale=0)
    torch.manual_seed(1)
    scaled = Demucs(channels=4, depth=2, rescale=0.1)
    convs = [(p, s) for p, s in zip(plain.modules(), scaled.modules()) if isinstance(p, (nn.Conv1d, nn.ConvTranspose1d))]
    assert len(convs) == 2 * 2 + 2 * 2
    for p, s in convs:
        assert s.weight.std().item() == pytest.approx(math.sqrt(p.weight.std().item() * 0.1), rel=1e-5)


class Repeat(nn.Module):
    """A 'model' that copies the mixture to every source, scaled: exactly shift-equivariant."""
    sources = 3

    def forward(self, mix):
        return torch.stack([mix * (k + 1) for k in range(self.sources)], dim=1)


def test_shift_and_chunk_alignment_on_an_equivariant_model():
    mix = torch.randn(2, 2, 1000)
    expected = Repeat()(mix)
    torch.testing.assert_close(separate_shifted(Repeat(), mix, [0, 3, 17, 20], max_shift=20), expected)
    torch.testing.assert_close(separate(Repeat(), mix, shifts=5, max_shift=50, chunk_length=300), expected)
    with pytest.raises(ValueError, match="outside"):
        separate_shifted(Repeat(), mix, [21], max_shift=20)


def test_shift_trick_makes_demucs_equivariant():
    torch.manual_seed(0)
    model = Demucs(channels=4, depth=2, lstm_layers=1).eval()  # total stride 16
    x = torch.randn(1, 2, 600)
    delta, interior = 5, slice(100, 480)
    shifted = torch.roll(x, delta, dims=-1)
    with torch.no_grad():
        def error(f):
            return (f(shifted)[..., delta:][..., interior] - f(x)[..., :-delta][..., interior]).abs().mean().item()
        plain = error(model)
        stabilized = error(lambda y: separate_shifted(model, y, list(range(16)), max_shift=16))
        scale = model(x).abs().mean().item()
    assert plain > 0.05 * scale          # a strided U-Net alone is not equivariant
    assert stabilized < 1e-4 * scale      # averaging over every offset modulo the stride is
    assert stabilized < plain / 100


def test_global_layer_norm_matches_numpy():
    torch.manual_seed(0)
    norm = GlobalLayerNorm(5)
    norm.weight.data.uniform_(0.5, 2)
    norm.bias.data.uniform_(-1, 1)
    x = torch.randn(3, 5, 7) * 3 + 1
    a = x.numpy().astype(np.float64)
    mean, var = a.mean(axis=(1, 2), keepdims=True), a.var(axis=(1, 2), keepdims=True)
    expected = (a - mean) / np.sqrt(var + 1e-8) * norm.weight.detach().numpy()[:, None] + norm.bias.detach().numpy()[:, None]
    np.testing.assert_allclose(norm(x).detach().numpy(), expected, rtol=1e-4, atol=1e-5)


def test_conv_tasnet_matches_torchaudio_size_and_every_parameter_learns():
    """Mono, at the paper's sizes, ours has exactly torchaudio's parameter count (an independent implementation of
    the same network); and every parameter gets a gradient (DistributedDataParallel rejects unused ones)."""
    import torchaudio
    reference = torchaudio.models.ConvTasNet(
        num_sources=4, enc_kernel_size=20, enc_num_feats=256, msk_kernel_size=3, msk_num_feats=256,
        msk_num_hidden_feats=512, msk_num_layers=10, msk_num_stacks=4, msk_activate="relu")
    count = lambda model: sum(p.numel() for p in model.parameters())
    assert count(ConvTasNet(audio_channels=1)) == count(reference)
    small = ConvTasNet(N=8, B=8, H=16, X=3, R=2)
    small(torch.randn(1, 2, 200)).square().mean().backward()
    assert all(p.grad is not None for p in small.parameters())


def test_separation_models_reject_bad_arguments():
    with pytest.raises(ValueError, match="L"):
        ConvTasNet(L=21)
    with pytest.raises(ValueError, match="context"):
        Demucs(context=2)
    with pytest.raises(ValueError, match="expects"):
        Demucs(channels=4, depth=1)(torch.randn(1, 3, 100))
