"""Synthetic multitrack songs written in the MUSDB18 wav layout, so that the separation task runs offline.

Layout written (the one `musdb.DB(root, is_wav=True)` reads):
    root/train/<track>/{mixture,drums,bass,other,vocals}.wav     16-bit PCM stereo, `samplerate` Hz
    root/test/<track>/...
    root/setup.yaml       musdb's own setup file with `validation_tracks` set to the synthetic validation songs
Each song has a random tempo (90-140 bpm), key and chord progression (four chords, one per bar):
- drums: percussive noise bursts (kick: decaying 120 -> 45 Hz sine sweep; snare: noise burst plus a 180 Hz tone;
  hi-hat: differentiated noise burst on eighth notes);
- bass: one plucked, low-passed sawtooth per eighth note on the chord's root, two octaves down;
- other: the chord's triad as sustained harmonic tones with a slow attack;
- vocals: a melody of chord tones with rests; a glottal-like source (harmonics with a -12 dB/octave tilt and
  5.5 Hz vibrato) through three vowel formant resonators.
Each source is panned at random; the mixture file is the sum of the (quantised) sources.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import yaml
from scipy import signal

from psmexp.data.musdb import MusdbDataModule

SOURCES = ("drums", "bass", "other", "vocals")
_VOWEL_FORMANTS = ((730, 1090, 2440), (270, 2290, 3010), (530, 1840, 2480), (570, 840, 2410), (300, 870, 2240))
_MAJOR = (0, 2, 4, 5, 7, 9, 11)


def _midi_hz(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def _envelope(length: int, samplerate: int, attack: float, decay: float) -> np.ndarray:
    t = np.arange(length) / samplerate
    return np.minimum(t / max(attack, 1e-4), 1.0) * np.exp(-t / decay)


def _place(track: np.ndarray, event: np.ndarray, start: int) -> None:
    end = min(len(track), start + len(event))
    if end > start:
        track[start:end] += event[:end - start]


def _drums(rng, length, sr, beat):
    out = np.zeros(length)
    t = np.arange(int(0.4 * sr)) / sr
    kick = np.sin(2 * np.pi * np.cumsum(45 + 75 * np.exp(-t / 0.03)) / sr) * np.exp(-t / 0.15)
    noise = rng.standard_normal(len(t))
    snare = (0.6 * noise + 0.5 * np.sin(2 * np.pi * 180 * t)) * np.exp(-t / 0.08)
    hat = np.diff(rng.standard_normal(int(0.06 * sr) + 1)) * np.exp(-t[:int(0.06 * sr)] / 0.015) * 0.3
    for index in range(int(length / sr / (beat / 2)) + 1):
        start = int(index * beat / 2 * sr)
        _place(out, hat * rng.uniform(0.6, 1.0), start)
        if index % 4 == 0:
            _place(out, kick, start)
        if index % 4 == 2:
            _place(out, snare * rng.uniform(0.8, 1.0), start)
    return out


def _tone(freq: float, length: int, sr: int, harmonics: int, tilt: float, vibrato: float = 0.0) -> np.ndarray:
    t = np.arange(length) / sr
    phase = 2 * np.pi * np.cumsum(freq * (1 + vibrato * np.sin(2 * np.pi * 5.5 * t))) / sr
    ks = np.arange(1, harmonics + 1)
    ks = ks[ks * freq < sr / 2 * 0.9]
    return (np.sin(np.outer(phase, ks)) * ks.astype(float) ** -tilt).sum(axis=1)


def _bass(rng, length, sr, beat, roots):
    out = np.zeros(length)
    note_len = int(beat / 2 * sr)
    b, a = signal.butter(2, 800 / (sr / 2))
    for index in range(length // note_len + 1):
        root = roots[(index // 8) % len(roots)] - 24
        pluck = _tone(_midi_hz(root), note_len, sr, 20, 1.0) * _envelope(note_len, sr, 0.005, beat / 3)
        _place(out, signal.lfilter(b, a, pluck), index * note_len)
    return out


def _other(rng, length, sr, beat, roots):
    out = np.zeros(length)
    bar = int(4 * beat * sr)
    for index in range(length // bar + 1):
        root = roots[index % len(roots)]
        chord = sum(_tone(_midi_hz(root + step), bar, sr, 8, 1.5) for step in (0, 4, 7))
        _place(out, chord * _envelope(bar, sr, 0.3, 4 * beat), index * bar)
    return out


def _vocals(rng, length, sr, beat, roots):
    out = np.zeros(length)
    note_len = int(beat * sr)
    for index in range(length // note_len + 1):
        if rng.random() < 0.25:
            continue  # a rest
        root = roots[(index // 4) % len(roots)]
        pitch = root + 12 + rng.choice((0, 4, 7, 12))
        voiced = _tone(_midi_hz(pitch), note_len, sr, 40, 2.0, vibrato=0.01)
        shaped = np.zeros(note_len)
        for formant in _VOWEL_FORMANTS[rng.integers(len(_VOWEL_FORMANTS))]:
            if formant < sr / 2 * 0.9:
                b, a = signal.iirpeak(formant, 8, fs=sr)
                shaped += signal.lfilter(b, a, voiced)
        _place(out, shaped * _envelope(note_len, sr, 0.04, beat * 2), index * note_len)
    return out


def synthesize_song(seconds: float, samplerate: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One song: {source: (T, 2) float array}, each source at a random level and pan."""
    length = int(seconds * samplerate)
    beat = 60.0 / rng.uniform(90, 140)
    key = int(rng.integers(48, 60))
    degrees = rng.choice(len(_MAJOR), size=4)
    roots = [key + _MAJOR[d] for d in degrees]
    makers = dict(drums=_drums, bass=_bass, other=_other, vocals=_vocals)
    song = {}
    for name in SOURCES:
        mono = makers[name](rng, length, samplerate, beat) if name == "drums" else \
            makers[name](rng, length, samplerate, beat, roots)
        mono = mono / (np.sqrt(np.mean(mono ** 2)) + 1e-8) * 0.05 * rng.uniform(0.5, 1.5)
        pan = rng.uniform(0.2, 0.8)
        song[name] = np.stack([mono * np.sqrt(1 - pan), mono * np.sqrt(pan)], axis=1)
    return song


def write_synthetic_musdb(root: str | Path, train: int = 8, valid: int = 2, test: int = 2, seconds: float = 6.0,
                          samplerate: int = 44100, seed: int = 0) -> Path:
    """Write `train + valid` songs under root/train (the last `valid` listed as validation tracks in
    root/setup.yaml) and `test` songs under root/test. Returns the setup file's path."""
    import musdb
    import soundfile

    root = Path(root)
    rng = np.random.default_rng(seed)
    names = {"train": [f"synthetic_{i:03d}" for i in range(train + valid)],
             "test": [f"synthetic_test_{i:03d}" for i in range(test)]}
    for subset, tracks in names.items():
        for name in tracks:
            folder = root / subset / name
            folder.mkdir(parents=True, exist_ok=True)
            song = synthesize_song(seconds, samplerate, rng)
            quantised = {k: np.round(np.clip(v, -1, 1) * 32767) / 32767 for k, v in song.items()}
            for source, audio in quantised.items():
                soundfile.write(folder / f"{source}.wav", audio, samplerate, subtype="PCM_16")
            soundfile.write(folder / "mixture.wav", np.clip(sum(quantised.values()), -1, 1), samplerate,
                            subtype="PCM_16")
    with open(Path(musdb.__path__[0]) / "configs" / "mus.yaml") as handle:
        setup = yaml.safe_load(handle)
    setup["validation_tracks"] = names["train"][train:]
    setup["sample_rate"] = float(samplerate)
    setup["synthetic"] = dict(train=train, valid=valid, test=test, seconds=seconds, samplerate=samplerate, seed=seed)
    setup_path = root / "setup.yaml"
    with open(setup_path, "w") as handle:
        yaml.safe_dump(setup, handle)
    return setup_path



class SyntheticMusdbDataModule(MusdbDataModule):
    """MusdbDataModule over synthetic songs that it writes to `data_dir` first when data_dir/setup.yaml is absent.

    The songs depend on (train, valid, test, seconds, samplerate, song_seed), recorded in setup.yaml; songs written
    with other settings are an error (choose another data_dir or delete it). They are written to a temporary
    sibling folder first and renamed, so that concurrent jobs never read half-written songs.
    Other arguments: those of MusdbDataModule (the layout is always wav, the setup file always setup.yaml).
    """

    def __init__(self, data_dir: str, train: int = 8, valid: int = 2, test: int = 2, seconds: float = 6.0,
                 song_seed: int = 0, samplerate: int = 44100, **kwargs):
        super().__init__(data_dir=data_dir, is_wav=True, samplerate=samplerate, setup_file="setup.yaml", **kwargs)
        self.song_settings = dict(train=train, valid=valid, test=test, seconds=seconds, samplerate=samplerate,
                                  seed=song_seed)

    def prepare_data(self) -> None:
        root = Path(self.data_dir)
        if not (root / "setup.yaml").is_file():
            staging = root.with_name(f"{root.name}.tmp-{os.getpid()}")
            shutil.rmtree(staging, ignore_errors=True)
            write_synthetic_musdb(staging, **self.song_settings)
            root.parent.mkdir(parents=True, exist_ok=True)
            try:
                staging.rename(root)
            except OSError:  # written meanwhile by another job (or root exists and is not empty)
                shutil.rmtree(staging, ignore_errors=True)
        with open(root / "setup.yaml") as handle:
            found = yaml.safe_load(handle).get("synthetic")
        if found != self.song_settings:
            raise ValueError(f"data.data_dir={root} holds synthetic songs made with {found}, not with the "
                             f"configured {self.song_settings}; choose another data.data_dir or delete it")
