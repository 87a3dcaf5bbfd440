"""Real sampled instruments in the NSynth layout: notes rendered from a General MIDI SoundFont with FluidSynth.

The default SoundFont is FluidR3_GM (Debian ``fluid-soundfont-gm``, MIT licence): recorded samples of real
instruments, played by the ``fluidsynth`` program (Debian ``fluidsynth``). Each note is made the way the NSynth data
set's were (Engel et al. 2017, "Neural Audio Synthesis of Musical Notes with WaveNet Autoencoders"; Defossez thesis
Sec. 2.5.1): the key is held for 3 s and released, the recording is cut at 4 s, 16 kHz; every pitch at the five
velocities 25, 50, 75, 100, 127.

Rendering: one Standard MIDI File per instrument holds all its notes, one 4-s slot each (program change, note-on
at the slot start, note-off 3 s later, "all sound off" (controller 120) at the slot end, so no release leaks into
the next note); one ``fluidsynth`` call renders it at 3 x ``sample_rate`` (48 kHz for NSynth's 16 kHz) with
reverb and chorus off and a fixed ``gain``, in 32-bit float. Each slot is cut out sample-exactly, the two channels
are averaged to mono, resampled to ``sample_rate`` with scipy's anti-aliasing polyphase filter (1/3), checked
(not silent, not clipped) and written as int16 ``audio/<note_str>.wav`` with an NSynth ``examples.json`` entry:

    note, note_str, instrument, instrument_str, pitch, velocity, sample_rate, qualities, qualities_str,
    instrument_family, instrument_family_str, instrument_source, instrument_source_str

``instrument`` is the General MIDI program number, ``instrument_str`` = ``<family>_<source>_<program:03d>``,
``note_str`` = ``<instrument_str>-<pitch:03d>-<velocity:03d>`` (NSynth's naming). NSynth's ten note qualities were
annotated by listeners and heuristics; these notes are not: ``qualities`` is all zeros and ``qualities_str`` empty.
The bank is read by the unchanged NSynth reader (``psmexp.data.nsynth``), pitch-completion split included.
"""
from __future__ import annotations

import json
import shutil
import struct
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
from scipy.io import wavfile
from scipy.signal import resample_poly

from psmexp.data.nsynth import NSYNTH_VELOCITIES, NSynthDataModule, write_once

NSYNTH_FAMILIES = ("bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed", "string",
                   "synth_lead", "vocal")
NSYNTH_SOURCES = ("acoustic", "electronic", "synthetic")
NSYNTH_QUALITIES = ("bright", "dark", "distortion", "fast_decay", "long_release", "multiphonic", "nonlinear_env",
                    "percussive", "reverb", "tempo-synced")
NOTE_SECONDS, HELD_SECONDS = 4, 3
RENDER_FACTOR = 3            # render at 3 x sample_rate, then resample (anti-aliased) to sample_rate
TICKS_PER_SECOND = 1000      # MIDI division 1000 ticks per quarter note at 60 bpm: one tick per millisecond
SILENT_PEAK = 1e-4           # a rendered note whose peak is below this is an error (no sample for the key)
PACKAGES = "Debian packages fluidsynth and fluid-soundfont-gm (apt-get install fluidsynth fluid-soundfont-gm)"


def check_renderer(soundfont: str | Path) -> str:
    """Path of the ``fluidsynth`` program; a clear error naming the Debian packages if it or the SoundFont is
    missing."""
    program = shutil.which("fluidsynth")
    if program is None:
        raise FileNotFoundError(f"the fluidsynth program is not on PATH: install the {PACKAGES}")
    if not Path(soundfont).is_file():
        raise FileNotFoundError(f"SoundFont {soundfont} (data.soundfont) not found: install the {PACKAGES}, "
                                "or point data.soundfont at a General MIDI .sf2 file")
    return program


def _varlen(value: int) -> bytes:
    """MIDI variable-length quantity: 7 bits per byte, most significant first, high bit set on all but the last."""
    groups = [value & 0x7F]
    value >>= 7
    while value:
        groups.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(groups))


def notes_midi(program: int, notes: list[tuple[int, int]]) -> bytes:
    """A format-0 Standard MIDI File playing ``notes`` [(pitch, velocity)] on channel 0 with ``program``, one
    ``NOTE_SECONDS`` slot each: note-on at the slot start, note-off after ``HELD_SECONDS``, all sound off at the end.
    """
    slot, held = NOTE_SECONDS * TICKS_PER_SECOND, HELD_SECONDS * TICKS_PER_SECOND
    events = [(0, b"\xff\x51\x03" + (1_000_000).to_bytes(3, "big")),   # tempo: one quarter note per second
              (0, bytes([0xC0, program]))]
    for i, (pitch, velocity) in enumerate(notes):
        start = i * slot
        events += [(start, bytes([0x90, pitch, velocity])), (start + held, bytes([0x80, pitch, 0])),
                   (start + slot, bytes([0xB0, 120, 0]))]
    events.append((len(notes) * slot, b"\xff\x2f\x00"))                # end of track
    track, now = b"", 0
    for tick, message in events:                                       # already in time order
        track += _varlen(tick - now) + message
        now = tick
    return (b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_SECOND)
            + b"MTrk" + struct.pack(">I", len(track)) + track)


def render_notes(soundfont: str | Path, program: int, notes: list[tuple[int, int]], sample_rate: int = 16000,
                 gain: float = 1.0) -> np.ndarray:
    """Render ``notes`` [(pitch, velocity)] of General MIDI ``program``: float32 ``(len(notes), 4 * sample_rate)``
    mono at ``sample_rate``, one fluidsynth call (the SoundFont is loaded once)."""
    fluidsynth = check_renderer(soundfont)
    render_rate = RENDER_FACTOR * sample_rate
    with tempfile.TemporaryDirectory() as tmp:
        midi, wav = Path(tmp) / "notes.mid", Path(tmp) / "notes.wav"
        midi.write_bytes(notes_midi(program, notes))
        command = [fluidsynth, "-n", "-i", "-q", "-R", "0", "-C", "0", "-g", str(gain), "-r", str(render_rate),
                   "-O", "float", "-T", "wav", "-F", str(wav), str(soundfont), str(midi)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 or not wav.is_file():
            raise RuntimeError(f"{' '.join(command)} failed (exit {done.returncode}): {done.stderr.strip()}")
        with warnings.catch_warnings():   # fluidsynth's LIST chunk is skipped, as it should be
            warnings.simplefilter("ignore", wavfile.WavFileWarning)
            rate, audio = wavfile.read(wav)
    slot = NOTE_SECONDS * render_rate
    if rate != render_rate or audio.shape[0] < len(notes) * slot:
        raise RuntimeError(f"fluidsynth wrote {audio.shape[0]} samples at {rate} Hz, expected at least "
                           f"{len(notes) * slot} at {render_rate} Hz")
    mono = audio[:len(notes) * slot].reshape(len(notes), slot, -1).mean(axis=2, dtype=np.float64)
    return resample_poly(mono, 1, RENDER_FACTOR, axis=1).astype(np.float32)


def check_instruments(instruments: list[dict], pitches_per_instrument: int) -> None:
    """Each entry: program in [0, 128), an NSynth family and source, lowest_pitch with room for the pitches."""
    programs = [entry.get("program") for entry in instruments]
    if len(set(programs)) != len(programs):
        raise ValueError(f"data.instruments: each General MIDI program may appear once, got {programs}")
    for i, entry in enumerate(instruments):
        key = f"data.instruments[{i}]"
        missing = {"program", "family", "source", "lowest_pitch"} - set(entry)
        if missing:
            raise ValueError(f"{key} lacks {sorted(missing)} (program, family, source, lowest_pitch)")
        if not 0 <= entry["program"] < 128:
            raise ValueError(f"{key}.program={entry['program']}: General MIDI programs are 0..127")
        if entry["family"] not in NSYNTH_FAMILIES:
            raise ValueError(f"{key}.family={entry['family']!r}: one of {NSYNTH_FAMILIES}")
        if entry["source"] not in NSYNTH_SOURCES:
            raise ValueError(f"{key}.source={entry['source']!r}: one of {NSYNTH_SOURCES}")
        if not 0 <= entry["lowest_pitch"] <= 128 - pitches_per_instrument:
            raise ValueError(f"{key}.lowest_pitch={entry['lowest_pitch']} with data.pitches_per_instrument="
                             f"{pitches_per_instrument} leaves MIDI pitches 0..127")


def nsynth_entry(note: int, entry: dict, pitch: int, velocity: int, sample_rate: int) -> dict:
    """The examples.json record of one note, with NSynth's fields and naming."""
    instrument_str = f"{entry['family']}_{entry['source']}_{entry['program']:03d}"
    return {"note": note, "note_str": f"{instrument_str}-{pitch:03d}-{velocity:03d}",
            "instrument": entry["program"], "instrument_str": instrument_str, "pitch": pitch, "velocity": velocity,
            "sample_rate": sample_rate, "qualities": [0] * len(NSYNTH_QUALITIES), "qualities_str": [],
            "instrument_family": NSYNTH_FAMILIES.index(entry["family"]), "instrument_family_str": entry["family"],
            "instrument_source": NSYNTH_SOURCES.index(entry["source"]), "instrument_source_str": entry["source"]}


def write_soundfont_nsynth(data_dir: str | Path, soundfont: str | Path, instruments: list[dict],
                           pitches_per_instrument: int, sample_rate: int = 16000, gain: float = 1.0) -> None:
    """Render every (instrument, pitch, velocity) into ``data_dir`` in the NSynth layout (module docstring)."""
    check_instruments(instruments, pitches_per_instrument)
    check_renderer(soundfont)
    data_dir = Path(data_dir)
    (data_dir / "audio").mkdir(parents=True, exist_ok=True)
    examples = {}
    for entry in instruments:
        pitches = range(entry["lowest_pitch"], entry["lowest_pitch"] + pitches_per_instrument)
        notes = [(pitch, velocity) for pitch in pitches for velocity in NSYNTH_VELOCITIES]
        audio = render_notes(soundfont, entry["program"], notes, sample_rate, gain)
        for (pitch, velocity), wav in zip(notes, audio):
            record = nsynth_entry(len(examples), entry, pitch, velocity, sample_rate)
            peak = float(np.abs(wav).max())
            if peak < SILENT_PEAK:
                raise ValueError(f"{record['note_str']}: silent (peak {peak:.1e}); {soundfont} has no sample for "
                                 f"program {entry['program']} at pitch {pitch}: choose another lowest_pitch")
            if peak >= 1:
                raise ValueError(f"{record['note_str']}: peak {peak:.2f} clips; lower data.gain={gain}")
            wavfile.write(data_dir / "audio" / f"{record['note_str']}.wav", sample_rate,
                          np.round(wav * 32767).astype(np.int16))
            examples[record["note_str"]] = record
    with open(data_dir / "examples.json", "w") as f:
        json.dump(examples, f, indent=1)


class NSynthSoundFontDataModule(NSynthDataModule):
    """``NSynthDataModule`` over notes rendered from a SoundFont into ``data_dir`` on first use and reused after.

    The bank holds the first ``num_instruments`` entries of ``instruments`` (each ``{program, family, source,
    lowest_pitch}``), ``pitches_per_instrument`` consecutive pitches from each ``lowest_pitch``, all five velocities.
    A ``data_dir`` rendered with other settings is an error (it is never overwritten).
    """

    def __init__(self, data_dir: str, soundfont: str, instruments: list[dict], num_instruments: int,
                 pitches_per_instrument: int = 12, gain: float = 1.0, **kwargs):
        super().__init__(data_dir, num_instruments, **kwargs)
        instruments = [dict(entry) for entry in instruments]
        if not 1 <= num_instruments <= len(instruments):
            raise ValueError(f"data.num_instruments={num_instruments}: data.instruments lists "
                             f"{len(instruments)} instruments")
        if self.num_samples > NOTE_SECONDS * self.sample_rate:
            raise ValueError(f"data.num_samples={self.num_samples}: the rendered notes are {NOTE_SECONDS} s "
                             f"({NOTE_SECONDS * self.sample_rate} samples)")
        self.settings = {"soundfont": str(soundfont), "instruments": instruments[:num_instruments],
                         "pitches_per_instrument": pitches_per_instrument, "sample_rate": self.sample_rate,
                         "gain": gain}
        check_instruments(self.settings["instruments"], pitches_per_instrument)

    def prepare_data(self) -> None:
        write_once(self.data_dir, "soundfont_params.json", self.settings,
                   lambda: write_soundfont_nsynth(self.data_dir, **self.settings))
