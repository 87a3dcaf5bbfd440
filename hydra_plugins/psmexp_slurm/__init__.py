"""Hydra plugin: psmexp's SLURM launcher, hydra-submitit-launcher's checked against the cluster before it submits.
(Hydra takes launchers from the hydra_plugins namespace only; the logic is in psmexp.slurm.)"""
from hydra_plugins.hydra_submitit_launcher import submitit_launcher


class CheckedSlurmLauncher(submitit_launcher.SlurmLauncher):
    """Before submitting, psmexp.slurm.check_submission asks the cluster whether it accepts the job (sbatch
    --test-only) and stops the multirun with a message naming the hydra.launcher setting if not."""

    def launch(self, job_overrides, initial_job_idx):
        from psmexp.slurm import check_submission

        check_submission(self.params)
        return super().launch(job_overrides, initial_job_idx)
