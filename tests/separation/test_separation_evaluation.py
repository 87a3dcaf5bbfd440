"""Evaluation settings (shifts, chunks) are the separation task's, chosen per model by conf/evaluation/<model>.yaml."""
import pytest
import torch

from psmexp.models.demucs import Demucs
from psmexp.tasks.separation import Separation
from conftest import compose_config

SETTINGS = ("shifts", "max_shift_seconds", "chunk_seconds")


@pytest.mark.parametrize("overrides, expected", [
    (["task=separation"], (10, 0.5, None)),                                        # Demucs: S=10 shifts, whole track
    (["task=separation", "model=conv_tasnet"], (0, 0.5, 8.0)),                     # Conv-TasNet: 8 s chunks
    (["task=separation", "experiment=demucs_table31_conv_tasnet_mini"], (0, 0.5, 8.0)),
    (["task=separation", "experiment=demucs_ablation_no_randomized_equivariant_stabilization"], (0, 0.5, None)),
    (["task=separation", "task.chunk_seconds=4.0"], (10, 0.5, 4.0)),
])
def test_each_model_brings_its_evaluation_protocol_to_the_task(run_dir, overrides, expected):
    cfg = compose_config(overrides, run_dir)
    assert tuple(cfg.task[key] for key in SETTINGS) == expected
    assert not set(SETTINGS) & set(cfg.model)


def test_the_task_separates_whole_tracks_with_its_settings():
    class Scale(torch.nn.Module):
        sources, calls = 4, []

        def forward(self, mix):
            self.calls.append(mix.shape[-1])
            return torch.stack([mix] * self.sources, dim=1)

    task = Separation(Scale(), torch.nn.L1Loss(), None, samplerate=100, shifts=3, chunk_seconds=2.5,
                      max_shift_seconds=0.1)
    task.shift_generator = torch.Generator().manual_seed(0)
    mix = torch.randn(1, 2, 600)
    torch.testing.assert_close(task.separate(mix, stabilize=True), torch.stack([mix] * 4, dim=1))
    assert Scale.calls == [250 + 10] * 3 + [250 + 10] * 3 + [100 + 10] * 3   # 3 chunks x 3 shifts, + max_shift
    Scale.calls.clear()
    task.separate(mix, stabilize=False)
    assert Scale.calls == [250, 250, 100]
    assert not hasattr(Demucs(channels=4, depth=2), "shifts")
