"""Shared test helpers: tiny datasets in the upstream file formats, made on the fly."""
import gzip
import hashlib
import io
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest

# Keras reads KERAS_HOME when imported: give the tests their own, empty cache.
os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="keras-home-")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# pytest-xdist runs a test process per core: each one's TensorFlow (and the processes its tests
# start) computes on its share of the cores, instead of every process spreading over all of them.
if workers := os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    threads = str(max(1, (os.cpu_count() or 1) // int(workers)))
    for variable in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(variable, threads)
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import data  # noqa: E402
from data import IDX_FILES, LETTERS  # noqa: E402

SHARED_DATA = Path(os.environ.get("DATA_DIR", ROOT.parent / "shared" / "datasets"))
needs_data = pytest.mark.skipif(not (SHARED_DATA / "MANIFEST.md").exists(), reason=f"no real data in {SHARED_DATA}")
# A test that takes permissions away: root reads everything anyway (and Windows has no such bits).
needs_permissions = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                                       reason="root ignores file permissions")


def write_idx(path, array, magic=None):
    """Write `array` (uint8) as a gzip-compressed IDX file, as MNIST ships them; return its data's SHA-256."""
    magic = magic or (2051 if array.ndim == 3 else 2049)
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    payload = array.astype(np.uint8).tobytes()
    with gzip.open(path, "wb") as file:
        file.write(header + payload)
    return hashlib.sha256(payload).hexdigest()


def numbered_images(count, offset=0):
    """Images whose two first pixels spell their index, so a test can tell them apart."""
    images = np.random.default_rng(offset).integers(0, 256, (count, 28, 28), dtype=np.uint8)
    index = np.arange(offset, offset + count)
    images[:, 0, 0], images[:, 0, 1] = index // 256, index % 256
    return images


def make_idx_folder(folder, n_train=100, n_test=30):
    """Four tiny IDX files; returns the SHA-256 of each one's data, keyed like data.IDX_FILES."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"x_train": numbered_images(n_train), "y_train": np.arange(n_train) % 10,
              "x_test": numbered_images(n_test, offset=1000), "y_test": np.arange(n_test) % 10}
    return {key: write_idx(folder / fname, arrays[key]) for key, fname in IDX_FILES.items()}


def png_bytes(image):
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def tensorboard_scalars(folder):
    """{tag: [value per step]} from the TensorBoard event files in `folder`, read by TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [float(make_ndarray(event.tensor_proto)) for event in events.Tensors(tag)]
            for tag in events.Tags()["tensors"]}


def make_notmnist_tar(path, per_letter=5, broken=True, extra=None):
    """A small notMNIST_small.tar.gz; with `broken`, a zero-byte and a garbage PNG, as upstream.

    `extra` adds members by their whole name: {name: bytes}, or {name: "target"} for a symbolic link.
    """
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as archive:
        def add(name, content):
            info = tarfile.TarInfo(name)
            if isinstance(content, str):
                info.type, info.linkname, content = tarfile.SYMTYPE, content, b""
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
        for label, letter in enumerate(LETTERS):
            for i in range(per_letter):
                add(f"notMNIST_small/{letter}/glyph{i}.png", png_bytes(rng.integers(0, 256, (28, 28), dtype=np.uint8)))
        if broken:
            add("notMNIST_small/A/empty.png", b"")
            add("notMNIST_small/F/garbage.png", b"\x89PNG not really")
        for name, content in (extra or {}).items():
            add(name, content)
    return path


def make_notmnist_tree(folder, per_letter=3):
    """An extracted notMNIST_small/ tree: `per_letter` PNGs in each of A/ ... J/, the i-th all of 10 * i."""
    for letter in LETTERS:
        (folder / letter).mkdir(parents=True)
        for i in range(per_letter):
            (folder / letter / f"{i}.png").write_bytes(png_bytes(np.full((28, 28), 10 * i, np.uint8)))
    return folder


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A data directory laid out like ../shared/datasets, with tiny files that data.py trusts."""
    monkeypatch.setattr(data, "IDX_SHA256", {"mnist": make_idx_folder(tmp_path / "mnist"),
                                             "fashion": make_idx_folder(tmp_path / "fashion-mnist")})
    make_notmnist_tar(tmp_path / "notMNIST_small.tar.gz")
    return tmp_path


@pytest.fixture
def keras_cache():
    """The (emptied) Keras cache folder the tests use."""
    folder = Path(os.environ["KERAS_HOME"]) / "datasets"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture(autouse=True)
def no_data_dir_from_environment(monkeypatch):
    """Tests say where their data is; DATA_DIR from the caller must not leak in."""
    monkeypatch.delenv("DATA_DIR", raising=False)


def pytest_configure(config):
    # Keras's TensorFlow backend trips a NumPy 2 deprecation inside Keras itself; not ours to fix.
    config.addinivalue_line("filterwarnings", "ignore:__array__ implementation doesn't accept a copy keyword")
    # The README's test command leaves these out (-m "not slow"), to stay within minutes; CI runs them too.
    config.addinivalue_line("markers", "slow: every experiment step's --quick run and the speed benchmark's --tiny runs")


# The longest tests (each starts processes or trains several models), run first: started last,
# one of them would keep one core busy while the other, done with the short tests, waits.
LONGEST_FIRST = ("test_a_distributed_search_survives", "test_killed_runs_resume",
                 "test_plots_for_each_step", "test_the_speed_benchmark_times_", "test_end_to_end_on_real_data",
                 "test_tensorflow_mirrored_strategy", "test_jax_data_parallel", "test_batch_norm_models_score")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: not item.name.startswith(LONGEST_FIRST))  # a stable sort: otherwise in order
