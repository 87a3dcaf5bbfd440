"""Speed of our Demucs and Conv-TasNet against peer implementations (Défossez thesis ch. 3, "Training speed").

    python benchmarks/separation.py                       # Demucs C=16, Conv-TasNet on 2 x 0.5 s
    python benchmarks/separation.py --channels 48 --batch 4 --threads 2
    python benchmarks/separation.py --only demucs

- Demucs: ours (psmexp.models.demucs.Demucs) against the `demucs` package's `demucs.demucs.Demucs` set to the same
  architecture: depth 6, kernel 8, stride 4, growth 2, 2 BiLSTM layers, GLU, ReLU (gelu=False), no normalisation
  (norm_starts=depth), no DConv branch (dconv_mode=0), no input normalisation or resampling, rescale 0.1, and
  context=1, which is its decoder kernel 2 * 1 + 1 = 3 (ours: kernel 3, the thesis' "context 3"; the package's
  context=3 would be a kernel of 7). Training step: forward + L1 loss + backward on `--batch` x 2 x 10 s at 44.1 kHz.
  Separation: forward without gradients on 1 x 2 x 10 s; reported in seconds of audio per second.
- Conv-TasNet: ours at audio_channels=1 against torchaudio.models.ConvTasNet (mono only) with the same sizes
  (N=256, L=20, B=256, H=512, P=3, X=10, R=4, 4 sources, ReLU mask; torchaudio's skip channels equal B as ours,
  its normalisation is a GroupNorm(1, .), i.e. gLN). Inputs: `--tasnet-batch` x 1 x `--tasnet-seconds`.
Times are medians of `--repeats` interleaved runs after one warm-up; ratios are ours / reference (goal: <= 1.0).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from psmexp.models.conv_tasnet import ConvTasNet
from psmexp.models.demucs import Demucs

SAMPLERATE = 44100


def median_times(fns, repeats: int) -> list[float]:
    """Median wall time of each function; runs are interleaved (a, b, a, b, ...) so that load drifts on a shared
    machine hit both alike."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, record in zip(fns, times):
            start = time.perf_counter()
            fn()
            record.append(time.perf_counter() - start)
    return [statistics.median(record) for record in times]


def train_step(model, mix):
    def step():
        model.zero_grad(set_to_none=True)
        model(mix).abs().mean().backward()
    return step


def separation(model, mix):
    def run():
        with torch.no_grad():
            model(mix)
    return run


def compare(name: str, ours, reference, train_input, separate_input, repeats: int) -> None:
    count = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731
    print(f"\n{name}: parameters ours {count(ours):.2f}M, reference {count(reference):.2f}M")
    ours_train, ref_train = median_times([train_step(ours, train_input), train_step(reference, train_input)],
                                         repeats)
    print(f"  training step on {tuple(train_input.shape)}: ours {ours_train:.3f} s, reference {ref_train:.3f} s, "
          f"ratio {ours_train / ref_train:.2f}x")
    seconds = separate_input.shape[-1] * separate_input.shape[0] / SAMPLERATE
    ours_sep, ref_sep = median_times([separation(ours, separate_input), separation(reference, separate_input)],
                                     repeats)
    print(f"  separation of {tuple(separate_input.shape)}: ours {seconds / ours_sep:.3g} s of audio/s, reference "
          f"{seconds / ref_sep:.3g} s/s, time ratio {ours_sep / ref_sep:.2f}x")


def demucs_pair(channels: int):
    from demucs.demucs import Demucs as PackageDemucs

    ours = Demucs(channels=channels, depth=6, lstm_layers=2, context=3, rescale=0.1)
    reference = PackageDemucs(sources=["drums", "bass", "other", "vocals"], audio_channels=2, channels=channels,
                              growth=2.0, depth=6, rewrite=True, lstm_layers=2, kernel_size=8, stride=4, context=1,
                              gelu=False, glu=True, norm_starts=6, dconv_mode=0, normalize=False, resample=False,
                              rescale=0.1, samplerate=SAMPLERATE)
    return ours, reference


def tasnet_pair():
    from torchaudio.models import ConvTasNet as TorchaudioConvTasNet

    ours = ConvTasNet(audio_channels=1, N=256, L=20, B=256, H=512, P=3, X=10, R=4)
    reference = TorchaudioConvTasNet(num_sources=4, enc_kernel_size=20, enc_num_feats=256, msk_kernel_size=3,
                                     msk_num_feats=256, msk_num_hidden_feats=512, msk_num_layers=10,
                                     msk_num_stacks=4, msk_activate="relu")
    return ours, reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=16, help="Demucs C1 (thesis: 100)")
    parser.add_argument("--batch", type=int, default=4, help="Demucs training batch of 10 s stereo examples")
    parser.add_argument("--tasnet-batch", type=int, default=2)
    parser.add_argument("--tasnet-seconds", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=["demucs", "conv_tasnet"], default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, medians of {args.repeats} runs")
    if args.only in (None, "demucs"):
        ours, reference = demucs_pair(args.channels)
        length = 10 * SAMPLERATE
        compare(f"Demucs C={args.channels}", ours, reference, torch.randn(args.batch, 2, length),
                torch.randn(1, 2, length), args.repeats)
    if args.only in (None, "conv_tasnet"):
        ours, reference = tasnet_pair()
        length = int(args.tasnet_seconds * SAMPLERATE)
        compare("Conv-TasNet (mono)", ours, reference, torch.randn(args.tasnet_batch, 1, length),
                torch.randn(1, 1, length), args.repeats)


if __name__ == "__main__":
    main()
