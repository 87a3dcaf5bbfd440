"""Gradient roughness (GCWD eq. 12): analytic quadratic case, subset masks, exact restoration, the real core task."""
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from psmexp.callbacks.grad_roughness import GradRoughness, roughness
from psmexp.history import read_history
from conftest import train

DIM = 6


class Quadratic(pl.LightningModule):
    """L(w) = w^T A w / 2 with a fixed SPD A; trained by plain SGD."""

    def __init__(self, A, w0, lr=0.05):
        super().__init__()
        self.register_buffer("A", A)
        self.w = torch.nn.Parameter(w0.clone())
        self.lr = lr

    def compute_loss(self, batch):
        return 0.5 * self.w @ self.A @ self.w

    def training_step(self, batch, batch_idx):
        return self.compute_loss(batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def fit(module, callbacks, steps):
    data = DataLoader(TensorDataset(torch.zeros(steps, 1)), batch_size=1)
    trainer = pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", callbacks=callbacks)
    trainer.fit(module, data)


def spd_matrix(seed):
    gen = torch.Generator().manual_seed(seed)
    B = torch.randn(DIM, DIM, generator=gen, dtype=torch.float64)
    return B @ B.T + 0.5 * torch.eye(DIM, dtype=torch.float64), torch.randn(DIM, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_quadratic_roughness_is_known_analytically(fraction):
    A, w0 = spd_matrix(0)
    callback = GradRoughness(every_n_steps=2, fraction=fraction, seed=1)
    module = Quadratic(A, w0)
    fit(module, [callback], steps=6)
    # SGD on the quadratic: w_{t+1} = (I - lr A) w_t; eq. 12 gives 2 ||A d / 2|| / ||d||, d = w_{t+1} - w_t
    mask = torch.ones(DIM, dtype=torch.bool) if callback.masks is None else callback.masks[0]
    assert 0 < int(mask.sum()) <= DIM
    w, expected = w0.numpy(), []
    for t in range(6):
        w_next = w - 0.05 * A.numpy() @ w
        d = w_next - w
        if t % 2 == 0:
            expected.append((t, np.linalg.norm((A.numpy() @ d)[mask.numpy()]) / np.linalg.norm(d[mask.numpy()])))
        w = w_next
    assert [t for t, _ in callback.history] == [t for t, _ in expected] == [0, 2, 4]
    np.testing.assert_allclose([s for _, s in callback.history], [s for _, s in expected], rtol=1e-10)
    np.testing.assert_allclose(module.w.detach().numpy(), w, rtol=1e-12)   # weights restored exactly


def test_roughness_formula_on_lists():
    g_mid, g_t = [torch.tensor([3.0, 0.0]), torch.tensor([[4.0]])], [torch.zeros(2), torch.zeros(1, 1)]
    w_next, w_t = [torch.tensor([1.0, 0.0]), torch.tensor([[0.0]])], [torch.zeros(2), torch.zeros(1, 1)]
    assert float(roughness(g_mid, g_t, w_next, w_t)) == pytest.approx(10.0)        # 2 * 5 / 1
    masks = [torch.tensor([True, False]), torch.tensor([[False]])]
    assert float(roughness(g_mid, g_t, w_next, w_t, masks)) == pytest.approx(6.0)  # 2 * 3 / 1


class Noisy(pl.LightningModule):
    """A small net with dropout and BatchNorm: probing must not change the training trajectory."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                                       torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))

    def compute_loss(self, batch):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def training_step(self, batch, batch_idx):
        return self.compute_loss(batch)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def test_probing_leaves_the_training_trajectory_unchanged():
    def run(callbacks):
        torch.manual_seed(0)
        module = Noisy()
        gen = torch.Generator().manual_seed(1)
        data = DataLoader(TensorDataset(torch.randn(40, 4, generator=gen), torch.randn(40, 1, generator=gen)),
                          batch_size=8)
        trainer = pl.Trainer(max_steps=5, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, accelerator="cpu", callbacks=callbacks)
        trainer.fit(module, data)
        return module.state_dict()

    callback = GradRoughness(fraction=0.3, seed=2)
    probed, plain = run([callback]), run([])
    assert len(callback.history) == 5 and all(np.isfinite(s) and s > 0 for _, s in callback.history)
    for key in plain:
        assert torch.equal(probed[key], plain[key]), key


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="every_n_steps"):
        GradRoughness(every_n_steps=0)
    with pytest.raises(ValueError, match="fraction"):
        GradRoughness(fraction=0.0)


def test_with_the_core_classification_task(run_dir):
    train(["callbacks=[default,grad_roughness]", "debug=fast", "logger=none", "trainer.log_every_n_steps=1"], run_dir)
    series = read_history(run_dir)["grad/roughness"]
    assert [step for step, _ in series] == [0, 1]                       # debug=fast: 2 training steps
    assert all(np.isfinite(v) and v > 0 for _, v in series)
