"""End to end: the separation task through the real config tree and CLI, on tiny synthetic songs."""
import json

import pytest

from conftest import cli, compose_config, needs_ffmpeg, train

pytestmark = needs_ffmpeg

TINY = ["task=separation", "model.channels=4", "model.depth=3", "task.shifts=2", "trainer.max_epochs=1",
        "data.train=1", "data.valid=1", "data.test=1", "data.seconds=2.5", "data.samplerate=8000",
        "data.segment_seconds=0.5", "data.shift_seconds=0.5", "data.batch_size=2",
        "data.remix_group_size=2", "task.eval_workers=0", "logger=none"]


def test_separation_runs_end_to_end(tmp_path, run_dir):
    value, metrics = train([*TINY, f"data.data_dir={tmp_path / 'songs'}"], run_dir)
    assert value == metrics["val/loss"]
    for key in ("test/sdr", "test/sdr_drums", "test/sdr_bass", "test/sdr_other", "test/sdr_vocals",
                "val/best_loss", "train/loss"):
        assert key in metrics
    tracks = json.loads((run_dir / "sdr_tracks.json").read_text())
    assert [row["track"] for row in tracks["tracks"]] == ["synthetic_test_000"]


def test_bad_model_key_is_a_clear_error(run_dir):
    from psmexp.config import ConfigError, validate

    with pytest.raises(ConfigError, match="model.width"):
        validate(compose_config([*TINY, "+model.width=3"], run_dir))


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["demucs_table31_mini", "demucs_table34_mini"])
def test_mini_presets_run(tmp_path, preset):
    """The mini presets with 1 epoch and one seed (the full presets take about 30 minutes each)."""
    result = cli([f"paper={preset}", "trainer.max_epochs=1", "hydra.sweeper.params.seed=0",
                  f"paths.data_root={tmp_path}", f"hydra.sweep.dir={tmp_path / 'sweep'}"], timeout=3600)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted((tmp_path / "sweep").glob("*/metrics.json"))
    assert len(runs) == (2 if preset == "demucs_table31_mini" else 8)
    assert all("test/sdr" in json.loads(p.read_text()) for p in runs)
