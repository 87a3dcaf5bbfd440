"""psmexp/conf/data/ftm_drums.yaml and psmexp/conf/precompute.yaml compose with the core's config tree and pass its checks."""
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from psmexp.config import ConfigError, validate
from psmexp.precompute import CONF_DIR


def test_data_group_composes_with_train_config(tmp_path):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["data=ftm_drums", f"paths.data_root={tmp_path}", "data.total_size=300",
                                          "data.test_size=20", "data.batch_size=8", "seed=3", "model.in_features=5", "model.num_classes=5",
                                          f"paths.output_dir={tmp_path / 'run'}"])
    validate(cfg)
    assert cfg.data.data_dir == f"{tmp_path}/ftm_drums" and cfg.data.seed == 3
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["theta"].shape == (8, 5) and batch["nu"].shape == (8, 5)


def test_bad_keys_are_named_before_anything_runs(tmp_path):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("precompute", overrides=[f"out_dir={tmp_path}", "+synth.n_sample=5"])
        bad_type = compose("precompute", overrides=[f"out_dir={tmp_path}", "data.total_size=many"])
    with pytest.raises(ConfigError, match="synth.n_sample is not a parameter"):
        validate(cfg)
    with pytest.raises(ConfigError, match="data.total_size='many'"):
        validate(bad_type)
