import gzip
import shutil

import numpy as np
import pytest

from mrl.data.fashion_mnist import load_fashion_mnist, to_tensor
from mrl.errors import DataError


def test_loads_and_splits(fmnist_dir):
    data = load_fashion_mnist(fmnist_dir, val_size=200)
    assert len(data.train) == 1000 and len(data.val) == 200 and len(data.test) == 300
    assert data.train.images.shape[1:] == (28, 28) and data.train.images.dtype == np.uint8
    again = load_fashion_mnist(fmnist_dir, val_size=200)
    np.testing.assert_array_equal(data.val.labels, again.val.labels)
    x = to_tensor(data.test.images[:3])
    assert tuple(x.shape) == (3, 1, 28, 28)


def test_accepts_uncompressed_files(fmnist_dir, tmp_path):
    for f in fmnist_dir.iterdir():
        with gzip.open(f) as src:
            (tmp_path / f.name[:-3]).write_bytes(src.read())
    assert len(load_fashion_mnist(tmp_path, val_size=100).test) == 300


def test_missing_folder_and_file_say_how_to_get_them(fmnist_dir, tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "nope")
    shutil.copytree(fmnist_dir, tmp_path / "d")
    (tmp_path / "d" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_fashion_mnist(tmp_path / "d")


def test_truncated_and_wrong_magic_files(fmnist_dir, tmp_path):
    d = tmp_path / "d"
    shutil.copytree(fmnist_dir, d)
    img = d / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(img.read_bytes())
    img.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DataError, match="truncated or corrupted"):
        load_fashion_mnist(d)
    img.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + raw[4:]))
    with pytest.raises(DataError, match="magic number"):
        load_fashion_mnist(d)
    img.write_bytes(img.read_bytes()[:50])  # a cut gzip stream
    with pytest.raises(DataError, match="truncated or corrupted"):
        load_fashion_mnist(d)
