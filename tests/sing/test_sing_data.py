"""NSynth reader on fixture files in the published layout, the pitch-completion split, the synthetic bank."""
import json

import numpy as np
import pytest
from scipy.io import wavfile

from psmexp.data.nsynth import NSynthDataModule, pitch_completion_split, read_examples
from psmexp.data.nsynth_synthetic import NSynthSyntheticDataModule


def write_fixture(root, notes, num_samples=4096, sample_rate=16000):
    """notes: list of (instrument_id, pitch, velocity); audio value = a constant identifying the note."""
    (root / "audio").mkdir(parents=True)
    examples = {}
    for i, (instrument, pitch, velocity) in enumerate(notes):
        name = f"guitar_acoustic_{instrument:03d}-{pitch:03d}-{velocity:03d}"
        examples[name] = {"note_str": name, "instrument": instrument, "pitch": pitch, "velocity": velocity,
                          "sample_rate": sample_rate, "instrument_family_str": "guitar"}
        wavfile.write(root / "audio" / f"{name}.wav", sample_rate, np.full(num_samples, 100 * (i + 1), np.int16))
    (root / "examples.json").write_text(json.dumps(examples))
    return examples


def grid(instruments, pitches, velocities=(25, 50, 75, 100, 127)):
    return [(i, p, v) for i in instruments for p in pitches for v in velocities]


def test_split_holds_out_whole_instrument_pitch_pairs(tmp_path):
    examples = write_fixture(tmp_path, grid([3, 17, 900], range(40, 60)))
    train, test = pitch_completion_split(read_examples(tmp_path), test_fraction=0.1, seed=0)
    assert sorted(train + test) == sorted(examples) and not set(train) & set(test)
    pair = lambda n: (examples[n]["instrument"], examples[n]["pitch"])
    test_pairs = {pair(n) for n in test}
    assert {pair(n) for n in train}.isdisjoint(test_pairs)
    for instrument in (3, 17, 900):
        assert sum(1 for i, _ in test_pairs if i == instrument) == 2  # 10% of 20 pitches
    assert len(test) == 3 * 2 * 5  # all five velocities of each held-out pair
    again, other = pitch_completion_split(read_examples(tmp_path), 0.1, seed=0), \
        pitch_completion_split(read_examples(tmp_path), 0.1, seed=1)
    assert again == (train, test) and other[1] != test


def test_reader_items_and_loaders(tmp_path):
    write_fixture(tmp_path, grid([5, 9], range(60, 70), velocities=(25, 127)))
    dm = NSynthDataModule(str(tmp_path), num_instruments=2, num_samples=2048, eval_train_size=6, batch_size=4)
    dm.setup()
    assert len(dm.train_set) + len(dm.test_set) == 40 and len(dm.eval_train_set) == 6
    note = dm.train_set.notes[0]
    item = dm.train_set[0]
    meta = json.loads((tmp_path / "examples.json").read_text())[note]
    assert item["wav"].shape == (2048,)
    assert item["instrument"].item() == [5, 9].index(meta["instrument"])
    assert item["pitch"].item() == meta["pitch"]
    assert item["velocity"].item() == (25, 50, 75, 100, 127).index(meta["velocity"])
    value = wavfile.read(tmp_path / "audio" / f"{note}.wav")[1][0]
    assert item["wav"][0].item() == pytest.approx(value / 32768)
    train_eval, test = dm.test_dataloader()
    assert next(iter(test))["wav"].shape == (4, 2048)


def test_reader_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="examples.json"):
        read_examples(tmp_path)
    write_fixture(tmp_path, grid([1], [60], velocities=(25,)), num_samples=1000)
    dm = NSynthDataModule(str(tmp_path), num_instruments=2, num_samples=2048)
    with pytest.raises(ValueError, match="data.num_instruments=2"):
        dm.setup()
    dm = NSynthDataModule(str(tmp_path), num_instruments=1, num_samples=2048, test_fraction=0.0)
    dm.setup()
    with pytest.raises(ValueError, match="data.num_samples=2048"):
        dm.train_set[0]
    (tmp_path / "examples.json").write_text(json.dumps({"x": {"instrument": 0, "pitch": 60, "velocity": 30}}))
    with pytest.raises(ValueError, match="velocity 30"):
        read_examples(tmp_path)


def test_synthetic_bank_is_read_by_the_real_loader(tmp_path):
    dm = NSynthSyntheticDataModule(str(tmp_path / "bank"), num_instruments=2, pitches_per_instrument=3,
                                   num_samples=2048, eval_train_size=4, batch_size=2)
    dm.prepare_data()
    dm.setup()
    examples = read_examples(tmp_path / "bank")
    assert len(examples) == 2 * 3 * 5
    assert len(list((tmp_path / "bank" / "audio").glob("*.wav"))) == 30
    batch = next(iter(dm.train_dataloader()))
    assert 0.01 < batch["wav"].abs().max() <= 1
    dm.prepare_data()  # same settings: reused
    other = NSynthSyntheticDataModule(str(tmp_path / "bank"), num_instruments=3, pitches_per_instrument=3,
                                      num_samples=2048)
    with pytest.raises(ValueError, match="choose another data.data_dir"):
        other.prepare_data()
