"""Checkpoint files: atomic writes, and the choice of the checkpoint a re-run resumes from.

Every checkpoint a run writes goes through `AtomicCheckpointIO` (a Lightning CheckpointIO plugin that psmexp.train
installs): the checkpoint is written to `<name>.tmp` beside its final path, flushed to disk, then renamed over it
(os.replace is atomic on POSIX), so a run killed during a write leaves the previous file intact (and a stale .tmp,
overwritten by the next write).

`resume_checkpoint(dir)` picks the file to resume from: `last.ckpt` (the newest state, written by
psmexp.callbacks.resume.ResumeCheckpoint) if it is readable, else the newest other readable `*.ckpt` of the
directory (a warning names both files); when checkpoints exist but none is readable it raises, naming them all.

Checkpoints describe themselves: the task writes the run's resolved `model` and `task` config under `CONFIG_KEY`
(psmexp.tasks.base.Task.on_save_checkpoint), so `model_from_checkpoint(path)` rebuilds the trained model from the
file alone (psmexp-generate, SING's stage chaining).
"""
from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path

import torch
from hydra.utils import instantiate
from lightning_fabric.utilities.cloud_io import _is_local_file_protocol
from pytorch_lightning.plugins.io import TorchCheckpointIO

log = logging.getLogger(__name__)
LAST = "last.ckpt"
HISTORY_KEY = "psmexp_history"   # psmexp.history.history_position() when the checkpoint was written
CONFIG_KEY = "psmexp_config"     # {"model": resolved model config, "task": resolved task config}
MODEL_PREFIX = "model."          # the task's `model` attribute: its weights' keys in the Lightning state_dict


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)


class UnreadableCheckpoints(RuntimeError):
    pass


def read_checkpoint(path: Path) -> dict:
    """The checkpoint's contents, tensors memory-mapped (cheap even for large files); raises if it cannot be read
    (a truncated file: zipfile.BadZipFile)."""
    zipfile.ZipFile(path).close()
    return torch.load(path, map_location="cpu", weights_only=False, mmap=True)


def resume_checkpoint(directory: Path) -> tuple[Path, dict | None] | None:
    """(path, history position) of the checkpoint to resume from, or None when `directory` holds no checkpoint."""
    files = sorted(directory.glob("*.ckpt"), key=lambda p: (p.name != LAST, -p.stat().st_mtime)) \
        if directory.is_dir() else []
    failures = []
    for path in files:
        try:
            history = read_checkpoint(path).get(HISTORY_KEY)
        except Exception as error:  # noqa: BLE001 - any failure to read means "not resumable from here"
            failures.append(f"{path} ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})")
            continue
        if failures:
            log.warning("Resuming from %s: the newer checkpoint(s) %s could not be read", path, "; ".join(failures))
        return path, history
    if failures:
        raise UnreadableCheckpoints(f"cannot resume: no checkpoint in {directory} is readable: {'; '.join(failures)}. "
                                    f"Delete them to start afresh, or set resume=false.")
    return None


def model_from_checkpoint(path: str | Path, model_config: dict | None = None) -> torch.nn.Module:
    """The model a run trained, rebuilt from its checkpoint's own config (or `model_config`, for checkpoints written
    before configs were stored) with the checkpoint's weights, in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if model_config is None:
        if CONFIG_KEY not in checkpoint:
            raise ValueError(f"{path} carries no model config (written before psmexp stored it under "
                             f"{CONFIG_KEY!r}); pass the run's model config explicitly")
        model_config = checkpoint[CONFIG_KEY]["model"]
    model = instantiate(model_config)
    state = checkpoint.get("state_dict", checkpoint)
    model.load_state_dict({k[len(MODEL_PREFIX):]: v for k, v in state.items() if k.startswith(MODEL_PREFIX)})
    return model.eval()
