"""Table 2.1 layout of psmexp-report, and the sing_table21_mini pipeline end to end at a debug size (slow)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from psmexp.report import Record
from psmexp.reports.sing import row_of, table21


def record(stage, loss, time_dim=4, status="completed", spectral=0.1):
    config = {"task": {"stage": stage}, "model": {"time_dim": time_dim}}
    metrics = {f"test/{m}": spectral for m in ("spectral_train", "spectral_test", "wav_mse_train", "wav_mse_test")}
    return Record(Path("x"), config, {"loss": loss}, [], status, "", metrics)


def test_runs_map_to_table_rows():
    assert row_of(record("autoencoder", "mse")) == ("autoencoder", "waveform")
    assert row_of(record("sing", "log_spectral")) == ("sing", "spectral")
    assert row_of(record("sing", "log_spectral", time_dim=0)) == ("sing_no_time_embedding", "spectral")
    assert row_of(record("lstm", "mse")) is None


def test_table_averages_seeds_and_shows_the_thesis_value():
    text = table21([record("sing", "log_spectral", spectral=0.1), record("sing", "log_spectral", spectral=0.3),
                    record("sing", "log_spectral", status="failed", spectral=9.0), record("lstm", "mse")], {})
    lines = [line for line in text.splitlines() if line.startswith("| sing")]
    assert len(lines) == 1
    assert "| 2 | 0.2 ± 0.14 (0.039) | 0.2 ± 0.14 (0.051) |" in lines[0]


@pytest.mark.slow
def test_pipeline_runs_the_whole_table(tmp_path):
    root = Path(__file__).parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "PSMEXP_DATA": str(tmp_path / "data")}
    train_args = ["debug=fast", "model.channels=8", "model.hidden_size=8", "model.dimension=4",
                  "data.num_instruments=2", "data.pitches_per_instrument=10", "data.num_samples=2048",
                  "data.eval_train_size=4"]
    args = ["sing_table21_mini", f"out_dir={tmp_path / 'out'}", "epochs.autoencoder=1", "epochs.lstm=1",
            "epochs.sing=1", "train_args=[" + ",".join(f"'{a}'" for a in train_args) + "]"]
    done = subprocess.run([sys.executable, "-m", "psmexp.pipeline", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    text = (tmp_path / "out" / "logs" / "report.log").read_text()
    assert text.count("| 1 |") == 5 and "sing_no_time_embedding" in text and text in done.stdout
