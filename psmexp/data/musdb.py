"""MUSDB18 for music source separation, read through the `musdb` package (Rafii et al. 2017).

Défossez, thesis ch. 3, section 3.5. Layouts read from `data_dir` (the `musdb` package needs ffmpeg/ffprobe):
    stems (is_wav=false):  data_dir/{train,test}/<track>.stem.mp4
    wav   (is_wav=true):   data_dir/{train,test}/<track>/{mixture,drums,bass,other,vocals}.wav
Splits: train = the 84 songs of `train` outside musdb's validation list, valid = the 16 (14 in musdb >= 0.4) of
that list, test = the 50 songs of `test`; `setup_file` (relative to data_dir) replaces musdb's setup file (the
synthetic set uses it for its own validation list).

Batches:
- train: sources (B, S, C, T) of `segment_seconds`; an epoch is every window of segment + shift seconds with a
  stride of `stride_seconds` over every track; each example keeps a random T-sample window of it (random shift);
  channel swap, sign flip and remix across groups of `remix_group_size` are applied on the device after transfer
  (psmexp.data.separation_augment), and the task computes the mixture as the sum of the sources.
- valid / test: one whole track per batch: {"mix": (1, C, T), "sources": (1, S, C, T), "mean", "std", "index"};
  valid uses the sum of the sources as mixture, test the track's mixture file.
Decoding: reading a window through musdb decodes the whole track with ffmpeg (about 1.4 s per training example,
even for wav). `cache_dir` decodes each track once into `<cache_dir>/<stems|wav>/<subset>/<track>__<sources>.npy`
(float32, (1 + S, C, T): mixture then sources) and memory-maps it, so a training window is a slice of the page cache
shared by every DataLoader worker and DDP process; `cache: true` keeps the decoded tracks in each process's memory
instead (small data sets); neither re-decodes per window. Under DDP the valid/test tracks are split across ranks
without padding (psmexp.distributed.EvalSampler).
Every track is normalised by its mixture's statistics: with m the mono mixture, mix <- (mix - mean(m)) / std(m)
and source <- (source - mean(m) / S) / std(m), which keeps mix = sum of sources.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, SequentialSampler

from psmexp.data.separation_augment import augment, random_crop
from psmexp.distributed import EvalSampler

MUSDB_SOURCES = ("drums", "bass", "other", "vocals")


def open_musdb(data_dir: str | Path, subset: str, split: str | None, is_wav: bool, setup_file: str | None):
    """musdb.DB over one subset/split, with clear errors for a missing layout or a missing ffmpeg."""
    root = Path(data_dir)
    try:
        import musdb
    except RuntimeError as error:  # stempeg raises at import when ffmpeg/ffprobe are missing
        raise RuntimeError(f"the musdb package needs ffmpeg and ffprobe on PATH to read {root}: {error}") from error
    if not (root / subset).is_dir():
        layout = "<track>/{mixture,drums,bass,other,vocals}.wav" if is_wav else "<track>.stem.mp4"
        raise FileNotFoundError(f"data.data_dir={root}: no '{subset}' folder; expected MUSDB18 as "
                                f"{root}/{{train,test}}/{layout} (data.is_wav={is_wav})")
    if setup_file is not None and not (root / setup_file).is_file():
        raise FileNotFoundError(f"data.setup_file={setup_file}: not found in {root}")
    db = musdb.DB(root=str(root), subsets=subset, split=split, is_wav=is_wav, setup_file=setup_file)
    if not db.tracks:
        raise FileNotFoundError(f"data.data_dir={root}: no track in subset '{subset}' split '{split}' "
                                f"(is_wav={is_wav}; expected the MUSDB18 layout)")
    return db


class MusdbTracks:
    """Whole-track access with per-track mixture statistics; each track decoded once into `cache_dir` (memory-mapped)
    or into memory (`cache`), else decoded per read."""

    def __init__(self, db, sources: tuple[str, ...], samplerate: int, cache: bool, cache_dir: str | Path | None = None):
        self.tracks, self.sources, self.samplerate, self.cache = db.tracks, tuple(sources), samplerate, cache
        self.cache_dir = None if cache_dir is None else Path(cache_dir) / ("wav" if db.is_wav else "stems")
        self._audio: dict[int, np.ndarray] = {}   # (1 + S, C, T) per track
        self.stats = []
        for index, track in enumerate(self.tracks):
            if int(track.rate) != samplerate:
                raise ValueError(f"data.samplerate={samplerate} but track '{track.name}' is at {track.rate} Hz")
            missing = set(self.sources) - set(track.sources)
            if missing:
                raise ValueError(f"data.sources: track '{track.name}' has no source(s) {sorted(missing)}")
            mixture = self.read(index)[0]
            mono = mixture.mean(axis=0)
            self.stats.append((float(mono.mean()), float(mono.std()) + 1e-8))

    def __len__(self) -> int:
        return len(self.tracks)

    def num_samples(self, index: int) -> int:
        return int(self.tracks[index].samples)

    def read(self, index: int, start: float = 0.0, duration: float | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """(mixture file (C, T), sources (S, C, T)) as float32, from `start` seconds for `duration` seconds."""
        audio = self._decoded(index)
        if audio is None:
            return self._load(index, start, duration)
        first = int(round(start * self.samplerate))
        last = None if duration is None else first + int(round(duration * self.samplerate))
        window = np.array(audio[:, :, first:last])  # a copy: memory-mapped pages are read-only
        return window[0], window[1:]

    def _decoded(self, index: int) -> np.ndarray | None:
        """The whole track (1 + S, C, T) from the cache (decoded on first use), or None without a cache."""
        if index in self._audio:
            return self._audio[index]
        if self.cache_dir is not None:
            track = self.tracks[index]
            path = self.cache_dir / str(track.subset) / f"{track.name}__{'-'.join(self.sources)}.npy"
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                mixture, sources = self._load(index, 0.0, None)
                tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
                with open(tmp, "wb") as file:
                    np.save(file, np.concatenate([mixture[None], sources]))
                tmp.replace(path)  # atomic: concurrent writers (workers, ranks) leave one whole file
            self._audio[index] = np.load(path, mmap_mode="r")
        elif self.cache:
            mixture, sources = self._load(index, 0.0, None)
            self._audio[index] = np.concatenate([mixture[None], sources])
        else:
            return None
        return self._audio[index]

    def __getstate__(self) -> dict:
        """Memory maps are reopened in each process (pickled, they would be read whole into memory)."""
        state = dict(self.__dict__)
        if self.cache_dir is not None:
            state["_audio"] = {}
        return state

    def _load(self, index: int, start: float, duration: float | None) -> tuple[np.ndarray, np.ndarray]:
        track = self.tracks[index]
        track.chunk_start, track.chunk_duration = start, duration
        mixture = track.audio.T.astype(np.float32)
        sources = np.stack([track.sources[name].audio.T for name in self.sources]).astype(np.float32)
        track.chunk_start, track.chunk_duration = 0, None
        return mixture, sources

    def normalised(self, index: int, mixture: np.ndarray, sources: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = self.stats[index]
        mix = (torch.from_numpy(mixture) - mean) / std
        return mix, (torch.from_numpy(sources) - mean / len(self.sources)) / std


class SegmentDataset(Dataset):
    """Training examples: (S, C, T) normalised sources of a random T-sample window in each strided window."""

    def __init__(self, tracks: MusdbTracks, segment_seconds: float, shift_seconds: float, stride_seconds: float):
        self.tracks = tracks
        self.window = segment_seconds + shift_seconds
        self.length = int(segment_seconds * tracks.samplerate)
        self.index = []
        for track in range(len(tracks)):
            seconds = tracks.num_samples(track) / tracks.samplerate
            count = max(int(math.floor((seconds - self.window) / stride_seconds)) + 1, 0)
            self.index += [(track, k * stride_seconds) for k in range(count)]
        if not self.index:
            raise ValueError(f"data.segment_seconds + data.shift_seconds = {self.window} s is longer than every "
                             "training track")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> torch.Tensor:
        track, start = self.index[item]
        mixture, sources = self.tracks.read(track, start, self.window)
        return random_crop(self.tracks.normalised(track, mixture, sources)[1], self.length)


class TrackDataset(Dataset):
    """Whole normalised tracks; the mixture is the mixture file (`use_mixture_file`) or the sum of the sources."""

    def __init__(self, tracks: MusdbTracks, use_mixture_file: bool, max_seconds: float | None = None):
        self.tracks, self.use_mixture_file, self.max_seconds = tracks, use_mixture_file, max_seconds

    def __len__(self) -> int:
        return len(self.tracks)

    def __getitem__(self, index: int) -> dict:
        mixture, sources = self.tracks.read(index, 0.0, self.max_seconds)
        mix, sources_n = self.tracks.normalised(index, mixture, sources)
        if not self.use_mixture_file:
            mix = sources_n.sum(dim=0)
        mean, std = self.tracks.stats[index]
        return {"mix": mix, "sources": sources_n, "mean": torch.tensor(mean), "std": torch.tensor(std),
                "index": torch.tensor(index)}


class MusdbDataModule(pl.LightningDataModule):
    """MUSDB18 train/valid/test (see the module docstring). `sources` must name stems of the data set."""

    def __init__(self, data_dir: str, is_wav: bool = False, samplerate: int = 44100,
                 sources: list[str] | tuple[str, ...] = MUSDB_SOURCES, audio_channels: int = 2,
                 segment_seconds: float = 10.0, shift_seconds: float = 1.0, stride_seconds: float = 1.0,
                 batch_size: int = 64, remix_group_size: int = 4, augment: bool = True,
                 valid_max_seconds: float | None = None, cache: bool = False, cache_dir: str | None = None,
                 num_workers: int = 0, pin_memory: bool = False, setup_file: str | None = None, seed: int = 0):
        super().__init__()
        if segment_seconds <= 0 or shift_seconds < 0 or stride_seconds <= 0:
            raise ValueError(f"data: segment_seconds ({segment_seconds}) and stride_seconds ({stride_seconds}) must "
                             f"be > 0 and shift_seconds ({shift_seconds}) >= 0")
        unknown = set(sources) - set(MUSDB_SOURCES)
        if unknown:
            raise ValueError(f"data.sources: unknown {sorted(unknown)}; allowed: {', '.join(MUSDB_SOURCES)}")
        self.data_dir, self.is_wav, self.samplerate = data_dir, is_wav, samplerate
        self.sources, self.audio_channels = tuple(sources), audio_channels
        self.segment_seconds, self.shift_seconds, self.stride_seconds = segment_seconds, shift_seconds, stride_seconds
        self.batch_size, self.remix_group_size, self.augment = batch_size, remix_group_size, augment
        self.valid_max_seconds, self.cache, self.cache_dir = valid_max_seconds, cache, cache_dir
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.setup_file, self.seed = setup_file, seed
        self.splits: dict[str, MusdbTracks] = {}
        self.generator = torch.Generator().manual_seed(seed)

    def tracks(self, stage: str) -> MusdbTracks:
        """MusdbTracks of 'train', 'valid' or 'test' (opened on first use)."""
        if stage not in self.splits:
            subset, split = ("test", None) if stage == "test" else ("train", stage)
            db = open_musdb(self.data_dir, subset, split, self.is_wav, self.setup_file)
            self.splits[stage] = MusdbTracks(db, self.sources, self.samplerate, self.cache, self.cache_dir)
        return self.splits[stage]

    def track_names(self, stage: str) -> list[str]:
        return [track.name for track in self.tracks(stage).tracks]

    def train_dataloader(self):
        dataset = SegmentDataset(self.tracks("train"), self.segment_seconds, self.shift_seconds, self.stride_seconds)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=True, drop_last=True,
                          num_workers=self.num_workers, generator=self.generator, pin_memory=self.pin_memory,
                          persistent_workers=self.num_workers > 0)

    def _whole_tracks(self, dataset: Dataset) -> DataLoader:
        return DataLoader(dataset, batch_size=1, sampler=EvalSampler(SequentialSampler(dataset)),
                          num_workers=self.num_workers, pin_memory=self.pin_memory)

    def val_dataloader(self):
        return self._whole_tracks(TrackDataset(self.tracks("valid"), False, self.valid_max_seconds))

    def test_dataloader(self):
        return self._whole_tracks(TrackDataset(self.tracks("test"), True))

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Training batches (B, S, C, T) become {"mix", "sources"}, augmented when `augment`."""
        if isinstance(batch, torch.Tensor):
            if self.augment:
                mix, sources = augment(batch, self.remix_group_size, self.generator)
            else:
                mix, sources = batch.sum(dim=1), batch
            return {"mix": mix, "sources": sources}
        return batch
