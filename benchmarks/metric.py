"""Cost of the metric's Jacobian: forward mode (5 JVPs) vs reverse mode (one VJP per output, vmapped as in
torch.func.jacrev), and vs a forward pass.

J is the Jacobian of nu -> Phi(g(theta(nu))) for the FTM drum (psmexp.perceptual.metric); Phi and g are composed from
psmexp/conf/precompute.yaml (`perceptual` and `synth` groups), so this times exactly what psmexp.precompute computes.

    python benchmarks/metric.py             # JTFS if psmexp/conf/perceptual/jtfs.yaml exists, else stft
    python benchmarks/metric.py --perceptual stft --batch 4 --repeats 3 --rev-outputs 64   # table in docs
    python benchmarks/metric.py --perceptual jtfs --n-samples 8192 perceptual.J=8   # + config overrides

Prints, per batch of --batch sounds (median of --repeats runs): forward time, forward-mode Jacobian time (JVPs vmapped
and looped), reverse-mode Jacobian time, and the ratios reverse/forward mode and Jacobian/forward. Reverse mode is
timed on --rev-outputs output coefficients (all of them if 0) and scaled linearly to the full output size K (each
output is one VJP).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from psmexp.perceptual.metric import jacobian_fwd
from psmexp.precompute import CONF_DIR, sound_representation
from psmexp.synth.ftm import ParamScaler


def median_time(fn, repeats: int) -> float:
    fn()                                                                    # warm-up (vmap tracing, allocations)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def reverse_jacobian_rows(fn, nu: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Rows `rows` of each sample's Jacobian by reverse mode: one VJP per (sample, output row), (B, len(rows), P)."""
    out = []
    for sample in nu:
        value, vjp_fn = torch.func.vjp(lambda v: fn(v[None]).flatten(), sample)
        cotangents = torch.zeros(len(rows), value.numel(), dtype=value.dtype)
        cotangents[torch.arange(len(rows)), rows] = 1
        out.append(torch.func.vmap(vjp_fn)(cotangents)[0])                 # VJPs vmapped, as jacrev does
    return torch.stack(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = "jtfs" if (CONF_DIR / "perceptual" / "jtfs.yaml").is_file() else "stft"
    parser.add_argument("--perceptual", default=default, help=f"psmexp/conf/perceptual/<name>.yaml (default {default})")
    parser.add_argument("--n-samples", type=int, default=2**13, help="sound length (reference 65536)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--rev-outputs", type=int, default=8, help="outputs timed in reverse mode (0 = all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("overrides", nargs="*", help="more config overrides, e.g. perceptual.J=8")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("precompute", overrides=[f"perceptual={args.perceptual}", f"synth.n_samples={args.n_samples}",
                                               *args.overrides])
    fn = sound_representation(instantiate(cfg.synth), instantiate(cfg.perceptual), ParamScaler())
    nu = (torch.rand(args.batch, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1).to(dtype)

    n_out = fn(nu[:1]).numel()
    n_rev = n_out if args.rev_outputs <= 0 else min(args.rev_outputs, n_out)
    rows = torch.linspace(0, n_out - 1, n_rev).round().long()
    with torch.no_grad():
        t_forward = median_time(lambda: fn(nu), args.repeats)
    t_fwd_jac = median_time(lambda: jacobian_fwd(fn, nu), args.repeats)
    t_fwd_loop = median_time(lambda: jacobian_fwd(fn, nu, vectorize=False), args.repeats)
    t_rev_part = median_time(lambda: reverse_jacobian_rows(fn, nu, rows), args.repeats)
    t_rev_jac = t_rev_part * n_out / n_rev
    jac_fwd = jacobian_fwd(fn, nu)[:, rows]
    check = ((jac_fwd - reverse_jacobian_rows(fn, nu, rows)).abs().max() / jac_fwd.abs().max()).item()

    print(f"Phi={args.perceptual} ({' '.join([cfg.perceptual._target_, *args.overrides])}), n_samples={args.n_samples}, batch={args.batch}, "
          f"dtype={args.dtype}, threads={args.threads}, K={n_out} outputs per sound")
    print(f"forward pass                 {t_forward:9.3f} s")
    print(f"Jacobian, forward mode       {t_fwd_jac:9.3f} s   (5 JVPs, vmapped)")
    print(f"Jacobian, forward mode       {t_fwd_loop:9.3f} s   (5 JVPs, one after another)")
    print(f"Jacobian, reverse mode       {t_rev_jac:9.3f} s   ({n_rev} of {n_out} VJPs timed: {t_rev_part:.3f} s, "
          f"scaled by {n_out / n_rev:.1f})")
    print(f"ratio reverse / forward mode {t_rev_jac / t_fwd_jac:9.1f}")
    print(f"ratio Jacobian / forward     {t_fwd_jac / t_forward:9.2f}   (looped JVPs: {t_fwd_loop / t_forward:.2f})")
    print(f"max |J_fwd - J_rev| / max |J| on the timed rows: {check:.1e}")


if __name__ == "__main__":
    main()
