"""Render notes with a trained SING model: (instrument, pitch, velocity) -> 16-bit wav files.

    psmexp-generate outputs/sing_table21_mini/sing_spectral/stage3_sing/checkpoints/last.ckpt \\
        --note 0:60:127 --note 3:64:50 --out-dir notes/

``--note INSTRUMENT:PITCH:VELOCITY`` takes the instrument index (0 .. data.num_instruments - 1, in the order
of the sorted NSynth instrument ids), the MIDI pitch and the NSynth velocity (25, 50, 75, 100 or 127). The model
is rebuilt from the checkpoint alone (it carries its model config: psmexp.checkpoints.model_from_checkpoint);
``--config`` names a run's ``.hydra/config.yaml`` for checkpoints written before psmexp stored the config.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from scipy.io import wavfile

from psmexp.checkpoints import model_from_checkpoint
from psmexp.data.nsynth import NSYNTH_VELOCITIES
from psmexp.models.sing import Sing


def load_sing(checkpoint: str | Path, config: str | Path | None = None) -> Sing:
    """The SING model of ``checkpoint`` (eval mode); ``config``: a run config whose ``model`` node to use instead of
    the checkpoint's own."""
    model_config = OmegaConf.to_container(OmegaConf.load(config).model, resolve=True) if config else None
    model = model_from_checkpoint(checkpoint, model_config)
    if not isinstance(model, Sing):
        raise ValueError(f"{checkpoint}: the run's model is {type(model).__name__}, not Sing")
    return model


def parse_note(text: str) -> tuple[int, int, int]:
    """``"3:60:127"`` -> (instrument index, pitch, velocity index)."""
    try:
        instrument, pitch, velocity = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--note {text!r}: expected INSTRUMENT:PITCH:VELOCITY integers") from None
    if velocity not in NSYNTH_VELOCITIES:
        raise argparse.ArgumentTypeError(f"--note {text!r}: velocity must be one of {NSYNTH_VELOCITIES}")
    return instrument, pitch, NSYNTH_VELOCITIES.index(velocity)


def render_notes(model: Sing, notes: list[tuple[int, int, int]]) -> torch.Tensor:
    """Notes as (instrument index, pitch, velocity index) -> waveforms ``(len(notes), num_samples)``."""
    generator = model.generator
    for instrument, pitch, _ in notes:
        if not 0 <= instrument < generator.instrument.num_embeddings:
            raise ValueError(f"instrument index {instrument} outside [0, {generator.instrument.num_embeddings})")
        if not 0 <= pitch < generator.pitch.num_embeddings:
            raise ValueError(f"pitch {pitch} outside [0, {generator.pitch.num_embeddings})")
    instrument, pitch, velocity = (torch.tensor(column) for column in zip(*notes))
    return model.note(velocity, instrument, pitch)


def write_wav(path: Path, wav: torch.Tensor, sample_rate: int = 16000) -> None:
    """Float waveform in [-1, 1] -> int16 wav."""
    pcm = np.round(wav.clamp(-1, 1).numpy() * 32767).astype(np.int16)
    wavfile.write(path, sample_rate, pcm)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--note", dest="notes", type=parse_note, action="append", required=True)
    parser.add_argument("--out-dir", type=Path, default=Path("generated"))
    parser.add_argument("--config", type=Path, default=None, help="a run's .hydra/config.yaml (default: the config the checkpoint carries)")
    parser.add_argument("--sample-rate", type=int, default=16000)
    args = parser.parse_args(argv)
    model = load_sing(args.checkpoint, args.config)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for (instrument, pitch, velocity), wav in zip(args.notes, render_notes(model, args.notes)):
        path = args.out_dir / f"sing_{instrument:03d}-{pitch:03d}-{NSYNTH_VELOCITIES[velocity]:03d}.wav"
        write_wav(path, wav, args.sample_rate)
        print(path)


if __name__ == "__main__":
    main()
