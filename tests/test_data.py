"""data.py on tiny files the tests make: formats, splits, scaling, caching and every error path."""
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile

import keras
import numpy as np
import pytest

import data
from conftest import (ROOT, make_idx_folder, make_notmnist_tar, make_notmnist_tree, needs_permissions,
                      png_bytes, write_idx)
from data import DataError, load_dataset


def image_ids(x):
    """Recover the index spelled into the first two pixels by numbered_images()."""
    pixels = np.rint(x[:, 0, :2, 0] * 255).astype(int)
    return pixels[:, 0] * 256 + pixels[:, 1]


@pytest.mark.parametrize("name", ["mnist", "fashion"])
def test_idx_dataset_from_data_dir(data_dir, name):
    dataset = load_dataset(name, data_dir)
    assert dataset.x_train.shape == (90, 28, 28, 1) and dataset.x_val.shape == (10, 28, 28, 1)
    assert dataset.x_test.shape == (30, 28, 28, 1) and dataset.input_shape == (28, 28, 1)
    assert dataset.x_train.dtype == np.float32
    assert 0 <= dataset.x_train.min() and dataset.x_train.max() <= 1 and dataset.x_train.max() > 0.9
    assert dataset.y_train.dtype.kind in "iu" and set(dataset.y_test) == set(range(10))
    assert dataset.num_classes == 10 and dataset.source.endswith(data.FOLDERS[name])
    assert dataset.class_names[9] == {"mnist": "9", "fashion": "Ankle boot"}[name]


def test_data_dir_comes_from_environment(data_dir, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    assert len(load_dataset("mnist").x_test) == 30


def test_validation_split_is_seeded_and_carved_from_training_data(data_dir):
    first, again, other = (load_dataset("mnist", data_dir, seed=s) for s in (0, 0, 1))
    train, val = image_ids(first.x_train), image_ids(first.x_val)
    assert sorted(np.concatenate([train, val])) == list(range(100))  # nothing lost, nothing shared
    assert np.array_equal(val, image_ids(again.x_val))
    assert not np.array_equal(val, image_ids(other.x_val))
    assert np.array_equal(image_ids(first.x_test), image_ids(other.x_test))  # the test set never moves
    assert set(image_ids(first.x_test)) == set(range(1000, 1030))
    labels_by_id = dict(zip(image_ids(first.x_train), first.y_train))
    assert all(labels_by_id[i] == i % 10 for i in labels_by_id)  # labels travel with their images


def test_validation_first_holds_out_the_first_images_whatever_the_seed(data_dir):
    for seed in (0, 1):
        dataset = load_dataset("mnist", data_dir, seed=seed, validation_first=True)
        assert list(image_ids(dataset.x_val)) == list(range(10))  # the Géron notebook's X_train_full[:5000]
        assert sorted(image_ids(dataset.x_train)) == list(range(10, 100))

def test_validation_size_and_limit(data_dir):
    dataset = load_dataset("mnist", data_dir, validation_size=0.25, limit=40)
    assert (len(dataset.x_train), len(dataset.x_val), len(dataset.x_test)) == (30, 10, 30)


def test_standardize_uses_training_statistics_only(data_dir):
    plain = load_dataset("mnist", data_dir)
    standard = load_dataset("mnist", data_dir, standardize=True)
    mean, std = plain.x_train.mean(), plain.x_train.std()
    assert abs(standard.x_train.mean()) < 1e-5 and abs(standard.x_train.std() - 1) < 1e-5
    np.testing.assert_allclose(standard.x_test, (plain.x_test - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(standard.x_val, (plain.x_val - mean) / std, rtol=1e-5, atol=1e-5)


def test_standardize_each_pixel(data_dir):
    plain = load_dataset("mnist", data_dir)
    standard = load_dataset("mnist", data_dir, standardize="pixel")
    mean, std = plain.x_train.mean(axis=0), plain.x_train.std(axis=0)
    varies = std > 0  # the made-up digits leave some pixels at 0 in every training image
    assert varies.any() and not varies.all()
    np.testing.assert_allclose(standard.x_train.std(axis=0)[varies], 1, rtol=1e-4)
    np.testing.assert_allclose(standard.x_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(standard.x_test[:, varies], ((plain.x_test - mean)[:, varies] / std[varies]),
                               rtol=1e-5, atol=1e-5)
    assert np.isfinite(standard.x_test).all()


def test_unknown_standardize_is_refused(data_dir):
    with pytest.raises(DataError, match="standardize must be one of"):
        load_dataset("mnist", data_dir, standardize="channel")


def test_one_hot_labels(data_dir):
    dataset = load_dataset("mnist", data_dir, one_hot=True)
    assert dataset.y_train.shape == (90, 10) and dataset.y_test.shape == (30, 10)
    assert np.array_equal(dataset.y_test.argmax(axis=1), np.arange(30) % 10)
    assert np.all(dataset.y_val.sum(axis=1) == 1)


def test_notmnist_tarball_skips_broken_pngs_and_splits_test_fixed(data_dir, keras_cache, capsys):
    dataset = load_dataset("notmnist", data_dir)
    assert dataset.skipped == 2 and "skipped 2" in capsys.readouterr().out
    assert len(dataset.x_train) + len(dataset.x_val) + len(dataset.x_test) == 50
    assert len(dataset.x_test) == 5  # NOTMNIST_TEST_FRACTION of 50
    assert dataset.class_names == list("ABCDEFGHIJ") and dataset.x_train.shape[1:] == (28, 28, 1)
    other_seed = load_dataset("notmnist", data_dir, seed=7)
    np.testing.assert_array_equal(dataset.x_test, other_seed.x_test)
    assert not np.array_equal(dataset.x_val, other_seed.x_val)


def test_notmnist_is_decoded_once_then_read_from_the_cache(data_dir, keras_cache, monkeypatch):
    first = load_dataset("notmnist", data_dir)
    assert len(list(keras_cache.glob("notMNIST_small-*.npz"))) == 1
    monkeypatch.setattr(data, "_decode_notmnist", lambda source: pytest.fail("decoded again"))
    np.testing.assert_array_equal(load_dataset("notmnist", data_dir).x_train, first.x_train)


def test_a_damaged_cache_is_rebuilt(data_dir, keras_cache):
    first = load_dataset("notmnist", data_dir)
    [cache] = keras_cache.glob("notMNIST_small-*.npz")
    cache.write_bytes(cache.read_bytes()[:100])
    np.testing.assert_array_equal(load_dataset("notmnist", data_dir).x_test, first.x_test)
    with np.load(cache) as saved:
        assert len(saved["images"]) == 50


@pytest.mark.parametrize("damage", [
    lambda saved: {**saved, "labels": saved["labels"][:-1]},
    lambda saved: {**saved, "labels": saved["labels"] + 10},
    lambda saved: {**saved, "images": saved["images"][:, :, :27]},
    lambda saved: {**saved, "images": saved["images"].astype(np.float32)},
    lambda saved: {**saved, "fingerprint": np.array("0123456789abcdef")},
    lambda saved: {**saved, "skipped_unreadable": np.array(-1)},
    lambda saved: {key: array for key, array in saved.items() if key != "skipped_size"},
], ids=["fewer-labels-than-images", "labels-past-9", "images-28x27", "float-images", "other-source",
        "negative-count", "older-layout"])
def test_an_inconsistent_cache_is_rebuilt(data_dir, keras_cache, damage):
    first = load_dataset("notmnist", data_dir)
    [cache] = keras_cache.glob("notMNIST_small-*.npz")
    with np.load(cache) as saved:
        good = dict(saved)
    np.savez(cache, **damage(good))
    again = load_dataset("notmnist", data_dir)
    np.testing.assert_array_equal(again.x_test, first.x_test)
    np.testing.assert_array_equal(again.y_train, first.y_train)
    assert again.skipped == 2
    with np.load(cache) as saved:  # and the cache is fixed
        assert set(saved) == set(good)
        assert all(saved[key].dtype == good[key].dtype and np.array_equal(saved[key], good[key]) for key in good)


def test_notmnist_from_an_extracted_tree(tmp_path, keras_cache):
    tree = make_notmnist_tree(tmp_path / "notMNIST_small")
    (tree / "C" / "empty.png").write_bytes(b"")
    dataset = load_dataset("notmnist", tmp_path)
    assert len(dataset.x_train) + len(dataset.x_val) + len(dataset.x_test) == 30
    assert dataset.skipped == 1


def all_splits(dataset):
    return (np.concatenate([dataset.x_train, dataset.x_val, dataset.x_test]),
            np.concatenate([dataset.y_train, dataset.y_val, dataset.y_test]))


def test_notmnist_classes_are_exactly_the_letter_folders_and_every_skip_is_counted(
        tmp_path, keras_cache, monkeypatch, capsys):
    stray = png_bytes(np.zeros((28, 28), np.uint8))  # a good glyph, all black, in the wrong place
    tarball = make_notmnist_tar(tmp_path / "notMNIST_small.tar.gz", broken=False, extra={
        "../A/stray.png": stray, "/abs/A/stray.png": stray, "notMNIST_small/../notMNIST_small/A/stray.png": stray,
        "stray.png": stray, "notMNIST_small/stray.png": stray, "A/stray.png": stray,
        "notMNIST_small/IJ/stray.png": stray, "notMNIST_small/ABCDEFGHIJ/stray.png": stray,
        "notMNIST_small/K/stray.png": stray, "notMNIST_small/A/deeper/stray.png": stray,
        "notMNIST_small/A/notes.txt": b"hello",
        "notMNIST_small/B/empty.png": b"", "notMNIST_small/C/link.png": "glyph0.png",
        "notMNIST_small/D/big.png": png_bytes(np.zeros((30, 30), np.uint8))})
    summary = (f"notMNIST: skipped 14 of the files in {tarball} (names with '..' or an absolute path: 3; "
               f"outside notMNIST_small/A-J/: 7; not named *.png: 1; unreadable PNGs: 2; "
               f"PNGs that are not 28x28: 1).\n")
    dataset = load_dataset("notmnist", tmp_path)
    images, labels = all_splits(dataset)
    assert np.bincount(labels).tolist() == [5] * 10  # the five glyphs of each letter folder, no more
    assert images.max(axis=(1, 2, 3)).min() > 0  # and no black stray among them
    assert dataset.skipped == 14 and capsys.readouterr().out == summary
    monkeypatch.setattr(data, "_decode_notmnist", lambda source: pytest.fail("decoded again"))
    assert load_dataset("notmnist", tmp_path).skipped == 14  # the cache keeps the counts...
    assert capsys.readouterr().out == summary  # ...and their reasons


def test_notmnist_tree_counts_stray_files_and_broken_links(tmp_path, keras_cache, capsys):
    tree = make_notmnist_tree(tmp_path / "notMNIST_small")
    (tree / "K").mkdir()
    (tree / "A" / "deeper").mkdir()
    for stray in (tree / "stray.png", tree / "K" / "stray.png", tree / "A" / "deeper" / "stray.png"):
        stray.write_bytes(png_bytes(np.full((28, 28), 99, np.uint8)))
    (tree / "A" / ".DS_Store").write_bytes(b"Bud1")
    (tree / "A" / "gone.png").symlink_to(tree / "nowhere.png")  # can't be read, like a PNG without permission
    dataset = load_dataset("notmnist", tmp_path)
    images, labels = all_splits(dataset)
    assert np.bincount(labels).tolist() == [3] * 10 and not np.any(np.isclose(images, 99 / 255))
    assert dataset.skipped == 5 and capsys.readouterr().out == (
        f"notMNIST: skipped 5 of the files in {tree} (outside notMNIST_small/A-J/: 3; "
        f"not named *.png: 1; unreadable PNGs: 1).\n")


@needs_permissions
def test_notmnist_tree_skips_a_png_it_may_not_read(tmp_path, keras_cache, capsys):
    tree = make_notmnist_tree(tmp_path / "notMNIST_small")
    (tree / "E" / "1.png").chmod(0)
    dataset = load_dataset("notmnist", tmp_path)
    assert dataset.skipped == 1 and "(unreadable PNGs: 1)" in capsys.readouterr().out


@needs_permissions
def test_notmnist_tree_with_a_folder_it_may_not_read(tmp_path, keras_cache):
    tree = make_notmnist_tree(tmp_path / "notMNIST_small")
    (tree / "B").chmod(0)
    with pytest.raises(DataError, match=f"^{re.escape(str(tree / 'B'))} cannot be read: Permission denied"):
        load_dataset("notmnist", tmp_path)
    assert list(keras_cache.iterdir()) == []


@needs_permissions
def test_unreadable_tarball_is_not_called_corrupted(data_dir, keras_cache):
    path = data_dir / "notMNIST_small.tar.gz"
    path.chmod(0)
    with pytest.raises(DataError, match=f"^{re.escape(str(path))} cannot be read: Permission denied"):
        load_dataset("notmnist", data_dir)
    assert list(keras_cache.iterdir()) == []


def test_decompression_bombs_are_skipped_as_unreadable(tmp_path, keras_cache, monkeypatch, capsys):
    from PIL import Image
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 28 * 28)  # so that small PNGs can stand for bombs
    make_notmnist_tar(tmp_path / "notMNIST_small.tar.gz", broken=False, extra={
        "notMNIST_small/A/bomb.png": png_bytes(np.zeros((40, 40), np.uint8)),  # over twice the limit: PIL refuses
        "notMNIST_small/B/nearly.png": png_bytes(np.zeros((30, 30), np.uint8))})  # over the limit: PIL warns
    dataset = load_dataset("notmnist", tmp_path)
    assert dataset.skipped == 2 and "(unreadable PNGs: 2)" in capsys.readouterr().out


def test_notmnist_download_goes_through_keras_get_file(tmp_path, keras_cache, monkeypatch):
    tarball = make_notmnist_tar(tmp_path / "downloaded.tar.gz", broken=False)
    calls = []
    monkeypatch.setattr(keras.utils, "get_file", lambda *args, **kwargs: calls.append(args) or str(tarball))
    dataset = load_dataset("notmnist")
    assert calls and calls[0][1] == data.NOTMNIST_URL and dataset.skipped == 0


def gz_hashes(folder):
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in folder.glob("*.gz")}


def test_fashion_from_the_keras_cache(keras_cache, monkeypatch):
    make_idx_folder(keras_cache / "fashion-mnist", n_train=20, n_test=10)
    monkeypatch.setattr(data, "FASHION_GZ_SHA256", gz_hashes(keras_cache / "fashion-mnist"))
    dataset = load_dataset("fashion")  # no data directory: Keras finds its cached, verified files
    assert len(dataset.x_test) == 10 and dataset.source == "the Keras cache"


def test_fashion_download_is_checksum_verified_and_a_bad_cache_refetched(tmp_path, keras_cache, monkeypatch):
    make_idx_folder(tmp_path / "server", n_train=20, n_test=10)
    monkeypatch.setattr(data, "FASHION_GZ_SHA256", gz_hashes(tmp_path / "server"))
    fetched = []

    def download(url, target, progress=None):  # stands in for the network
        fetched.append(os.path.basename(target))
        shutil.copy(tmp_path / "server" / os.path.basename(url), target)
    monkeypatch.setattr(keras.src.utils.file_utils, "urlretrieve", download)
    assert len(load_dataset("fashion").x_test) == 10 and len(fetched) == 4
    cached = keras_cache / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz"
    cached.write_bytes(cached.read_bytes()[:-3] + b"bad")  # damage the cache
    assert len(load_dataset("fashion").x_test) == 10  # detected by its hash, fetched again
    assert fetched[4:] == ["t10k-labels-idx1-ubyte.gz"]
    good = (tmp_path / "server" / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (tmp_path / "server" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"tampered")
    cached.unlink()
    with pytest.raises(DataError, match="Could not load fashion.*hash does not match"):
        load_dataset("fashion")  # a bad download is refused...
    (tmp_path / "server" / "t10k-labels-idx1-ubyte.gz").write_bytes(good)
    assert len(load_dataset("fashion").x_test) == 10  # ...and replaced by the next good one
    assert fetched[-2:] == ["t10k-labels-idx1-ubyte.gz"] * 2


# --- Bad input: a clear message, never a traceback, never a partial file -----------------

def offline(*args, **kwargs):
    raise Exception("URL fetch failure: no network")


def test_unknown_dataset():
    with pytest.raises(DataError, match="Unknown dataset 'cifar'.*mnist, fashion, notmnist"):
        load_dataset("cifar")


def test_missing_data_directory():
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("mnist", "/no/such/folder")


def test_data_directory_that_is_a_file(tmp_path):
    (tmp_path / "datasets").write_text("not a folder")
    with pytest.raises(DataError, match=f"data directory {tmp_path / 'datasets'} is not a folder"):
        load_dataset("mnist", tmp_path / "datasets")


@needs_permissions
def test_unreadable_data_directory(data_dir):
    data_dir.chmod(0)
    with pytest.raises(DataError, match=f"^{re.escape(str(data_dir))} cannot be read: Permission denied"):
        load_dataset("mnist", data_dir)


@needs_permissions
def test_unreadable_idx_file_is_not_called_corrupted(data_dir):
    path = data_dir / "mnist" / "train-labels-idx1-ubyte.gz"
    path.chmod(0)
    with pytest.raises(DataError, match=f"^{re.escape(str(path))} cannot be read: Permission denied"):
        load_dataset("mnist", data_dir)


def test_idx_file_that_is_a_folder(data_dir):  # the same path as a permission error, testable as root
    path = data_dir / "mnist" / "train-labels-idx1-ubyte.gz"
    path.unlink()
    path.mkdir()
    with pytest.raises(DataError, match=f"^{re.escape(str(path))} cannot be read: Is a directory"):
        load_dataset("mnist", data_dir)


@pytest.mark.parametrize("name, module", [("mnist", "mnist"), ("fashion", "fashion_mnist")])
def test_missing_files_offline_say_where_we_looked(tmp_path, monkeypatch, name, module):
    monkeypatch.setattr(getattr(keras.datasets, module), "load_data", offline)
    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(DataError) as error:
        load_dataset(name, tmp_path)
    message = str(error.value)
    assert str(tmp_path / data.FOLDERS[name]) in message and "Keras cache" in message
    assert "no network" in message and "--data-dir" in message


def test_notmnist_missing_offline(tmp_path, keras_cache, monkeypatch):
    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(DataError, match="notMNIST_small.tar.gz.*--data-dir"):
        load_dataset("notmnist", tmp_path)


def test_truncated_gz_is_named(data_dir):
    path = data_dir / "mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataError, match=f"{path}.*truncated or corrupted"):
        load_dataset("mnist", data_dir)


def test_flipped_byte_fails_the_gzip_checksum(data_dir):
    path = data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(path.read_bytes())
    raw[-9] ^= 0xFF  # inside the CRC-32 that guards the payload
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="t10k-labels.*truncated or corrupted"):
        load_dataset("mnist", data_dir)


def test_flipped_byte_in_the_data_fails_the_published_hash(data_dir, monkeypatch):
    path = data_dir / "mnist" / "train-images-idx3-ubyte.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[16 + 5000] ^= 0x01  # one pixel, recompressed so that gzip's own CRC is fine
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match=f"{path} is not the published file: the SHA-256 of its data"):
        load_dataset("mnist", data_dir)


def test_the_real_files_have_the_published_hashes():
    """The pinned hashes are those of the upstream files in the shared folder (when present)."""
    from conftest import SHARED_DATA
    if not (SHARED_DATA / "mnist").exists():
        pytest.skip(f"no real data in {SHARED_DATA}")
    for name, folder in data.FOLDERS.items():
        for key, fname in data.IDX_FILES.items():
            content = data.read_idx(SHARED_DATA / folder / fname).tobytes()
            assert hashlib.sha256(content).hexdigest() == data.IDX_SHA256[name][key]
        if name == "fashion":
            assert gz_hashes(SHARED_DATA / folder) == data.FASHION_GZ_SHA256


def test_wrong_magic_number(data_dir):
    write_idx(data_dir / "mnist" / "t10k-images-idx3-ubyte.gz", np.zeros((30, 28, 28)), magic=2052)
    with pytest.raises(DataError, match="t10k-images.*magic number is 2052"):
        load_dataset("mnist", data_dir)


def test_wrong_image_dimensions(data_dir):
    write_idx(data_dir / "mnist" / "train-images-idx3-ubyte.gz", np.zeros((100, 28, 27)))
    with pytest.raises(DataError, match=r"train images .* shape \(100, 28, 27\)"):
        load_dataset("mnist", data_dir)


def test_size_in_header_disagrees_with_data(data_dir):
    path = data_dir / "mnist" / "train-labels-idx1-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-5]))
    with pytest.raises(DataError, match=r"declares shape \(100,\) but holds 95 bytes"):
        load_dataset("mnist", data_dir)


def test_label_count_and_range_are_checked(data_dir):
    write_idx(data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz", np.full(30, 12))
    with pytest.raises(DataError, match="test labels .* go up to 12"):
        load_dataset("mnist", data_dir)
    write_idx(data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz", np.zeros(29))
    with pytest.raises(DataError, match=r"test labels .* expected \(30,\)"):
        load_dataset("mnist", data_dir)


def test_truncated_tarball_leaves_no_cache(data_dir, keras_cache):
    path = data_dir / "notMNIST_small.tar.gz"
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    with pytest.raises(DataError, match="notMNIST_small.tar.gz is truncated or corrupted"):
        load_dataset("notmnist", data_dir)
    assert list(keras_cache.iterdir()) == []


def test_tarball_without_letter_folders(tmp_path, keras_cache):
    with tarfile.open(tmp_path / "notMNIST_small.tar.gz", "w:gz") as archive:
        archive.add(__file__, arcname="notMNIST_small/readme.txt")
    with pytest.raises(DataError, match="does not look like notMNIST_small: no readable PNG for A, B"):
        load_dataset("notmnist", tmp_path)
    assert list(keras_cache.iterdir()) == []


def test_tarball_with_a_non_png_entry(tmp_path, keras_cache):
    make_notmnist_tar(tmp_path / "notMNIST_small.tar.gz", broken=False,
                      extra={"notMNIST_small/B/notes.txt": b"hello"})
    dataset = load_dataset("notmnist", tmp_path)
    assert dataset.skipped == 1 and len(dataset.x_train) + len(dataset.x_val) + len(dataset.x_test) == 50


def test_two_processes_filling_the_cache_at_once(data_dir, keras_cache):
    code = ("import sys; sys.path.insert(0, {root!r}); import data; "
            "d = data.load_dataset('notmnist', {dir!r}); print(len(d.x_train))")
    command = [sys.executable, "-c", code.format(root=str(ROOT), dir=str(data_dir))]
    env = {**os.environ, "KERAS_HOME": str(keras_cache.parent)}
    runs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    [cache] = keras_cache.glob("notMNIST_small-*.npz")  # one valid cache, no leftovers
    assert sorted(p.name for p in keras_cache.iterdir() if not p.name.startswith(".")) == [cache.name]
    with np.load(cache) as saved:
        assert saved["images"].shape == (50, 28, 28)


def test_invalid_validation_size(data_dir):
    with pytest.raises(DataError, match="validation_size"):
        load_dataset("mnist", data_dir, validation_size=1.5)


def test_unwritable_cache_still_loads(data_dir, keras_cache, monkeypatch):
    monkeypatch.setattr(data, "_cache_dir", lambda: data_dir / "not-a-folder" / "x")
    (data_dir / "not-a-folder").write_text("a file where a folder should be")
    with pytest.warns(UserWarning, match="Could not cache notMNIST"):
        dataset = load_dataset("notmnist", data_dir)
    assert dataset.skipped == 2
    assert not any(p.name.endswith(".partial") for p in data_dir.rglob("*"))
