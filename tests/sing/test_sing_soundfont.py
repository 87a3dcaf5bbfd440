"""Real sampled instruments in the NSynth layout: SoundFont notes rendered by fluidsynth, read by the NSynth reader."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_config
from hydra.utils import instantiate
from scipy.io import wavfile

from psmexp.data import nsynth_soundfont as sf
from psmexp.data.nsynth import NSynthDataModule, read_examples

SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not Path(SOUNDFONT).is_file(),
    reason="needs the fluidsynth program and FluidR3_GM.sf2 (apt-get install fluidsynth fluid-soundfont-gm)")

# One entry of the published NSynth examples.json (nsynth-train), as released by Magenta.
NSYNTH_ENTRY = {"note": 201034, "note_str": "bass_synthetic_033-022-050", "instrument": 417,
                "instrument_str": "bass_synthetic_033", "pitch": 22, "velocity": 50, "sample_rate": 16000,
                "qualities": [0, 1, 0, 0, 0, 0, 0, 0, 0, 0], "qualities_str": ["dark"],
                "instrument_family": 0, "instrument_family_str": "bass",
                "instrument_source": 2, "instrument_source_str": "synthetic"}
FLUTE = {"program": 73, "family": "flute", "source": "acoustic", "lowest_pitch": 60}
VIOLIN = {"program": 40, "family": "string", "source": "acoustic", "lowest_pitch": 55}


def test_midi_variable_length_quantities_match_the_spec():
    """Examples of the Standard MIDI File 1.0 specification."""
    cases = {0x00: "00", 0x40: "40", 0x7F: "7F", 0x80: "81 00", 0x2000: "C0 00", 0x3FFF: "FF 7F",
             0x4000: "81 80 00", 0x1FFFFF: "FF FF 7F", 0x200000: "81 80 80 00", 0x0FFFFFFF: "FF FF FF 7F"}
    for value, expected in cases.items():
        assert sf._varlen(value) == bytes.fromhex(expected)


def test_midi_file_holds_one_slot_per_note():
    data = sf.notes_midi(73, [(60, 25), (62, 127)])
    assert data[:4] == b"MThd" and data[8:14] == bytes.fromhex("0000 0001 03E8")  # format 0, 1 track, 1000/quarter
    track = data[22:]
    # program change; note 1 on at 0, off at 3000 ticks, all sound off at 4000 = note 2 on; ...
    assert bytes.fromhex("00 C0 49") in track
    assert bytes.fromhex("00 90 3C 19") + bytes.fromhex("97 38 80 3C 00") + bytes.fromhex("87 68 B0 78 00") in track
    assert track.endswith(bytes.fromhex("00 FF 2F 00"))


@needs_fluidsynth
def test_rendered_note_is_the_requested_pitch_held_3_s():
    flute = sf.render_notes(SOUNDFONT, 73, [(69, 127), (69, 25), (81, 100)])
    assert flute.shape == (3, 64000) and flute.dtype == np.float32
    rms = lambda x: float(np.sqrt(np.mean(x ** 2)))
    for wav, f0 in zip(flute, (440.0, 440.0, 880.0)):
        held = wav[8000:48000]                                   # 0.5 s to 3 s: the key is down
        spectrum = np.abs(np.fft.rfft(held * np.hanning(len(held))))
        assert np.fft.rfftfreq(len(held), 1 / 16000)[spectrum.argmax()] == pytest.approx(f0, rel=0.01)
        assert np.argmax(np.abs(wav) > 0.01 * np.abs(wav).max()) < 320   # onset within 20 ms
        assert rms(wav[56000:]) < 0.01 * rms(wav[32000:48000])           # released at 3 s
    assert np.abs(flute[0]).max() > 5 * np.abs(flute[1]).max()           # velocity 127 louder than 25


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    """Two instruments x 10 pitches x 5 velocities, rendered once for the tests below."""
    if shutil.which("fluidsynth") is None or not Path(SOUNDFONT).is_file():
        pytest.skip("needs the fluidsynth program and FluidR3_GM.sf2 (apt-get install fluidsynth fluid-soundfont-gm)")
    root = tmp_path_factory.mktemp("soundfont") / "bank"
    dm = sf.NSynthSoundFontDataModule(str(root), SOUNDFONT, [FLUTE, VIOLIN], num_instruments=2,
                                      pitches_per_instrument=10, num_samples=64000, eval_train_size=8, batch_size=4)
    dm.prepare_data()
    return root, dm


def test_bank_has_the_nsynth_layout(bank):
    root, _ = bank
    examples = json.loads((root / "examples.json").read_text())
    assert len(examples) == 2 * 10 * 5
    for name, entry in examples.items():
        assert set(entry) == set(NSYNTH_ENTRY)
        assert {k: type(v) for k, v in entry.items()} == {k: type(v) for k, v in NSYNTH_ENTRY.items()}
        assert name == entry["note_str"] == f"{entry['instrument_str']}-{entry['pitch']:03d}-{entry['velocity']:03d}"
        rate, audio = wavfile.read(root / "audio" / f"{name}.wav")
        assert rate == 16000 and audio.dtype == np.int16 and audio.shape == (64000,)
    flute = examples["flute_acoustic_073-069-100"]
    assert (flute["instrument"], flute["instrument_family"], flute["instrument_source"]) == (73, 2, 0)
    assert examples["string_acoustic_040-060-025"]["instrument_family_str"] == "string"
    assert sorted({e["note"] for e in examples.values()}) == list(range(100))


def test_bank_is_read_with_the_pitch_completion_split(bank):
    root, dm = bank
    dm.setup()
    examples = read_examples(root)
    pair = lambda note: (examples[note]["instrument"], examples[note]["pitch"])
    held_out = {pair(note) for note in dm.test_set.notes}
    assert sorted(i for i, _ in held_out) == [40, 73]                # 10% of 10 pitches of each instrument
    assert len(dm.test_set) == 2 * 5 and len(dm.train_set) == 90     # with all five velocities
    assert held_out.isdisjoint(pair(note) for note in dm.train_set.notes)
    item = dm.test_set[0]
    assert item["wav"].shape == (64000,) and 0.001 < item["wav"].abs().max() < 1
    plain = NSynthDataModule(str(root), num_instruments=2, num_samples=64000, eval_train_size=8)
    plain.setup()                                                    # the unchanged reader, same split
    assert plain.test_set.notes == dm.test_set.notes


def test_bank_is_rendered_once_and_never_overwritten(bank):
    root, _ = bank
    stamp = (root / "examples.json").stat().st_mtime_ns
    again = sf.NSynthSoundFontDataModule(str(root), SOUNDFONT, [FLUTE, VIOLIN], num_instruments=2,
                                         pitches_per_instrument=10)
    again.prepare_data()
    assert (root / "examples.json").stat().st_mtime_ns == stamp
    other = sf.NSynthSoundFontDataModule(str(root), SOUNDFONT, [FLUTE, VIOLIN], num_instruments=2,
                                         pitches_per_instrument=11)
    with pytest.raises(ValueError, match="choose another data.data_dir"):
        other.prepare_data()


def test_missing_renderer_or_soundfont_names_the_debian_packages(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}/none.sf2.*fluid-soundfont-gm"):
        sf.check_renderer(tmp_path / "none.sf2")
    monkeypatch.setattr(sf.shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="fluidsynth program.*apt-get install fluidsynth fluid-soundfont-gm"):
        sf.check_renderer(SOUNDFONT)


def test_bad_instrument_settings_name_the_key():
    make = lambda instruments, n=1, pitches=12: sf.NSynthSoundFontDataModule(
        "unused", SOUNDFONT, instruments, num_instruments=n, pitches_per_instrument=pitches)
    with pytest.raises(ValueError, match=r"data.instruments\[0\].family='piano'"):
        make([{**FLUTE, "family": "piano"}])
    with pytest.raises(ValueError, match=r"data.instruments\[0\].source"):
        make([{**FLUTE, "source": "sampled"}])
    with pytest.raises(ValueError, match=r"data.instruments\[0\].lowest_pitch=120"):
        make([{**FLUTE, "lowest_pitch": 120}])
    with pytest.raises(ValueError, match=r"data.instruments\[1\] lacks \['lowest_pitch'\]"):
        make([FLUTE, {"program": 1, "family": "keyboard", "source": "acoustic"}], n=2)
    with pytest.raises(ValueError, match="each General MIDI program may appear once"):
        make([FLUTE, FLUTE], n=2)
    with pytest.raises(ValueError, match="data.num_instruments=3: data.instruments lists 2"):
        make([FLUTE, VIOLIN], n=3)


def test_silent_note_is_an_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.setattr(sf, "check_renderer", lambda soundfont: "fluidsynth")
    monkeypatch.setattr(sf, "render_notes", lambda *args: np.zeros((5, 64000), np.float32))
    with pytest.raises(ValueError, match="flute_acoustic_073-060-025: silent"):
        sf.write_soundfont_nsynth(tmp_path, SOUNDFONT, [FLUTE], pitches_per_instrument=1)
    assert not (tmp_path / "examples.json").exists()


def test_table21_mini_preset_takes_the_soundfont_bank(tmp_path):
    """`python scripts/sing_table21.py paper=sing_table21_mini data=nsynth_soundfont` composes to the mini sizes."""
    cfg = compose_config(["paper=sing_table21_mini", "data=nsynth_soundfont"], tmp_path)
    dm = instantiate(cfg.data)
    assert isinstance(dm, sf.NSynthSoundFontDataModule)
    assert (dm.num_instruments, dm.settings["pitches_per_instrument"], dm.num_samples) == (6, 12, 8192)
    assert cfg.model.num_instruments == 6 and cfg.data.data_dir.endswith("nsynth_soundfont/fluidr3_i6_p12")
