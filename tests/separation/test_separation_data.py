"""Augmentations, the MUSDB18 reader on fixture tracks written in both layouts, and museval SDR."""
import numpy as np
import pytest
import torch

from conftest import needs_ffmpeg

from psmexp.data.musdb import MusdbDataModule
from psmexp.data.musdb_synthetic import SOURCES, SyntheticMusdbDataModule, write_synthetic_musdb
from psmexp.data.separation_augment import augment, flip_sign, random_crop, remix, swap_channels
from psmexp.metrics.sdr import TrackEvaluator, aggregate, track_sdr


def test_augmentations_keep_mixture_the_sum_of_sources():
    gen = torch.Generator().manual_seed(0)
    sources = torch.randn(10, 4, 2, 50)
    mix, out = augment(sources, group_size=4, generator=gen)
    torch.testing.assert_close(mix, out.sum(dim=1))
    # each source of each example is still one of the group's stems, up to sign and channel order
    for b in range(10):
        group = range(b // 4 * 4, b // 4 * 4 + 4) if b < 8 else [b]
        for s in range(4):
            candidates = [sign * sources[g, s].flip(0) if flip else sign * sources[g, s]
                          for g in group for sign in (1, -1) for flip in (False, True)]
            assert any(torch.equal(out[b, s], c) for c in candidates)


def test_remix_permutes_each_source_within_groups():
    gen = torch.Generator().manual_seed(1)
    sources = torch.arange(8 * 3).float().view(8, 3, 1, 1).expand(8, 3, 2, 5).contiguous()
    out = remix(sources, 4, gen)
    for g in range(2):
        for s in range(3):
            assert sorted(out[4 * g: 4 * g + 4, s, 0, 0].tolist()) == sorted(sources[4 * g: 4 * g + 4, s, 0, 0].tolist())
    assert not torch.equal(out, sources)


def test_flips_and_crop():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(6, 4, 2, 30)
    flipped = flip_sign(x, gen)
    assert torch.equal(flipped.abs(), x.abs())
    swapped = swap_channels(x, gen)
    assert torch.equal(swapped.sum(dim=2), x.sum(dim=2))
    crop = random_crop(x, 20, gen)
    assert crop.shape[-1] == 20
    assert any(torch.equal(crop, x[..., k:k + 20]) for k in range(11))
    with pytest.raises(ValueError, match="fewer"):
        random_crop(x, 31)


@needs_ffmpeg
def test_sdr_perfect_high_noisy_moderate_silence_low():
    rng = np.random.default_rng(0)
    refs = rng.standard_normal((2, 8000, 2))
    assert np.all(track_sdr(refs, refs, 8000) > 100)
    noisy = track_sdr(refs, refs + 0.1 * rng.standard_normal(refs.shape), 8000)
    np.testing.assert_allclose(noisy, 20.0, atol=0.5)  # noise 20 dB below the source
    # BSS Eval v4 gives a (near-)silent estimate 0 dB, an exactly silent one is an error, the wrong source < 0 dB
    np.testing.assert_allclose(track_sdr(refs, 1e-4 * rng.standard_normal(refs.shape), 8000), 0.0, atol=0.01)
    with pytest.raises(ValueError, match="silent"):
        track_sdr(refs, np.zeros_like(refs), 8000)
    assert np.all(track_sdr(refs, refs[::-1].copy(), 8000) < -2)


@needs_ffmpeg
def test_sdr_aggregation_and_process_pool():
    table = [np.array([1.0, 4.0]), np.array([3.0, 2.0]), np.array([2.0, np.nan])]
    assert aggregate(table, ["a", "b"]) == {"a": 2.0, "b": 3.0, "all": 2.5}
    rng = np.random.default_rng(1)
    refs = rng.standard_normal((2, 8000, 2))
    evaluator = TrackEvaluator(8000, workers=1)
    evaluator.submit(refs, refs + 0.1 * rng.standard_normal(refs.shape))
    np.testing.assert_allclose(evaluator.results()[0], 20.0, atol=1.0)


@pytest.fixture(scope="module")
def wav_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("musdb_wav")
    write_synthetic_musdb(root, train=2, valid=1, test=1, seconds=3.0, samplerate=8000, seed=0)
    return root


@needs_ffmpeg
def test_musdb_reader_on_wav_fixture(wav_root):
    for name in SOURCES + ("mixture",):
        assert (wav_root / "train" / "synthetic_000" / f"{name}.wav").is_file()
    dm = MusdbDataModule(str(wav_root), is_wav=True, samplerate=8000, segment_seconds=1.0, shift_seconds=0.5,
                         batch_size=4, cache=True, setup_file="setup.yaml")
    assert dm.track_names("train") == ["synthetic_000", "synthetic_001"]
    assert dm.track_names("valid") == ["synthetic_002"]
    assert dm.track_names("test") == ["synthetic_test_000"]
    loader = dm.train_dataloader()
    assert len(loader.dataset) == 2 * 2  # floor((3 - 1.5) / 1) + 1 windows per track
    batch = dm.on_after_batch_transfer(next(iter(loader)), 0)
    assert batch["sources"].shape == (4, 4, 2, 8000)
    torch.testing.assert_close(batch["mix"], batch["sources"].sum(dim=1))
    test = next(iter(dm.test_dataloader()))
    mono = test["mix"][0].mean(dim=0)
    assert abs(mono.mean().item()) < 1e-5 and mono.std().item() == pytest.approx(1.0, rel=1e-3)
    torch.testing.assert_close(test["mix"], test["sources"].sum(dim=1), atol=5e-3, rtol=0)  # 16-bit rounding
    valid = next(iter(dm.val_dataloader()))
    torch.testing.assert_close(valid["mix"], valid["sources"].sum(dim=1))


@needs_ffmpeg
@pytest.mark.slow
def test_musdb_reader_on_stem_mp4_fixture(tmp_path):
    import stempeg

    rng = np.random.default_rng(0)
    stems = (0.1 * rng.standard_normal((5, 44100 * 2, 2))).astype(np.float32)
    stems[0] = stems[1:].sum(axis=0)
    for subset in ("train", "test"):
        (tmp_path / subset).mkdir()
        stempeg.write_stems(str(tmp_path / subset / "Fixture Song.stem.mp4"), stems, sample_rate=44100,
                            writer=stempeg.StreamsWriter())
    dm = MusdbDataModule(str(tmp_path), is_wav=False, segment_seconds=0.5, shift_seconds=0.5, batch_size=2)
    assert dm.track_names("train") == ["Fixture Song"]
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert batch["sources"].shape == (2, 4, 2, 22050)
    test = next(iter(dm.test_dataloader()))
    assert test["sources"].shape[:3] == (1, 4, 2) and test["sources"].shape[3] >= 88200


@needs_ffmpeg
def test_reader_errors_name_the_layout(tmp_path):
    dm = MusdbDataModule(str(tmp_path), is_wav=True)
    with pytest.raises(FileNotFoundError, match=r"mixture,drums,bass,other,vocals\}\.wav"):
        dm.track_names("train")
    with pytest.raises(ValueError, match="data.sources"):
        MusdbDataModule(str(tmp_path), sources=["drums", "piano"])
    synthetic = SyntheticMusdbDataModule(str(tmp_path / "syn"), train=1, valid=1, test=1, seconds=2.0,
                                         samplerate=8000)
    synthetic.prepare_data()
    with pytest.raises(ValueError, match="holds synthetic songs made with"):
        SyntheticMusdbDataModule(str(tmp_path / "syn"), train=1, valid=1, test=1, seconds=3.0,
                                 samplerate=8000).prepare_data()
    with pytest.raises(ValueError, match="data.samplerate=44100"):
        MusdbDataModule(str(tmp_path / "syn"), is_wav=True, setup_file="setup.yaml").track_names("test")
