"""psmexp-pipeline: run a chain of psmexp commands described by a config (psmexp/conf/pipeline/<name>.yaml).

    psmexp-pipeline sing_table21_mini                               # SING Table 2.1: 8 chained training runs + report
    psmexp-pipeline gcwd_table1_mini                                # GCWD Table I: data + metric, sweep, report
    psmexp-pipeline sing_table21_mini out_dir=outputs/t21 epochs.sing=10 "train_args=['seed=1']"

The pipeline config is composed by Hydra (defaults lists, interpolation, command-line overrides) and holds
  out_dir    where the chain keeps its state (default outputs/pipelines/<name>; `${out_dir}` in the steps)
  steps      [{name, run, args}] run in order; `run` is one of train, precompute, report, pipeline, i.e.
             `python -m psmexp.<run> <args>` (psmexp-train, psmexp-precompute, psmexp-report, psmexp-pipeline);
             an item of `args` that is a list (e.g. `${train_args}`, a node every step shares) is spliced in.
             A step may instead be {name, parallel: [steps]}: its steps run at the same time (one per core).
Any other key is free, for the steps to interpolate (epochs per stage, extra overrides shared by every run).

Each step runs in a subprocess with its output in <out_dir>/logs/<step>.log. A finished step leaves
<out_dir>/done/<step>.json (its command and wall time) and is skipped on the next run, so rerunning the command
after a failure or an interruption resumes where the chain stopped (a training step itself resumes from its
last.ckpt, a precompute from its shards). A failing step stops the chain with an error naming the step and its log.
A finished step whose args have changed since (another override, an edited config) is an error before anything
runs: its outputs were made with the old args, so choose another out_dir, or delete <out_dir>/done/<step>.json
(and what the step wrote) to redo it. At the end the last report step's output is printed.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from psmexp import CONF_DIR

PIPELINE_DIR = CONF_DIR / "pipeline"
COMMANDS = {"train": "psmexp.train", "precompute": "psmexp.precompute", "report": "psmexp.report",
            "pipeline": "psmexp.pipeline"}
STEP_KEYS = {"name", "run", "args"}


class StepFailed(RuntimeError):
    pass


def available() -> list[str]:
    return sorted(p.stem for p in PIPELINE_DIR.glob("*.yaml"))


def load(name: str, overrides: list[str] = ()) -> dict:
    """The resolved pipeline config: {out_dir, steps: [{name, run, args} | {name, parallel: [...]}], ...}."""
    if name not in available():
        raise ValueError(f"pipeline {name!r}: no {PIPELINE_DIR / name}.yaml; available: {', '.join(available())}")
    # out_dir may be absent from the file: `++` sets it either way.
    overrides = [f"++{o}" if o.startswith("out_dir=") else o for o in overrides]
    with initialize_config_dir(config_dir=str(PIPELINE_DIR), version_base="1.3"):
        cfg = compose(name, overrides=overrides)
    OmegaConf.set_struct(cfg, False)
    if cfg.get("out_dir") is None:
        cfg.out_dir = f"outputs/pipelines/{name}"
    spec = OmegaConf.to_container(cfg, resolve=True)
    steps = spec.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ValueError(f"pipeline {name!r}: `steps` must be a non-empty list of {{name, run, args}}")
    spec["steps"] = [check_step(step, name) for step in steps]
    names = [s["name"] for step in spec["steps"] for s in step.get("parallel", [step])]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"pipeline {name!r}: step names must be unique; repeated: {', '.join(repeated)}")
    return spec


def check_step(step, pipeline: str, nested: bool = False) -> dict:
    where = f"pipeline {pipeline!r}, step {step.get('name', '?') if isinstance(step, dict) else step!r}"
    if not isinstance(step, dict) or not re.fullmatch(r"[A-Za-z0-9_.-]+", str(step.get("name", ""))):
        raise ValueError(f"{where}: a step is a mapping with a `name` of letters, digits, _ . -")
    if "parallel" in step and not nested:
        if set(step) != {"name", "parallel"} or not isinstance(step["parallel"], list) or not step["parallel"]:
            raise ValueError(f"{where}: a parallel step has exactly the keys name and parallel (a list of steps)")
        return {"name": step["name"], "parallel": [check_step(s, pipeline, nested=True) for s in step["parallel"]]}
    unknown = set(step) - STEP_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; a step has {', '.join(sorted(STEP_KEYS))}"
                         + ("" if nested else " (or name and parallel)"))
    if step.get("run") not in COMMANDS:
        raise ValueError(f"{where}: run={step.get('run')!r}; allowed values: {', '.join(COMMANDS)}")
    args = step.get("args") or []
    if not isinstance(args, list):
        raise ValueError(f"{where}: args must be a list, got {args!r}")
    return {"name": step["name"], "run": step["run"], "args": [str(a) for a in splice(args)]}


def splice(args: list) -> list:
    """Lists inside args (interpolated shared nodes) spliced in, e.g. [a, [b, c], d] -> [a, b, c, d]."""
    return [item for arg in args for item in (splice(arg) if isinstance(arg, list) else [arg])]


def command(step: dict) -> list[str]:
    return [sys.executable, "-m", COMMANDS[step["run"]], *step["args"]]


def marker(out_dir: Path, step: dict) -> Path:
    return out_dir / "done" / f"{step['name']}.json"


def log_file(out_dir: Path, step: dict) -> Path:
    return out_dir / "logs" / f"{step['name']}.log"


def is_done(out_dir: Path, step: dict) -> bool:
    return marker(out_dir, step).is_file()


def changed_steps(out_dir: Path, steps: list[dict]) -> list[str]:
    """Finished steps whose recorded run/args differ from the config's."""
    changed = []
    for step in steps:
        if is_done(out_dir, step):
            done = json.loads(marker(out_dir, step).read_text())
            if (done.get("run"), done.get("args")) != (step["run"], step["args"]):
                changed.append(f"{step['name']} (was: {done.get('run')} {' '.join(done.get('args', []))})")
    return changed


def start(out_dir: Path, step: dict) -> tuple[subprocess.Popen, float]:
    log = log_file(out_dir, step)
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"[{step['name']}] psmexp-{step['run']} {' '.join(step['args'])}  (log: {log})", flush=True)
    with open(log, "w") as handle:
        process = subprocess.Popen(command(step), stdout=handle, stderr=subprocess.STDOUT)
    return process, time.perf_counter()


def finish(out_dir: Path, step: dict, process: subprocess.Popen, started: float) -> None:
    code = process.wait()
    seconds = time.perf_counter() - started
    log = log_file(out_dir, step)
    if code != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
        raise StepFailed(f"step {step['name']!r} failed (exit {code}) after {seconds:.0f} s; log: {log}\n"
                         f"--- last lines of the log ---\n{tail}")
    path = marker(out_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"run": step["run"], "args": step["args"], "command": command(step), "seconds": round(seconds, 1),
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)
    print(f"[{step['name']}] done in {seconds:.0f} s", flush=True)


def run_steps(out_dir: Path, steps: list[dict]) -> None:
    """Start every unfinished step of `steps` at once and wait for them; the first failure stops the others (they
    resume on the next run: training from last.ckpt, precompute from its shards)."""
    running = {step["name"]: (step, *start(out_dir, step)) for step in steps if not is_done(out_dir, step)}
    try:
        while running:
            for name, (step, process, started) in list(running.items()):
                if process.poll() is not None:
                    del running[name]
                    finish(out_dir, step, process, started)
            time.sleep(0.2 if running else 0)
    finally:
        for _, process, _ in running.values():
            process.terminate()
            process.wait()


def run(spec: dict) -> str | None:
    """Run the unfinished steps of a loaded pipeline in order; returns the last report step's output."""
    out_dir = Path(spec["out_dir"])
    flat = [s for step in spec["steps"] for s in step.get("parallel", [step])]
    changed = changed_steps(out_dir, flat)
    if changed:
        raise ValueError(f"{out_dir}: step(s) finished earlier with other args: {'; '.join(changed)}. Their outputs "
                         f"were made with the old args: choose another out_dir=..., or delete "
                         f"{out_dir / 'done'}/<step>.json (and what the step wrote) to redo them")
    for step in spec["steps"]:
        group = step.get("parallel", [step])
        if all(is_done(out_dir, s) for s in group):
            print(f"[{step['name']}] finished earlier, skipped", flush=True)
            continue
        run_steps(out_dir, group)
    reports = [s for s in flat if s["run"] == "report"]
    return log_file(out_dir, reports[-1]).read_text() if reports else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="psmexp-pipeline", description=__doc__.split("\n\n")[0],
                                     epilog=f"pipelines: {', '.join(available())}")
    parser.add_argument("name", help="a pipeline config in psmexp/conf/pipeline/")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the pipeline config (key=value)")
    args = parser.parse_args(argv)
    start_time = time.perf_counter()
    try:
        spec = load(args.name, args.overrides)
        text = run(spec)
    except (ValueError, StepFailed, HydraException, OmegaConfBaseException) as error:
        parser.exit(1, f"psmexp-pipeline {args.name}: {error}\n")
    if text is not None:
        sys.stdout.write(text)
    print(f"psmexp-pipeline {args.name}: all steps done ({time.perf_counter() - start_time:.0f} s); "
          f"state in {spec['out_dir']}")


if __name__ == "__main__":
    main()
