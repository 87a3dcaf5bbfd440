"""A whole preset sweep run the ordinary way (launcher=local) and vectorized (launcher=vectorized), side by side.

Both are the same `psmexp-train paper=<preset>` command in a fresh process, timed end to end (start-up included);
then every job's final metrics are compared (same job number = same overrides) and the wall-clock ratio printed.

    python benchmarks/vectorized.py                                    # hyper Table 1 at mini scale (digits)
    python benchmarks/vectorized.py --preset hyper_table1 --data-root /path/with/mnist   # Table 1 on MNIST
    python benchmarks/vectorized.py --only vectorized -- trainer.max_epochs=3            # extra overrides after --

Jobs whose runs diverge (the large secondary learning rates of Table 1) are chaotic: float32 rounding differences
between a batched and a single matrix product grow there, so their metrics are compared on outcome only (both
non-finite, or both near chance); the others must agree within --tolerance (test/error, percentage points).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sweep(preset: str, launcher: str, sweep_dir: Path, extra: list[str], data_root: str | None) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    if data_root:
        env["PSMEXP_DATA"] = data_root
    command = [sys.executable, "-c", "from psmexp.train import main; main()", f"paper={preset}",
               f"launcher={launcher}", "threads=1", f"hydra.sweep.dir={sweep_dir}", *extra]
    began = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    for line in (done.stdout + done.stderr).splitlines():   # what the launcher grouped, and why not the rest
        if "launcher=vectorized:" in line or "ordinary: jobs" in line:
            print("   ", line.split(" - ", 1)[-1])
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"{launcher} sweep failed (exit {done.returncode})")
    return seconds


def metrics(sweep_dir: Path) -> dict[int, dict]:
    out = {}
    for job in sweep_dir.iterdir():
        if job.name.isdigit() and (job / "metrics.json").is_file():
            out[int(job.name)] = json.loads((job / "metrics.json").read_text())
    return out


def compare(ordinary: dict[int, dict], vectorized: dict[int, dict], key: str, tolerance: float, chance: float):
    equal, diverged, differ = 0, 0, []
    for job, expected in sorted(ordinary.items()):
        got = vectorized.get(job, {}).get(key)
        value = expected.get(key)
        if got is None or value is None:
            differ.append((job, value, got))
        elif abs(got - value) <= tolerance:
            equal += 1
        elif min(got, value) >= chance:
            diverged += 1
        else:
            differ.append((job, value, got))
    return equal, diverged, differ


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="hyper_table1_mini")
    parser.add_argument("--data-root", default=None, help="PSMEXP_DATA for the preset (MNIST: <root>/mnist)")
    parser.add_argument("--only", choices=["ordinary", "vectorized"], default=None)
    parser.add_argument("--out", default=None, help="keep the sweeps here (default: a temporary directory)")
    parser.add_argument("--metric", default="test/error")
    parser.add_argument("--tolerance", type=float, default=0.5, help="max |difference| of --metric for 'equal'")
    parser.add_argument("--chance", type=float, default=80.0, help="--metric at or above this counts as diverged")
    parser.add_argument("overrides", nargs="*", help="extra overrides for both sweeps (after --)")
    args = parser.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="psmexp_vectorized_"))
    times = {}
    for launcher in ("vectorized", "ordinary"):
        if args.only in (None, launcher):
            times[launcher] = sweep(args.preset, "local" if launcher == "ordinary" else "vectorized",
                                    root / launcher, args.overrides, args.data_root)
            print(f"{launcher:>10}: {times[launcher]:8.1f} s  ({root / launcher})", flush=True)
    if len(times) == 2:
        ordinary, vectorized = metrics(root / "ordinary"), metrics(root / "vectorized")
        equal, diverged, differ = compare(ordinary, vectorized, args.metric, args.tolerance, args.chance)
        print(f"jobs: {len(ordinary)}; {args.metric} within {args.tolerance}: {equal}; both diverged "
              f"(>= {args.chance}): {diverged}; different: {len(differ)} {differ}")
        close = sum(all(abs(v - vectorized.get(job, {}).get(k, float("nan"))) <= 1e-3 * max(abs(v), 1e-6)
                        for k, v in m.items() if k != "time/train_s") for job, m in ordinary.items())
        print(f"jobs whose every final metric agrees within 0.1% (time/train_s aside): {close}")
        print(f"speed-up (ordinary / vectorized wall clock): {times['ordinary'] / times['vectorized']:.1f}x")


if __name__ == "__main__":
    main()
