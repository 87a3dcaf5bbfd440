"""Report layouts for Tables 3.1 and 3.4: ours (mean ± std/sqrt(n) over seeds) beside the paper's rows."""
from types import SimpleNamespace

from psmexp.reports.demucs import mean_ci, table31, table34


def run(choices, metrics, status="completed"):
    return SimpleNamespace(status=status, metrics=metrics, value=lambda key: choices.get(key))


def test_mean_ci():
    assert mean_ci([1.0, 2.0, 3.0]) == "2.00 ± 0.58"  # std 1 / sqrt(3)
    assert mean_ci([0.1234], digits=3) == "0.123"


def test_table31_joins_the_paper_row():
    sdr = {"test/sdr": 1.0, "test/sdr_drums": 2.0, "test/sdr_bass": 0.5, "test/sdr_other": 0.2, "test/sdr_vocals": 1.3}
    records = [run({"model": "demucs"}, sdr), run({"model": "demucs"}, {k: v + 1 for k, v in sdr.items()}),
               run({"model": "conv_tasnet"}, {}, status="failed")]
    text = table31(records, {})
    row = next(line for line in text.splitlines() if line.startswith("| demucs"))
    assert row.split(" | ")[1:4] == ["2", "1.50 ± 0.50", "2.50 ± 0.50"]
    assert "5.58" in row and "6.29" in row  # the paper's Demucs row without extra data
    assert "conv_tasnet" not in text


def test_table34_maps_experiments_to_differences():
    records = [run({"experiment": "demucs_ablation_no_bilstm"}, {"val/best_loss": 0.2, "test/sdr": 1.5})]
    row = next(line for line in table34(records, {}).splitlines() if line.startswith("| no_bilstm"))
    assert [cell.strip(" |") for cell in row.split(" | ")] == ["no_bilstm", "1", "0.200", "1.50", "0.175", "5.12"]
