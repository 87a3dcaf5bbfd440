"""The GCWD paper's metric and the reference code's behaviours as options (Han, Lostanlen, Lagrange; reference code
lylyhan/perceptual_neural_physical): Phi = log1p(c S / eps) differentiated for M, each reference option's effect,
and bad input (M of another Phi/signal length, lambda_0 that overflows the loss) refused before training."""
import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from conftest import compose_config, train
from psmexp.callbacks.grad_roughness import roughness
from psmexp.callbacks.grad_stats import global_grad_norm
from psmexp.callbacks.lm_damping import LMDamping
from psmexp.data.ftm_drums import check_metric_identity
from psmexp.history import read_history
from psmexp.losses.pnp import PNPLoss, pnp_loss
from psmexp.optim.gcwd import GCWD
from psmexp.perceptual.jtfs import JTFS
from psmexp.perceptual.metric import jacobian_fwd
from psmexp.precompute import sound_representation
from psmexp.synth.ftm import FTMDrum, ParamScaler
from test_sound_matching_task import TINY_STFT, TINY_TASK, one_thread, tiny_metric  # noqa: F401 (fixtures)

NU = torch.tensor([[0.1, -0.3, 0.2, -0.5, 0.4]], dtype=torch.float64)


def test_phi_jacobian_is_that_of_log1p_of_corrected_S_over_eps():
    """M's Jacobian (forward mode through JTFS.phi) against central differences of log1p(sqrt(2^J) S / eps),
    written out here from S = JTFS.forward, on one sound."""
    synth, scaler = FTMDrum(n_samples=1024), ParamScaler()
    jtfs = JTFS(shape=1024, J=5, Q=(8, 1), eps=1e-3).double()
    fn = sound_representation(synth, jtfs, scaler)
    explicit = lambda nu: torch.log1p(2 ** 2.5 * jtfs(synth(scaler.from_nu(nu))) / 1e-3)   # noqa: E731
    torch.testing.assert_close(fn(NU), explicit(NU))
    jac = jacobian_fwd(fn, NU)[0]                                                          # (K, 5)
    step = 1e-6
    fd = torch.stack([(explicit(NU + step * e) - explicit(NU - step * e))[0] / (2 * step)
                      for e in torch.eye(5, dtype=torch.float64)[:, None, :]], dim=1)
    torch.testing.assert_close(jac, fd, rtol=1e-4, atol=1e-5 * fd.abs().max().item())
    # the raw option differentiates S itself; the log's Jacobian is S's scaled by c / (eps + c S) per coefficient
    raw = JTFS(shape=1024, J=5, Q=(8, 1), phi="raw").double()
    jac_raw = jacobian_fwd(sound_representation(synth, raw, scaler), NU)[0]
    S = jtfs(synth(scaler.from_nu(NU)))[0]
    c = 2 ** 2.5
    torch.testing.assert_close(jac, jac_raw * (c / (1e-3 + c * S))[:, None], rtol=1e-8, atol=1e-10)
    jtfs_plain = JTFS(shape=1024, J=5, Q=(8, 1), energy_correction=False).double()
    torch.testing.assert_close(jtfs_plain.phi(synth(scaler.from_nu(NU))), torch.log1p(S / 1e-3)[None])
    with pytest.raises(ValueError, match="phi='log'"):
        JTFS(shape=1024, J=5, phi="log")


def test_loss_scale_mu_and_float64():
    """scale (reference 0.5) and mu (reference 1e-10) multiply the quadratic form; dtype=float64 computes it in
    float64 from float32 predictions, where float32 overflows."""
    nu_hat = torch.tensor([[1.0, -1.0, 1.0, -1.0, 1.0], [0.5, 0.0, 0.0, 0.0, 0.0]], requires_grad=True)
    nu = -nu_hat.detach().clone()
    metric = torch.diag_embed(torch.arange(1.0, 6.0)).expand(2, 5, 5)
    d = (nu_hat - nu).detach().double()
    by_hand = float(((d ** 2 * torch.arange(1.0, 6.0, dtype=torch.float64)).sum(1) + 10.0 * (d ** 2).sum(1)).mean())
    assert pnp_loss(nu_hat, nu, metric, 10.0).item() == pytest.approx(by_hand, rel=1e-6)
    assert pnp_loss(nu_hat, nu, metric, 10.0, scale=0.5, mu=1e-10).item() == pytest.approx(0.5e-10 * by_hand,
                                                                                            rel=1e-6)
    huge = 1e38                                            # d has ||d||^2 = 20: 2e39 overflows float32
    assert torch.isinf(pnp_loss(nu_hat, nu, metric, huge))
    loss64 = pnp_loss(nu_hat, nu, metric, huge, dtype=torch.float64)
    assert loss64.dtype == torch.float64 and loss64.item() == pytest.approx(huge * (20 + 1) / 2, rel=1e-6)
    loss64.backward()
    assert nu_hat.grad.dtype == torch.float32 and torch.isfinite(nu_hat.grad).all()


def test_check_damping_refuses_a_lambda_that_overflows_the_loss_dtype():
    with pytest.raises(ValueError, match=r"overflow in torch.float32.*callbacks.lm_damping.lambda0=1e\+41"):
        PNPLoss().check_damping(1e41, 5, "callbacks.lm_damping.lambda0=1e+41", torch.float32)
    PNPLoss(dtype="float64").check_damping(1e41, 5, "x", torch.float32)            # 2e42 fits in float64
    PNPLoss(mu=1e-10).check_damping(1e41, 5, "x", torch.float32)                   # mu * lambda = 1e31 fits
    with pytest.raises(ValueError, match="loss.dtype"):
        PNPLoss(dtype="float16")


def fake_trainer(val_loss=None, sanity=False, step=0, optimizers=()):
    metrics = {} if val_loss is None else {"val/loss": torch.tensor(val_loss)}
    return SimpleNamespace(sanity_checking=sanity, callback_metrics=metrics, loggers=[], global_step=step,
                           optimizers=list(optimizers))


def stepped(optimizer_cls, **kwargs):
    w = torch.nn.Parameter(torch.ones(3))
    optimizer = optimizer_cls([w], **kwargs)
    w.grad = torch.ones(3)
    optimizer.step()
    return optimizer


def test_reset_adam_state_clears_adam_only_and_only_when_set():
    for reset in (False, True):
        adam, gcwd = stepped(torch.optim.Adam, lr=1e-3), stepped(GCWD, lr=1e-3)
        callback = LMDamping(lambda0=10.0, factor=0.5, reset_adam_state=reset)
        callback.on_fit_start(fake_trainer(), SimpleNamespace())
        callback.on_validation_end(fake_trainer(1.0, optimizers=[adam, gcwd]), SimpleNamespace())
        assert callback.value == 5.0
        assert (len(adam.state) == 0) == reset          # Adam's moments and step count gone
        assert len(gcwd.state) == 1                      # the reference code cleared Adam's state only
        callback.on_validation_end(fake_trainer(2.0, optimizers=[adam]), SimpleNamespace())   # no improvement
        assert callback.value == 5.0


def test_sanity_check_cut_and_imposed_lambda0_is_never_squared():
    for cut, expected in ((False, 8.0), (True, 4.0)):
        callback, module = LMDamping(lambda0=8.0, factor=0.5, square=True, sanity_check_cut=cut), SimpleNamespace()
        callback.on_fit_start(fake_trainer(), module)
        callback.on_validation_end(fake_trainer(1.0, sanity=True), module)
        assert callback.value == module.damping == expected
        callback.on_validation_end(fake_trainer(1.0), module)            # the first real validation still improves
        assert callback.value == expected * 0.5
    resumed = LMDamping(lambda0=8.0, factor=0.5, sanity_check_cut=True)
    resumed.load_state_dict({"value": 2.0, "reference": 1.0})
    resumed.on_validation_end(fake_trainer(1.0, sanity=True, step=40), SimpleNamespace())
    assert resumed.value == 2.0                                          # a resumed run's sanity check does not cut


def test_lambda0_from_the_validation_split(tmp_path):
    np.save(tmp_path / "eig_train.npy", np.array([[0.1, 3.0]]))
    np.save(tmp_path / "eig_val.npy", np.array([[0.2, 7.0]]))
    for split, square, expected in (("train", False, 3.0), ("val", True, 49.0)):
        callback = LMDamping(eigenvalues=str(tmp_path / f"eig_{split}.npy"), square=square)
        callback.on_fit_start(fake_trainer(), SimpleNamespace())
        assert callback.value == expected


def test_reference_code_preset_sets_every_option(tmp_path):
    cfg = compose_config(["paper=gcwd_table1_imposed_mini"], tmp_path / "run")
    assert (cfg.loss.scale, cfg.loss.mu, cfg.loss.dtype) == (0.5, 1e-10, "float64")
    damping = cfg.callbacks.lm_damping
    assert (damping.square, damping.factor, damping.reset_adam_state, damping.sanity_check_cut) == \
        (True, 0.05, True, True)
    assert damping.eigenvalues.endswith("eig_val.npy") and damping.lambda0 == 1e41
    faithful = compose_config(["paper=gcwd_table1_mini"], tmp_path / "run2")
    assert (faithful.loss.scale, faithful.loss.mu, faithful.loss.dtype) == (1.0, 1.0, None)
    assert (faithful.callbacks.lm_damping.square, faithful.callbacks.lm_damping.factor) == (False, 0.02)
    assert faithful.perceptual.phi == "log1p" and faithful.perceptual.eps == 1e-3
    fig3 = compose_config(["paper=gcwd_fig3_mini"], tmp_path / "run3")
    assert fig3.callbacks.lm_damping.lambda0 == 1e41 and fig3.loss.mu == 1e-10 and fig3.loss.dtype == "float64"
    assert fig3.trainer.max_steps == 100 and list(fig3.callbacks.lm_damping.milestones) == [50]


@pytest.mark.parametrize("override, key", [("perceptual.n_fft=256", "perceptual.n_fft"),
                                           ("synth.n_samples=2048", "synth.n_samples"),
                                           ("perceptual.eps=0.01", "perceptual.eps")])
def test_training_refuses_an_M_of_other_phi_or_signal_settings(tiny_metric, tmp_path, override, key):  # noqa: F811
    cfg = compose_config(["task=sound_matching", *tiny_metric, *TINY_TASK, override], tmp_path / "run")
    datamodule = instantiate(cfg.data)
    with pytest.raises(ValueError, match=rf"manifest.json: M was computed with other settings.*{key}"):
        datamodule.setup("fit")


def test_identity_check_names_the_phi_of_a_raw_or_older_M(tmp_path):
    jtfs = {"_target_": "psmexp.perceptual.jtfs.JTFS", "shape": 2048, "J": 5, "phi": "log1p", "eps": 1e-3,
            "energy_correction": True, "chunk_elements": 4}
    raw = {**jtfs, "phi": "raw", "chunk_elements": 8}
    older = {k: v for k, v in jtfs.items() if k not in ("phi", "energy_correction")}
    check_metric_identity(tmp_path / "manifest.json", {"perceptual": raw}, None, {"perceptual": raw})
    for stored, key in ((raw, "perceptual.phi: 'raw' in the file, 'log1p' in this run"),
                        (older, "perceptual.phi: None in the file")):
        with pytest.raises(ValueError, match=re.escape(key)):
            check_metric_identity(tmp_path / "manifest.json", {"perceptual": stored}, None, {"perceptual": jtfs})


def test_lambda0_overflowing_the_loss_fails_before_training(tiny_metric, tmp_path):  # noqa: F811
    with pytest.raises(ValueError, match=r"overflow in torch.float32.*callbacks.lm_damping.lambda0=1e\+41"):
        train(["task=sound_matching", *tiny_metric, *TINY_TASK, "callbacks=[default,lm_damping]",
               "callbacks.lm_damping.lambda0=1e41"], tmp_path / "run")
    assert "train/loss" not in read_history(tmp_path / "run")
    # the reference code's mu and float64 make the same lambda_0 trainable, and Adam's v overflows in float32
    _, metrics = train(["task=sound_matching", *tiny_metric, *TINY_TASK, "callbacks=[default,lm_damping]",
                        "callbacks.lm_damping.lambda0=1e41", "loss.mu=1e-10", "loss.dtype=float64",
                        ], tmp_path / "run64")
    fractions = [v for _, v in read_history(tmp_path / "run64")["optim/nonfinite_v_frac"]]
    assert max(fractions) > 0.5 and math.isfinite(metrics["val/loss"])


def test_gradient_norm_and_roughness_of_float32_gradients_past_1e19_are_finite():
    """Fig. 3's gradients (RMS ~7e29 per weight at an effective lambda of 1e31) square past float32: both are
    computed in float64."""
    big = [torch.full((4,), 1e30), torch.full((2, 2), -1e30)]
    params = [SimpleNamespace(grad=g) for g in big]
    assert float(global_grad_norm(params)) == pytest.approx(1e30 * math.sqrt(8), rel=1e-6)
    w_t, w_next = [torch.zeros(4)], [torch.ones(4)]
    assert float(roughness([torch.full((4,), 3e30)], [torch.full((4,), 1e30)], w_next, w_t)) == \
        pytest.approx(2 * 2e30 * 2 / 2, rel=1e-6)
