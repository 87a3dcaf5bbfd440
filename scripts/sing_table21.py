"""Run SING's Table 2.1 (thesis ch. 2): the three chained training stages of every row, then the table.

    python scripts/sing_table21.py paper=sing_table21_mini                 # CPU, synthetic bank, ~14 min measured
    python scripts/sing_table21.py paper=sing_table21                      # NSynth, thesis sizes (GPU)
    python scripts/sing_table21.py paper=sing_table21_mini --out outputs/t21 --epochs-scale 0.25 seed=1

Each stage is one ``python -m psmexp.train`` run in ``<out>/<run>/`` (hydra.run.dir), started from the previous
stage's ``checkpoints/last.ckpt`` through ``task.init_from``; extra arguments are passed to every run as Hydra
overrides. Epochs per stage come from the preset's ``sing_stages`` (times ``--epochs-scale``). A stage whose
``status.json`` says completed is not run again, so an interrupted table resumes where it stopped. Runs:

    ae_wav    autoencoder, loss=mse           -> row "autoencoder, waveform"
    ae_spec   autoencoder, loss=log_spectral  -> row "autoencoder, spectral"
    lstm_wav / sing_wav          (from ae_wav)   -> row "sing, waveform"
    lstm_spec / sing_spec        (from ae_spec)  -> row "sing, spectral"
    lstm_notime / sing_notime    (from ae_spec, model.time_dim=0) -> row "sing_no_time_embedding, spectral"

Then ``psmexp-report <out>`` (layout ``psmexp.tasks.synthesis_report.table21``) puts the final test metrics
beside the thesis' numbers, printed and written to ``<out>/table21.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir

from psmexp import CONF_DIR

from psmexp.report import report

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = Path("checkpoints") / "last.ckpt"


@dataclass(frozen=True)
class Stage:
    name: str
    stage: str
    loss: str
    init_from: str | None = None
    time_dim: int | None = None


STAGES = (
    Stage("ae_wav", "autoencoder", "mse"),
    Stage("ae_spec", "autoencoder", "log_spectral"),
    Stage("lstm_wav", "lstm", "mse", "ae_wav"),
    Stage("sing_wav", "sing", "mse", "lstm_wav"),
    Stage("lstm_spec", "lstm", "log_spectral", "ae_spec"),
    Stage("sing_spec", "sing", "log_spectral", "lstm_spec"),
    Stage("lstm_notime", "lstm", "log_spectral", "ae_spec", time_dim=0),
    Stage("sing_notime", "sing", "log_spectral", "lstm_notime", time_dim=0),
)


def stage_epochs(overrides: list[str]) -> dict[str, int]:
    """``sing_stages`` of the composed config (the preset chosen in ``overrides``)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    if "sing_stages" not in cfg:
        raise SystemExit("the config has no sing_stages (epochs per stage): choose paper=sing_table21 or "
                         "paper=sing_table21_mini")
    return {key: int(cfg.sing_stages[key]) for key in ("autoencoder", "lstm", "sing")}


def run_stage(stage: Stage, out: Path, overrides: list[str], epochs: int) -> None:
    run_dir = out / stage.name
    status = run_dir / "status.json"
    if status.is_file() and json.loads(status.read_text()).get("status") == "completed":
        print(f"[{stage.name}] completed earlier, kept")
        return
    args = [*overrides, f"task.stage={stage.stage}", f"loss={stage.loss}", f"trainer.max_epochs={epochs}",
            f"hydra.run.dir={run_dir}"]
    if stage.init_from:
        args.append(f"task.init_from={out / stage.init_from / CHECKPOINT}")
    if stage.time_dim is not None:
        args.append(f"model.time_dim={stage.time_dim}")
    print(f"[{stage.name}] python -m psmexp.train {' '.join(args)}", flush=True)
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "psmexp.train", *args], cwd=ROOT, env=env)
    if done.returncode != 0:
        raise SystemExit(f"[{stage.name}] failed (exit {done.returncode}); see {run_dir}/status.json")
    print(f"[{stage.name}] done in {time.perf_counter() - start:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="+", help="Hydra overrides, at least paper=sing_table21[_mini]")
    parser.add_argument("--out", type=Path, default=None, help="default: outputs/<paper preset>")
    parser.add_argument("--epochs-scale", type=float, default=1.0, help="multiply every stage's epochs")
    args = parser.parse_args(argv)
    presets = [o.split("=", 1)[1] for o in args.overrides if o.startswith("paper=")]
    out = (args.out or ROOT / "outputs" / (presets[-1] if presets else "sing_table21")).resolve()
    epochs = {k: max(1, round(v * args.epochs_scale)) for k, v in stage_epochs(args.overrides).items()}
    start = time.perf_counter()
    for stage in STAGES:
        run_stage(stage, out, args.overrides, epochs[stage.stage])
    text = report(out)
    (out / "table21.md").write_text(text)
    print(text)
    print(f"total {time.perf_counter() - start:.0f} s; table in {out / 'table21.md'} (psmexp-report {out})")


if __name__ == "__main__":
    main()
