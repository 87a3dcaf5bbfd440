"""psmexp-pipeline: composition, order, skip of finished steps, resume after a failing step, override passing.

The runner is tested with a stand-in command (tests/pipeline_step.py) in place of psmexp-train; the real chains
(SING Table 2.1, GCWD Table I) run end to end in tests/sing and tests/ftm (slow)."""
import json
import os
import sys
import time
from pathlib import Path

import pytest

from psmexp import pipeline

HERE = Path(__file__).resolve().parents[1]

CONFIG = """
words: [one, two]
extra: []
log: ${out_dir}/words.txt
steps:
  - {name: first, run: train, args: ["${log}", "${words.0}", "${extra}"]}
  - name: middle
    parallel:
      - {name: left, run: train, args: ["${log}", left]}
      - {name: right, run: train, args: ["${log}", right]}
  - {name: second, run: train, args: ["${log}", "${words.1}", fail-unless, "${out_dir}/go"]}
  - {name: summary, run: report, args: ["${log}", summary]}
"""


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A pipeline dir holding `chain.yaml` (and `chain_mini.yaml` stating one difference) run by the stand-in."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "chain.yaml").write_text(CONFIG)
    (conf / "chain_mini.yaml").write_text("defaults: [chain, _self_]\nwords: [uno, dos]\n")
    monkeypatch.setattr(pipeline, "PIPELINE_DIR", conf)
    monkeypatch.setattr(pipeline, "COMMANDS", {"train": "pipeline_step", "report": "pipeline_step"})
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    return tmp_path / "out"


def words(out):
    return (out / "words.txt").read_text().split()


def test_steps_run_in_order_and_skip_when_done(fake, capsys):
    (fake / "go").parent.mkdir(parents=True)
    (fake / "go").touch()
    spec = pipeline.load("chain", [f"out_dir={fake}"])
    assert pipeline.run(spec) == "step says summary\n"   # the report step's output
    assert words(fake)[0] == "one" and sorted(words(fake)[1:3]) == ["left", "right"]
    assert words(fake)[3:] == ["two", "summary"]
    done = json.loads((fake / "done" / "first.json").read_text())
    assert done["run"] == "train" and done["args"] == [str(fake / "words.txt"), "one"]
    assert done["command"][:3] == [sys.executable, "-m", "pipeline_step"]
    pipeline.run(pipeline.load("chain", [f"out_dir={fake}"]))
    assert len(words(fake)) == 5                         # nothing ran again
    assert "[first] finished earlier, skipped" in capsys.readouterr().out


def test_a_failing_step_stops_the_chain_and_a_rerun_resumes_there(fake):
    spec = pipeline.load("chain", [f"out_dir={fake}"])
    with pytest.raises(pipeline.StepFailed, match=r"step 'second' failed \(exit 3\).*logs/second.log") as error:
        pipeline.run(spec)
    assert "go is missing" in str(error.value)            # the log's last lines
    assert "go is missing" in (fake / "logs" / "second.log").read_text()
    assert len(words(fake)) == 3 and not (fake / "done" / "second.json").exists()
    (fake / "go").touch()
    pipeline.run(spec)
    assert len(words(fake)) == 5 and words(fake)[3:] == ["two", "summary"]   # first, left, right not redone


def test_a_failing_parallel_step_stops_its_sibling(fake, monkeypatch):
    (pipeline.PIPELINE_DIR / "par.yaml").write_text(
        "steps:\n  - name: both\n    parallel:\n"
        "      - {name: slow, run: train, args: [-c, 'import time; time.sleep(60)']}\n"
        "      - {name: bad, run: train, args: [-c, 'raise SystemExit(5)']}\n")
    monkeypatch.setattr(pipeline, "command", lambda step: [sys.executable, *step["args"]])
    started = time.perf_counter()
    with pytest.raises(pipeline.StepFailed, match=r"step 'bad' failed \(exit 5\)"):
        pipeline.run(pipeline.load("par", [f"out_dir={fake}"]))
    assert time.perf_counter() - started < 30 and not (fake / "done" / "slow.json").exists()


def test_overrides_reach_the_steps_and_changed_args_of_a_done_step_are_an_error(fake):
    spec = pipeline.load("chain_mini", [f"out_dir={fake}", "extra=[x,'k=v']"])
    assert spec["steps"][0]["args"] == [str(fake / "words.txt"), "uno", "x", "k=v"]   # a list spliced in
    assert spec["steps"][2]["args"][1] == "dos"
    (fake / "go").parent.mkdir(parents=True)
    (fake / "go").touch()
    pipeline.run(spec)
    with pytest.raises(ValueError, match=r"first \(was: train .* uno x k=v\).*another out_dir"):
        pipeline.run(pipeline.load("chain_mini", [f"out_dir={fake}"]))
    assert len(words(fake)) == 5


def test_default_out_dir_and_bad_configs(fake):
    assert pipeline.load("chain")["out_dir"] == "outputs/pipelines/chain"
    with pytest.raises(ValueError, match="no .*nope.yaml; available: chain, chain_mini"):
        pipeline.load("nope")
    conf = pipeline.PIPELINE_DIR
    (conf / "bad.yaml").write_text("steps:\n  - {name: a, run: trian, args: []}\n")
    with pytest.raises(ValueError, match="step 'a': run='trian'; allowed values: train, report"):
        pipeline.load("bad")
    (conf / "bad.yaml").write_text("steps:\n  - {name: a, run: train, arg: []}\n")
    with pytest.raises(ValueError, match="step 'a': unknown key.*arg"):
        pipeline.load("bad")
    (conf / "bad.yaml").write_text("steps:\n  - {name: a, run: train}\n  - {name: a, run: report}\n")
    with pytest.raises(ValueError, match="repeated: a"):
        pipeline.load("bad")


def test_the_shipped_pipelines_compose():
    for name in pipeline.available():
        spec = pipeline.load(name)
        assert spec["out_dir"] == f"outputs/pipelines/{name}" and spec["steps"][-1]["run"] == "report"
    sing = pipeline.load("sing_table21_mini", ["epochs.sing=2", "train_args=['seed=1']"])
    last = [s for s in sing["steps"] if s["name"] == "sing_notime"][0]["args"]
    assert "paper=sing_table21_mini" in last and "trainer.max_epochs=2" in last and last[-1] == "seed=1"
    assert "task.init_from=outputs/pipelines/sing_table21_mini/lstm_notime/checkpoints/last.ckpt" in last


def test_the_gcwd_mini_precompute_and_training_see_one_ftm_setting(tmp_path):
    """The pipeline's precompute args and paper=gcwd_table1_mini compose the same data grid, synth and JTFS, and
    training reads M where the precompute writes it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from psmexp import CONF_DIR

    spec = pipeline.load("gcwd_table1_mini", ["ftm_args=['synth.n_samples=1024']"])
    precompute_args = spec["steps"][0]["args"]
    train_args = [a for a in spec["steps"][2]["parallel"][0]["args"] if not a.startswith("hydra.")]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        pre = compose("precompute", overrides=precompute_args, return_hydra_config=True)
        fit = compose("train", overrides=[*train_args, f"paths.output_dir={tmp_path}"])
    HydraConfig.instance().set_config(pre)   # precompute's out_dir names the chosen perceptual option
    out_dir = pre.out_dir
    pre, fit = ({k: OmegaConf.to_container(c[k], resolve=True) for k in ("data", "synth", "perceptual")}
                for c in (pre, fit))
    assert pre["synth"] == fit["synth"] and pre["synth"]["n_samples"] == 1024
    assert pre["perceptual"] == fit["perceptual"] and pre["perceptual"]["J"] == 5
    grid = ("_target_", "data_dir", "total_size", "test_size", "bins", "interior_bins", "grid_seed")
    assert {k: pre["data"][k] for k in grid} == {k: fit["data"][k] for k in grid}
    assert fit["data"]["metric_dir"] == out_dir
