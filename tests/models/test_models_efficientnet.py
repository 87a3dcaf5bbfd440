"""EfficientNet regressor: exact parameter counts (GCWD paper: 4 / 17 / 63.8 M), output range, bad input."""
import pytest
import torch

from psmexp.models.efficientnet import EfficientNet


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_b0_count_output_shape_and_range():
    model = EfficientNet("b0")
    assert n_params(model) == 4_013_377
    model.eval()
    with torch.no_grad():
        y = model(torch.randn(2, 1, 120, 64) * 10)
    assert y.shape == (2, 5) and bool((y.abs() <= 1).all())


@pytest.mark.parametrize("variant, count", [("b4", 17_556_717), ("b7", 63_798_613)])
def test_larger_variants_counts(variant, count):
    assert n_params(EfficientNet(variant)) == count


def test_bad_variant_and_input_are_named():
    with pytest.raises(ValueError, match="model.variant"):
        EfficientNet("b9")
    with pytest.raises(ValueError, match=r"\(B, 1, F, T\)"):
        EfficientNet("b0")(torch.zeros(1, 3, 32, 32))


@pytest.mark.parametrize("variant", ["b0", "b4", "b7"])
def test_configs_name_their_variant(variant):
    from omegaconf import OmegaConf

    from conftest import CONF_DIR

    node = OmegaConf.load(CONF_DIR / "model" / f"efficientnet_{variant}.yaml")
    assert node._target_ == "psmexp.models.efficientnet.EfficientNet"
    assert (node.variant, node.in_channels, node.num_outputs) == (variant, 1, 5)


def test_head_starts_in_the_linear_regime_of_tanh():
    torch.manual_seed(0)
    model = EfficientNet("b0")
    pre_tanh = model.net(torch.rand(16, 1, 120, 9) * 8)
    assert pre_tanh.std() < 0.5 and (pre_tanh.abs() > 2).float().mean() == 0
