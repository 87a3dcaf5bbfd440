"""Hydra plugin: psmexp's SLURM launcher (hydra-submitit-launcher's, checked against the cluster before it submits)."""
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher


class CheckedSlurmLauncher(SlurmLauncher):
    """hydra-submitit-launcher's SLURM launcher; before submitting, psmexp.slurm.check_submission asks the cluster
    whether it accepts the job and stops with a message naming the hydra.launcher setting if not."""

    def launch(self, job_overrides, initial_job_idx):
        from psmexp.slurm import check_submission

        check_submission(self.params)
        return super().launch(job_overrides, initial_job_idx)
