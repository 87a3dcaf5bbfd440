"""NSynth reader and the pitch-completion split of SING (Defossez thesis ch. 2, Sec. 2.5.1).

Layout read from ``data_dir`` (the published NSynth json/wav release)::

    data_dir/examples.json      {"<note_str>": {"instrument": int, "pitch": int, "velocity": int,
                                                "sample_rate": int, ...}, ...}
    data_dir/audio/<note_str>.wav   16 kHz mono, 4 s (64,000 samples), int16 or float

Items are dicts: ``wav`` float32 ``(num_samples,)`` (the first ``num_samples`` samples of the file),
``velocity`` (index into 25, 50, 75, 100, 127), ``instrument`` (index of the instrument id among the sorted ids
of examples.json), ``pitch`` (MIDI number), all long scalars.

Split (Sec. 2.5.1): for each instrument, ``round(test_fraction * n)`` of its n pitches are drawn at random
(``split_seed``) and all notes of those (instrument, pitch) pairs, every velocity, form the test set; the rest is
the train set. ``eval_train_size`` random train notes are the validation set and the "train" columns of Table 2.1.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytorch_lightning as pl
import torch
from scipy.io import wavfile
from torch.utils.data import DataLoader, Dataset, SequentialSampler

from psmexp.distributed import EvalSampler

NSYNTH_VELOCITIES = (25, 50, 75, 100, 127)
REQUIRED_FIELDS = ("instrument", "pitch", "velocity")


def read_examples(data_dir: str | Path) -> dict[str, dict]:
    """Read and check ``examples.json``; returns {note_str: metadata}."""
    path = Path(data_dir) / "examples.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: data.data_dir must hold the NSynth layout "
                                "examples.json + audio/<note_str>.wav")
    with open(path) as f:
        examples = json.load(f)
    if not isinstance(examples, dict) or not examples:
        raise ValueError(f"{path}: expected a non-empty mapping note_str -> metadata")
    for note, meta in examples.items():
        missing = [k for k in REQUIRED_FIELDS if k not in meta]
        if missing:
            raise ValueError(f"{path}: note {note!r} lacks the field(s) {missing}")
        if meta["velocity"] not in NSYNTH_VELOCITIES:
            raise ValueError(f"{path}: note {note!r} has velocity {meta['velocity']}, "
                             f"expected one of {NSYNTH_VELOCITIES}")
        if not 0 <= meta["pitch"] < 128:
            raise ValueError(f"{path}: note {note!r} has pitch {meta['pitch']} outside [0, 128)")
    return examples


def pitch_completion_split(examples: dict[str, dict], test_fraction: float = 0.1,
                           seed: int = 0) -> tuple[list[str], list[str]]:
    """Hold out ``round(test_fraction * n)`` random pitches of each instrument (all velocities): (train, test)."""
    if not 0 <= test_fraction < 1:
        raise ValueError(f"data.test_fraction must be in [0, 1); got {test_fraction}")
    rng = np.random.default_rng(seed)
    pitches: dict[int, set[int]] = {}
    for meta in examples.values():
        pitches.setdefault(meta["instrument"], set()).add(meta["pitch"])
    held_out = set()
    for instrument in sorted(pitches):
        candidates = sorted(pitches[instrument])
        count = int(round(test_fraction * len(candidates)))
        for pitch in rng.choice(candidates, size=count, replace=False):
            held_out.add((instrument, int(pitch)))
    train, test = [], []
    for note in sorted(examples):
        meta = examples[note]
        (test if (meta["instrument"], meta["pitch"]) in held_out else train).append(note)
    return train, test


def read_wav(path: Path, sample_rate: int, num_samples: int) -> np.ndarray:
    """First ``num_samples`` samples of a mono wav as float32 in [-1, 1]; clear errors otherwise."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (NSynth layout: audio/<note_str>.wav)")
    rate, data = wavfile.read(path)
    if rate != sample_rate:
        raise ValueError(f"{path}: sample rate {rate}, expected data.sample_rate={sample_rate}")
    if data.ndim != 1:
        raise ValueError(f"{path}: expected a mono file, got shape {data.shape}")
    if data.shape[0] < num_samples:
        raise ValueError(f"{path}: {data.shape[0]} samples, fewer than data.num_samples={num_samples}")
    data = data[:num_samples]
    if data.dtype == np.int16:
        return data.astype(np.float32) / 32768.0
    if data.dtype == np.float32:
        return data
    raise ValueError(f"{path}: unsupported sample format {data.dtype} (int16 or float32)")


def write_once(data_dir: Path, params_name: str, params: dict, write: Callable[[], None]) -> None:
    """Write a generated bank into ``data_dir`` by ``write()`` unless it is there already; ``params`` (JSON) are
    recorded in ``data_dir/params_name`` after the bank. A bank made with other params, or a foreign examples.json,
    is an error: nothing is overwritten."""
    params_file = Path(data_dir) / params_name
    if params_file.is_file():
        existing = json.loads(params_file.read_text())
        if existing != params:
            raise ValueError(f"{data_dir} holds a bank written with {existing}, not {params}: "
                             "choose another data.data_dir")
        return
    if (Path(data_dir) / "examples.json").exists():
        raise ValueError(f"{data_dir} already holds an examples.json without {params_name}: "
                         "choose another data.data_dir")
    write()
    params_file.write_text(json.dumps(params))


class NSynthNotes(Dataset):
    """The notes ``notes`` of an NSynth directory (see the module docstring for the item format)."""

    def __init__(self, data_dir: str | Path, examples: dict[str, dict], notes: list[str],
                 instrument_index: dict[int, int], num_samples: int, sample_rate: int):
        self.audio_dir = Path(data_dir) / "audio"
        self.examples, self.notes = examples, notes
        self.instrument_index = instrument_index
        self.num_samples, self.sample_rate = num_samples, sample_rate

    def __len__(self) -> int:
        return len(self.notes)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        note = self.notes[index]
        meta = self.examples[note]
        wav = read_wav(self.audio_dir / f"{note}.wav", self.sample_rate, self.num_samples)
        return {"wav": torch.from_numpy(wav),
                "velocity": torch.tensor(NSYNTH_VELOCITIES.index(meta["velocity"])),
                "instrument": torch.tensor(self.instrument_index[meta["instrument"]]),
                "pitch": torch.tensor(meta["pitch"])}


class NSynthDataModule(pl.LightningDataModule):
    """NSynth pitch completion: train / val (= a train subset) / test = [train subset, held-out pitches].

    ``num_instruments`` is checked against examples.json (the model's instrument table reads it).
    """

    num_velocities = len(NSYNTH_VELOCITIES)
    num_pitches = 128

    def __init__(self, data_dir: str, num_instruments: int, num_samples: int = 64000, sample_rate: int = 16000,
                 test_fraction: float = 0.1, split_seed: int = 0, eval_train_size: int = 1000,
                 batch_size: int = 64, num_workers: int = 0, pin_memory: bool = False):
        super().__init__()
        self.data_dir = Path(data_dir)
        self.num_instruments, self.num_samples, self.sample_rate = num_instruments, num_samples, sample_rate
        self.test_fraction, self.split_seed, self.eval_train_size = test_fraction, split_seed, eval_train_size
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory

    def prepare_data(self) -> None:
        """Nothing to download: the real data set is read from ``data_dir`` (subclasses may write it)."""

    def setup(self, stage: str | None = None) -> None:
        examples = read_examples(self.data_dir)
        ids = sorted({meta["instrument"] for meta in examples.values()})
        if len(ids) != self.num_instruments:
            raise ValueError(f"data.num_instruments={self.num_instruments} but {self.data_dir / 'examples.json'} "
                             f"has {len(ids)} instruments")
        index = {instrument: i for i, instrument in enumerate(ids)}
        train, test = pitch_completion_split(examples, self.test_fraction, self.split_seed)
        rng = np.random.default_rng(self.split_seed)
        eval_train = [train[i] for i in sorted(rng.permutation(len(train))[:self.eval_train_size])]
        make = lambda notes: NSynthNotes(self.data_dir, examples, notes, index, self.num_samples,
                                         self.sample_rate)
        self.train_set, self.eval_train_set, self.test_set = make(train), make(eval_train), make(test)

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        sampler = None if shuffle else EvalSampler(SequentialSampler(dataset))  # unpadded split across DDP ranks
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, sampler=sampler,
                          num_workers=self.num_workers, pin_memory=self.pin_memory,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.eval_train_set, shuffle=False)

    def test_dataloader(self) -> list[DataLoader]:
        """Index 0: train subset, index 1: held-out (instrument, pitch) pairs (Table 2.1's train / test)."""
        return [self._loader(self.eval_train_set, shuffle=False), self._loader(self.test_set, shuffle=False)]
