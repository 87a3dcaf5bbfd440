"""A built-in bank of synthetic instruments written in the NSynth layout, so SING runs offline.

Each instrument (drawn from ``seed``) is an additive synthesizer:
  x(t) = env(t) * g(v) * sum_k a_k(v) sin(2 pi f_k t + phi_k) + noise burst,
  f_k = k f0 sqrt(1 + B k^2)            (stiff-string inharmonicity B),
  a_k = k^(-rolloff) * (1 + formant bump) * velocity brightness,  partials above 7.5 kHz dropped,
  env: linear attack, exponential decay to a sustain level, release after ``release_at`` (NSynth notes are held
  3 s of 4 s), and a filtered-noise attack burst whose level is an instrument trait.
The initial phases phi_k are random for every note: as for recordings, the waveform of an unseen note is not
predictable up to phase, which is what Table 2.1's waveform-vs-spectral comparison is about.
Pitches: a contiguous range of ``pitches_per_instrument`` MIDI notes per instrument; velocities: all five NSynth
values. ``write_synthetic_nsynth`` writes examples.json + audio/<note_str>.wav (int16) and a
``synthetic_params.json`` recording the generator settings.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.io import wavfile
from scipy.signal import lfilter

from psmexp.data.nsynth import NSYNTH_VELOCITIES, NSynthDataModule, write_once


def instrument_traits(rng: np.random.Generator) -> dict:
    """Random timbre of one instrument."""
    return {"rolloff": float(rng.uniform(0.6, 2.0)),
            "inharmonicity": float(10 ** rng.uniform(-5, -3)),
            "formant_hz": float(rng.uniform(400, 3000)),
            "formant_gain": float(rng.uniform(0, 3)),
            "odd_only": bool(rng.random() < 0.25),
            "attack_s": float(10 ** rng.uniform(-2.5, -1)),
            "decay_s": float(rng.uniform(0.1, 1.5)),
            "sustain": float(rng.uniform(0.05, 0.8)),
            "release_s": float(rng.uniform(0.05, 0.5)),
            "noise": float(rng.uniform(0, 0.3)),
            "lowest_pitch": int(rng.integers(36, 60))}


def render_note(traits: dict, pitch: int, velocity: int, rng: np.random.Generator, num_samples: int,
                sample_rate: int, release_at: float) -> np.ndarray:
    """One note, float64 ``(num_samples,)`` peaking below 1."""
    t = np.arange(num_samples) / sample_rate
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    k = np.arange(1, 80)
    if traits["odd_only"]:
        k = k[k % 2 == 1]
    freqs = k * f0 * np.sqrt(1 + traits["inharmonicity"] * k ** 2)
    k, freqs = k[freqs < 7500], freqs[freqs < 7500]
    loudness = velocity / 127
    amps = k ** (-traits["rolloff"] / (0.5 + loudness))
    amps *= 1 + traits["formant_gain"] * np.exp(-0.5 * ((freqs - traits["formant_hz"]) / 300) ** 2)
    phases = rng.uniform(0, 2 * np.pi, size=len(k))
    tone = np.sin(2 * np.pi * freqs[:, None] * t[None, :] + phases[:, None]).T @ amps / amps.sum()
    attack = np.clip(t / traits["attack_s"], 0, 1)
    decay = traits["sustain"] + (1 - traits["sustain"]) * np.exp(-np.maximum(t - traits["attack_s"], 0)
                                                                  / traits["decay_s"])
    release = np.exp(-np.maximum(t - release_at, 0) / traits["release_s"])
    envelope = attack * decay * release
    burst = lfilter([1.0], [1.0, -0.9], rng.standard_normal(num_samples)) * np.exp(-t / 0.05)
    burst /= np.abs(burst).max() + 1e-9
    note = envelope * tone + traits["noise"] * burst
    return 0.8 * loudness ** 0.7 * note / (np.abs(note).max() + 1e-9)


def write_synthetic_nsynth(data_dir: str | Path, num_instruments: int = 8, pitches_per_instrument: int = 20,
                           num_samples: int = 64000, sample_rate: int = 16000, seed: int = 0) -> None:
    """Write the bank into ``data_dir`` in the NSynth layout (examples.json + audio/<note_str>.wav)."""
    data_dir = Path(data_dir)
    (data_dir / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    examples = {}
    for instrument in range(num_instruments):
        traits = instrument_traits(rng)
        name = f"synthetic_{instrument:03d}"
        for pitch in range(traits["lowest_pitch"], traits["lowest_pitch"] + pitches_per_instrument):
            for velocity in NSYNTH_VELOCITIES:
                note_str = f"{name}-{pitch:03d}-{velocity:03d}"
                wav = render_note(traits, pitch, velocity, rng, num_samples, sample_rate, 0.75 * num_samples
                                  / sample_rate)
                wavfile.write(data_dir / "audio" / f"{note_str}.wav", sample_rate,
                              np.round(wav * 32767).astype(np.int16))
                examples[note_str] = {"note_str": note_str, "instrument": instrument, "instrument_str": name,
                                      "pitch": pitch, "velocity": velocity, "sample_rate": sample_rate,
                                      "instrument_source_str": "synthetic", "qualities": []}
    with open(data_dir / "examples.json", "w") as f:
        json.dump(examples, f, indent=1)


class NSynthSyntheticDataModule(NSynthDataModule):
    """``NSynthDataModule`` over the synthetic bank, written to ``data_dir`` on first use and reused after.

    A ``data_dir`` holding a bank written with other generator settings is an error (it is never overwritten).
    """

    def __init__(self, data_dir: str, num_instruments: int = 8, pitches_per_instrument: int = 20,
                 generator_seed: int = 0, **kwargs):
        super().__init__(data_dir, num_instruments, **kwargs)
        self.params = {"num_instruments": num_instruments, "pitches_per_instrument": pitches_per_instrument,
                       "num_samples": self.num_samples, "sample_rate": self.sample_rate, "seed": generator_seed}

    def prepare_data(self) -> None:
        write_once(self.data_dir, "synthetic_params.json", self.params,
                   lambda: write_synthetic_nsynth(self.data_dir, **self.params))
