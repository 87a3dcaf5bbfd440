"""Real-data readers on small fixtures in each real format: mnist.pkl.gz, IDX, LIBSVM; psmexp-data's checks."""
import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from psmexp.data import mnist, prepare, safe_pickle
from psmexp.data.mnist import MNISTDataModule
from psmexp.data.sparse import LibSVMDataModule
from conftest import compose_config, train


def write_mnist_pickle(path, sizes=(5, 3, 4), seed=0):
    """The deeplearning.net layout: ((x_train, y), (x_valid, y), (x_test, y)), float32 pixel/256, int64 labels,
    pickled at protocol 2 as the original file is."""
    rng = np.random.default_rng(seed)
    parts = tuple((rng.integers(0, 256, (n, 784)).astype(np.float32) / 256, rng.integers(0, 10, n).astype(np.int64))
                  for n in sizes)
    with gzip.open(path, "wb") as f:
        pickle.dump(parts, f, protocol=2)
    return parts


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_mnist_pickle_is_read_with_train_and_valid_joined(tmp_path):
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = write_mnist_pickle(tmp_path / "mnist.pkl.gz")
    arrays = mnist.read(tmp_path)
    assert arrays["train"][1].tolist() == y_tr.tolist() + y_va.tolist()
    # pixel/256 in the pickle: the same uint8 pixels as the IDX files hold
    np.testing.assert_array_equal(arrays["train"][0][5].flatten(), x_va[0] * 256)
    assert arrays["test"][1].tolist() == y_te.tolist()
    dm = MNISTDataModule(data_dir=str(tmp_path), num_features=784, num_classes=10, batch_size=4, val_fraction=0.0)
    dm.setup()
    x, y = dm.splits["train"].tensors
    assert x.shape == (8, 1, 28, 28) and sorted(y.tolist()) == sorted(y_tr.tolist() + y_va.tolist())
    assert float(x.max()) <= 1.0 and len(dm.splits["test"]) == 4


def test_malicious_pickle_is_rejected_unexecuted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with gzip.open(tmp_path / "mnist.pkl.gz", "wb") as f:
        pickle.dump(((np.zeros((1, 784), np.float32), Exploit()),), f, protocol=2)
    dm = MNISTDataModule(data_dir=str(tmp_path), num_features=784, num_classes=10)
    with pytest.raises(safe_pickle.UnsafePickleError, match=r"mnist\.pkl\.gz.*(posix|os)\.system.*rejected"):
        dm.setup()
    assert not (tmp_path / "pwned").exists()


def test_safe_pickle_reads_numpy_arrays_at_every_protocol():
    import io
    data = {b"data": np.arange(6, dtype=np.uint8).reshape(2, 3), b"labels": [1, 2]}
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        loaded = safe_pickle.load(io.BytesIO(pickle.dumps(data, protocol=protocol)), "x", encoding="bytes")
        assert loaded[b"labels"] == [1, 2] and loaded[b"data"].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_pickle_of_the_wrong_shape_names_the_layout(tmp_path):
    with gzip.open(tmp_path / "mnist.pkl.gz", "wb") as f:
        pickle.dump((np.zeros((2, 10), np.float32), np.zeros(2)), f, protocol=2)
    with pytest.raises(ValueError, match=r"expected \(\(x_train, y\), \(x_valid, y\), \(x_test, y\)\)"):
        mnist.read(tmp_path)


def test_not_a_gzip_pickle_is_a_clear_error(tmp_path):
    (tmp_path / "mnist.pkl.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="mnist.pkl.gz: not a readable gzipped pickle"):
        mnist.read(tmp_path)


def test_idx_truncated_header_and_partial_layout_are_clear_errors(tmp_path):
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 3]) + b"\x00\x00")
    with pytest.raises(ValueError, match="truncated IDX header"):
        mnist.read_idx(tmp_path / "short")
    mnist.write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(FileNotFoundError, match=r"no train-labels-idx1-ubyte\[\.gz\].*expected layout is the four IDX"):
        mnist.read(tmp_path)


def test_write_idx_round_trips_through_the_reader(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28)).astype(np.uint8)
    for name in ("a.gz", "b"):
        mnist.write_idx(tmp_path / name, images)
        np.testing.assert_array_equal(mnist.read_idx(tmp_path / name), images)


def test_images_with_wrong_label_counts_are_refused(tmp_path):
    write_mnist_pickle(tmp_path / "mnist.pkl.gz")
    with pytest.raises(ValueError, match=r"train has images \(8, 28, 28\) with label counts .*expected .*N = 60000"):
        prepare.main(["mnist", str(tmp_path / "out"), "--from", str(tmp_path / "mnist.pkl.gz")])
    assert not (tmp_path / "out").exists()


def test_prepared_images_are_written_as_idx_the_reader_reads(tmp_path, capsys):
    parts = write_mnist_pickle(tmp_path / "mnist.pkl.gz", sizes=(10, 10, 10))
    arrays = mnist.read_pickle(tmp_path / "mnist.pkl.gz")
    counts = {split: np.bincount(y, minlength=10).tolist() for split, (_, y) in arrays.items()}
    prepare.check_images(arrays, counts, "fixture")
    prepare.write_images(arrays, tmp_path / "idx")
    again = mnist.read(tmp_path / "idx")
    np.testing.assert_array_equal(again["test"][0].reshape(10, 784), np.rint(parts[2][0] * 256))
    assert again["train"][1].tolist() == parts[0][1].tolist() + parts[1][1].tolist()


@pytest.mark.skipif(not prepare.FASHION_DIR.is_dir(), reason="Debian dataset-fashion-mnist not installed")
def test_fashion_mnist_from_debian_has_its_label_counts(tmp_path, capsys):
    prepare.main(["fashion_mnist", str(tmp_path)])
    assert f"use data.data_dir={tmp_path}" in capsys.readouterr().out
    assert {split: len(x) for split, (x, _) in mnist.read(tmp_path).items()} == {"train": 60000, "test": 10000}


@pytest.mark.skipif(not prepare.HEART_SCALE.is_file(), reason="Debian liblinear-tools not installed")
def test_heart_scale_is_copied_checked_and_read_as_libsvm(tmp_path):
    prepare.main(["heart_scale", str(tmp_path / "heart_scale")])
    dm = LibSVMDataModule(path=str(tmp_path / "heart_scale"), num_features=13, test_fraction=0.2)
    dm.setup()
    assert len(dm.splits["train"]) + len(dm.splits["test"]) == 270


@pytest.mark.skipif(not prepare.SPAM_RDA.is_file(), reason="Debian r-cran-kernlab not installed")
def test_spambase_is_converted_to_scaled_libsvm(tmp_path):
    pytest.importorskip("rdata")
    from sklearn.datasets import load_svmlight_file
    prepare.main(["spambase", str(tmp_path / "spambase")])
    x, y = load_svmlight_file(str(tmp_path / "spambase"), n_features=57)
    assert x.shape == (4601, 57) and int((y == 1).sum()) == 1813   # UCI: 1,813 spam
    assert x.min() >= 0 and np.allclose(x.max(axis=0).toarray(), 1.0)


def test_missing_libsvm_file_names_path_and_format(tmp_path):
    dm = LibSVMDataModule(path=str(tmp_path / "spambase"), num_features=57)
    with pytest.raises(FileNotFoundError, match=r"spambase.*LIBSVM/SVMlight text file"):
        dm.setup()


def test_missing_source_names_the_debian_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        prepare.main(["fashion_mnist", str(tmp_path / "out"), "--from", str(tmp_path / "nope")])


@pytest.mark.skipif(not prepare.HEART_SCALE.is_file(), reason="Debian liblinear-tools not installed")
def test_fig44_preset_trains_on_a_real_libsvm_file(tmp_path, run_dir):
    prepare.main(["heart_scale", str(tmp_path / "heart_scale")])
    overrides = ["paper=adabatch_fig44", "hydra.mode=RUN", "data=heart_scale", "~data.num_samples",
                 f"data.path={tmp_path / 'heart_scale'}", "experiment=adabatch_adabatch", "data.batch_size=16",
                 "optim.lr=1"]
    _, metrics = train(overrides, run_dir)
    assert metrics["samples"] == 216 and metrics["test/error"] < 0.5


def test_real_data_configs_name_their_sources(tmp_path):
    fashion = compose_config(["data=fashion_mnist"], tmp_path).data
    assert fashion.data_dir == str(prepare.FASHION_DIR) and fashion._target_.endswith("MNISTDataModule")
    for name, features in (("spambase", 57), ("heart_scale", 13)):
        cfg = compose_config([f"data={name}", "paths.data_root=/d"], tmp_path).data
        assert cfg.path == f"/d/{name}" and cfg.num_features == features


def test_missing_real_data_is_an_error_not_a_fallback(tmp_path, run_dir):
    overrides = ["data=mnist", f"data.data_dir={tmp_path / 'nowhere'}", "debug=fast", "logger=none"]
    with pytest.raises(FileNotFoundError, match=r"nowhere.*expected layout is the four IDX files"):
        train(overrides, run_dir)
