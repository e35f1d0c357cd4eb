"""Load MNIST, Fashion-MNIST and notMNIST_small as arrays ready for Keras.

    dataset = load_dataset("mnist", data_dir="../shared/datasets")
    dataset.x_train.shape   # (54000, 28, 28, 1), float32 in [0, 1]

Where the files come from, in this order:
  1. a data directory (`data_dir`, or the DATA_DIR environment variable) with the
     upstream files: mnist/*.gz, fashion-mnist/*.gz (the four IDX files each), and
     notMNIST_small.tar.gz or an extracted notMNIST_small/A..J/*.png tree;
  2. the Keras cache (~/.keras/datasets, or $KERAS_HOME/datasets);
  3. a download, through Keras's own checksum-verifying `get_file`.

The validation split is always carved from the training data: the test set is
never used for early stopping, model choice or tuning (the tutorials' golden rule).
notMNIST_small has no official test set, so a fixed 10% of it (the same for every
run and every `seed`) is held out as one. Its images are the 28x28 PNGs in a folder named
exactly A ... J inside notMNIST_small/; every other file (elsewhere, not a 28x28 PNG, unreadable,
a name with '..' or an absolute path) is left out, and one line says how many, and why.
"""
import contextlib
import gzip
import hashlib
import io
import os
import tarfile
import tempfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: no lock, so don't start two first downloads at once there
    fcntl = None

IDX_FILES = {  # the four upstream file names, as in mnist/ and fashion-mnist/
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # IDX headers: uint8 data, 3 or 1 dimensions
# SHA-256 of each file's pixels or labels (the IDX data after its header), taken from
# the upstream files (whose published md5s they match). Hashing the data rather than
# the .gz accepts honest re-compressions (Debian's, say) and still catches a flipped byte.
IDX_SHA256 = {
    "mnist": {
        "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
        "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
        "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
        "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
    },
    "fashion": {
        "x_train": "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
        "y_train": "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
        "x_test": "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
        "y_test": "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
    },
}
# Fashion-MNIST's published SHA-256 of the .gz files. Keras's loader checks none, so we
# fetch them through get_file with these first (MNIST's loader checks its own file).
FASHION_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
FASHION_GZ_SHA256 = {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}
IMAGE_SIZE = 28
STANDARDIZE = (False, True, "pixel")  # load_dataset's choices: not at all, over the image, per pixel
LETTERS = "ABCDEFGHIJ"
NOTMNIST_URL = "http://yaroslavvb.com/upload/notMNIST/notMNIST_small.tar.gz"
NOTMNIST_TEST_FRACTION = 0.1
NOTMNIST_SPLIT_SEED = 20110908  # fixed forever, so the notMNIST test set never changes
SKIP_REASONS = {  # why a file of notMNIST_small is left out, as the summary line says it
    "unsafe": "names with '..' or an absolute path",
    "folder": "outside notMNIST_small/A-J/",
    "not_png": "not named *.png",
    "unreadable": "unreadable PNGs",
    "size": "PNGs that are not 28x28",
}

CLASS_NAMES = {
    "mnist": [str(digit) for digit in range(10)],
    "fashion": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    "notmnist": list(LETTERS),
}
FOLDERS = {"mnist": "mnist", "fashion": "fashion-mnist"}


class DataError(Exception):
    """A dataset could not be loaded; the message says why and what to do."""


def _cannot_read(path, error):
    """The DataError for a file or folder that the system refuses to read, with its reason."""
    return DataError(f"{path} cannot be read: {error.strerror}.")


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list
    source: str  # where the files were read from
    skipped: int = 0  # files of the source left out (notMNIST): misplaced, not PNGs, unreadable

    @property
    def input_shape(self):
        return self.x_train.shape[1:]

    @property
    def num_classes(self):
        return len(self.class_names)

    def fingerprint(self):
        """A hash of every split's images and labels and of the class names: equal data, equal hash."""
        digest = hashlib.sha256(repr((self.name, self.class_names)).encode())
        for array in (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test):
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).data)
        return digest.hexdigest()


def load_dataset(name, data_dir=None, validation_size=0.1, seed=0,
                 standardize=False, one_hot=False, limit=None, validation_first=False):
    """Load a dataset, split off a validation set and scale the pixels.

    validation_size: fraction of the training images held out for validation.
    seed: picks which training images go to validation.
    standardize: subtract the training split's mean and divide by its std
        (SELU and "Beating MNIST" want this) instead of scaling to [0, 1].
        True: one mean and std over all pixels; "pixel": one per pixel position, as the
        Geron notebook does (a pixel that never varies is only centred).
    one_hot: one-hot labels (for MSE losses) instead of integers.
    limit: keep only the first `limit` training and test images (quick checks).
    validation_first: hold out the first training images rather than a seeded random
        choice, as the Géron notebook does (X_train_full[:5000]); `seed` then picks nothing.
    """
    if name not in CLASS_NAMES:
        raise DataError(f"Unknown dataset {name!r}: choose one of {', '.join(CLASS_NAMES)}.")
    if not 0 < validation_size < 1:
        raise DataError(f"validation_size must be a fraction between 0 and 1, got {validation_size}.")
    if standardize not in STANDARDIZE:
        raise DataError(f"standardize must be one of {', '.join(map(repr, STANDARDIZE))}, got {standardize!r}.")
    data_dir = data_dir or os.environ.get("DATA_DIR")
    if data_dir:
        try:
            os.listdir(data_dir)  # fails here, with a reason, rather than as "file not found" later
        except FileNotFoundError:
            raise DataError(f"The data directory {data_dir} does not exist (from --data-dir or DATA_DIR).") from None
        except NotADirectoryError:
            raise DataError(f"The data directory {data_dir} is not a folder (from --data-dir or DATA_DIR).") from None
        except OSError as error:
            raise _cannot_read(data_dir, error) from None

    if name == "notmnist":
        (x_train, y_train), (x_test, y_test), source, skipped = _load_notmnist(data_dir)
    else:
        (x_train, y_train), (x_test, y_test), source = _load_idx_dataset(name, data_dir)
        skipped = 0
    if limit:
        x_train, y_train, x_test, y_test = x_train[:limit], y_train[:limit], x_test[:limit], y_test[:limit]

    order = np.arange(len(x_train)) if validation_first else np.random.default_rng(seed).permutation(len(x_train))
    n_val = max(1, round(validation_size * len(x_train)))
    val, train = order[:n_val], order[n_val:]

    x_train, x_val, x_test = (x[..., None].astype("float32") / 255 for x in (x_train[train], x_train[val], x_test))
    if standardize:
        axis = 0 if standardize == "pixel" else None
        mean, std = x_train.mean(axis=axis), x_train.std(axis=axis)
        std = np.where(std > 0, std, 1)  # MNIST's corners are 0 in every image
        x_train, x_val, x_test = ((x - mean) / std for x in (x_train, x_val, x_test))
    y_train, y_val = y_train[train], y_train[val]
    if one_hot:
        y_train, y_val, y_test = (np.eye(10, dtype="float32")[y] for y in (y_train, y_val, y_test))
    return Dataset(name, x_train, y_train, x_val, y_val, x_test, y_test,
                   CLASS_NAMES[name], source, skipped)


def rotated(images, angles):
    """Each image (height, width, channels) turned by its angle: degrees, counter-clockwise, about
    its centre, with skimage (what the NTU lecture used); corners that come in are 0 (black)."""
    from skimage.transform import rotate
    return np.stack([rotate(image, angle) for image, angle in zip(images, angles)]).astype(images.dtype)


# --- MNIST and Fashion-MNIST: four IDX files each -------------------------------------

def _load_idx_dataset(name, data_dir):
    looked = []
    if data_dir:
        folder = Path(data_dir) / FOLDERS[name]
        paths = {key: folder / fname for key, fname in IDX_FILES.items()}
        if all(path.exists() for path in paths.values()):
            arrays = {key: read_idx(path) for key, path in paths.items()}
            checked = _checked(arrays, folder)
            for key, path in paths.items():
                if hashlib.sha256(arrays[key].tobytes()).hexdigest() != IDX_SHA256[name][key]:
                    raise DataError(f"{path} is not the published file: the SHA-256 of its data differs "
                                    f"from {IDX_SHA256[name][key]}. It may be corrupted; replace it "
                                    f"with a fresh copy of the upstream file.")
            return (*checked, str(folder))
        looked.append(f"{folder}/ (needs {', '.join(IDX_FILES.values())})")

    # The Keras cache, then a download: Keras's own loaders do both.
    import keras
    loader = {"mnist": keras.datasets.mnist, "fashion": keras.datasets.fashion_mnist}[name]
    try:
        with _download_lock():  # two runs on one fresh cache: the second waits, then reads
            if name == "fashion":  # a bad file in the cache fails its hash and is fetched again
                for fname, sha256 in FASHION_GZ_SHA256.items():
                    keras.utils.get_file(fname, FASHION_URL + fname, file_hash=sha256,
                                         cache_subdir=os.path.join("datasets", "fashion-mnist"))
            (x_train, y_train), (x_test, y_test) = loader.load_data()
    except Exception as error:  # no network, a refused download, a bad checksum
        looked.append(f"the Keras cache and download ({error})")
        raise DataError(
            f"Could not load {name}. Looked in: {'; '.join(looked)}. "
            f"On a machine without internet, copy the four upstream files into "
            f"DIR/{FOLDERS[name]}/ and pass --data-dir DIR (or set DATA_DIR=DIR)."
        ) from None
    arrays = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return (*_checked(arrays, "the Keras cache"), "the Keras cache")


def read_idx(path):
    """Read one gzip-compressed IDX file (the MNIST format) into a uint8 array."""
    try:
        with open(path, "rb") as file:
            compressed = file.read()
    except OSError as error:  # no permission, a folder in its place: the file is not at fault
        raise _cannot_read(path, error) from None
    try:
        raw = gzip.decompress(compressed)
    except (OSError, EOFError, zlib.error) as error:  # truncated, bad CRC, not gzip at all
        raise DataError(f"{path} is truncated or corrupted ({error}). "
                        f"Replace it with a fresh copy of the upstream file.") from None
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic not in (IMAGES_MAGIC, LABELS_MAGIC):
        raise DataError(f"{path} is not an IDX file of unsigned bytes: its magic number is "
                        f"{magic}, expected {IMAGES_MAGIC} (images) or {LABELS_MAGIC} (labels).")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(shape)):
        raise DataError(f"{path} declares shape {shape} but holds {len(raw) - header} bytes of data.")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _checked(arrays, where):
    """Refuse arrays that are not 28x28 images with matching labels 0-9."""
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise DataError(f"The {split} images in {where} have shape {x.shape}, expected (N, 28, 28).")
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"The {split} labels in {where} have shape {y.shape}, expected ({len(x)},).")
        if len(y) and y.max() > 9:
            raise DataError(f"The {split} labels in {where} go up to {y.max()}, expected 0-9.")
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


# --- notMNIST_small: a tree of PNG files, decoded once and cached ----------------------

def _load_notmnist(data_dir):
    source = _find_notmnist(data_dir)
    fingerprint = _fingerprint(source)
    cache = _cache_dir() / f"notMNIST_small-{fingerprint}.npz"
    cached = _read_cache(cache, fingerprint)
    if cached is None:  # missing, damaged or inconsistent: rebuild it from the source
        images, labels, skipped = _decode_notmnist(source)
        _save_atomically(cache, images=images, labels=labels, fingerprint=fingerprint,
                         **{f"skipped_{reason}": count for reason, count in skipped.items()})
    else:
        images, labels, skipped = cached
    total_skipped = sum(skipped.values())
    if total_skipped:
        reasons = "; ".join(f"{SKIP_REASONS[reason]}: {count}" for reason, count in skipped.items() if count)
        print(f"notMNIST: skipped {total_skipped} of the files in {source} ({reasons}).")

    order = np.random.default_rng(NOTMNIST_SPLIT_SEED).permutation(len(images))
    n_test = round(NOTMNIST_TEST_FRACTION * len(images))
    test, train = order[:n_test], order[n_test:]
    return (images[train], labels[train]), (images[test], labels[test]), str(source), total_skipped


def _read_cache(cache, fingerprint):
    """The cached (images, labels, skipped), or None if the cache is missing or fails a check."""
    try:
        with np.load(cache) as saved:
            images, labels, built_from = saved["images"], saved["labels"], str(saved["fingerprint"])
            skipped = {reason: int(saved[f"skipped_{reason}"]) for reason in SKIP_REASONS}
    except Exception:  # missing, truncated, not an npz, or written by an older version
        return None
    consistent = (built_from == fingerprint
                  and images.dtype == np.uint8 and images.shape[1:] == (IMAGE_SIZE, IMAGE_SIZE)
                  and labels.dtype == np.uint8 and labels.shape == images.shape[:1]
                  and np.array_equal(np.unique(labels), np.arange(10))  # 0-9, each letter present
                  and min(skipped.values()) >= 0)
    return (images, labels, skipped) if consistent else None


def _find_notmnist(data_dir):
    looked = []
    if data_dir:
        for candidate in (Path(data_dir) / "notMNIST_small.tar.gz", Path(data_dir) / "notMNIST_small"):
            if candidate.exists():
                return candidate
        looked.append(f"{data_dir}/notMNIST_small.tar.gz and {data_dir}/notMNIST_small/")
    import keras
    try:  # the Keras cache first, then a download; upstream publishes no checksum
        with _download_lock():
            return Path(keras.utils.get_file("notMNIST_small.tar.gz", NOTMNIST_URL))
    except Exception as error:
        looked.append(f"the Keras cache and download ({error})")
        raise DataError(
            f"Could not load notmnist. Looked in: {'; '.join(looked)}. "
            f"On a machine without internet, put notMNIST_small.tar.gz (or its extracted "
            f"notMNIST_small/ folder) in DIR and pass --data-dir DIR (or set DATA_DIR=DIR)."
        ) from None


def _decode_notmnist(source):
    """Decode every notMNIST_small/<letter>/*.png; skip every other file and count it by reason.

    A PNG's class is its folder's name, exactly one of A-J, directly inside notMNIST_small/.
    A member whose name holds '..' or is absolute is never given a class: it is skipped and
    counted as unsafe, and the rest of the archive is still used.
    """
    from PIL import Image

    found = {}  # member name -> (image, label), sorted later so order never depends on the tar
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    with warnings.catch_warnings():
        # PIL only warns about a PNG a little under its size limit: refuse those as bombs too
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        for name, label, content in _png_files(source, skipped):
            try:
                image = Image.open(io.BytesIO(content))  # reads the header only
                if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                    skipped["size"] += 1
                    continue
                found[name] = (np.asarray(image.convert("L")), label)
            except (OSError, SyntaxError, ValueError,  # empty, garbage, truncated
                    Image.DecompressionBombError, Image.DecompressionBombWarning):
                skipped["unreadable"] += 1

    present = {label for _, label in found.values()}
    missing = [letter for label, letter in enumerate(LETTERS) if label not in present]
    if missing:
        raise DataError(f"{source} does not look like notMNIST_small: no readable PNG for "
                        f"{', '.join(missing)} (expected notMNIST_small/A/*.png ... J/*.png).")
    names = sorted(found)
    images = np.stack([found[name][0] for name in names])
    labels = np.array([found[name][1] for name in names], dtype=np.uint8)
    return images, labels, skipped


def _png_files(source, skipped):
    """Yield (name, label, bytes) for each PNG of a letter folder in the archive or tree.

    Every other file is counted in `skipped` by its reason, and so is a link in the archive
    or a PNG of the tree that cannot be read.
    """
    if source.is_dir():
        for relative in _tree_files(source):
            name = f"{source.name}/{relative}"  # as in the archive: notMNIST_small/A/x.png
            label = _label(name, skipped)
            if label is None:
                continue
            try:
                content = (source / relative).read_bytes()
            except OSError:  # no permission, a broken link: skipped like a broken PNG
                skipped["unreadable"] += 1
                continue
            yield name, label, content
        return
    try:
        with tarfile.open(source, "r:gz") as archive:
            for member in archive:
                if member.isdir():  # folders only hold the files
                    continue
                label = _label(member.name, skipped)
                if label is None:
                    continue
                if not member.isfile():  # a link or a device where a PNG should be
                    skipped["unreadable"] += 1
                    continue
                yield member.name, label, archive.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise DataError(f"{source} is truncated or corrupted ({error}). "
                        f"Replace it with a fresh copy of notMNIST_small.tar.gz.") from None


def _label(name, skipped):
    """The class of the file `name`, from notMNIST_small/<letter>/<file>.png; if it has none,
    None, and the reason is counted in `skipped`."""
    path, letters = PurePosixPath(name), CLASS_NAMES["notmnist"]  # whole names: "IJ" is no letter
    if path.is_absolute() or ".." in path.parts:
        reason = "unsafe"
    elif len(path.parts) != 3 or path.parts[0] != "notMNIST_small" or path.parts[1] not in letters:
        reason = "folder"
    elif path.suffix.lower() != ".png":
        reason = "not_png"
    else:
        return letters.index(path.parts[1])
    skipped[reason] += 1
    return None


def _tree_files(source):
    """Every file under the extracted tree, as sorted paths relative to it (A/x.png)."""
    def refuse(error):  # a folder that cannot be listed hides an unknown number of PNGs
        raise _cannot_read(error.filename, error) from None
    return sorted((Path(folder) / name).relative_to(source).as_posix()
                  for folder, _, names in os.walk(source, onerror=refuse) for name in names)


def _fingerprint(source):
    """Identify the source's contents, so a changed source never reuses a stale cache."""
    digest = hashlib.sha256()
    if source.is_dir():
        for relative in _tree_files(source):
            path = source / relative
            # a broken link has no size or time; decoding counts it as unreadable
            stamp = f"{path.stat().st_size}:{path.stat().st_mtime_ns}" if path.exists() else "broken link"
            digest.update(f"{relative}:{stamp}\n".encode())
    else:
        try:
            with open(source, "rb") as file:
                for block in iter(lambda: file.read(1 << 20), b""):
                    digest.update(block)
        except OSError as error:  # no permission: the archive itself may be fine
            raise _cannot_read(source, error) from None
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _download_lock():
    """Hold a lock on the Keras cache, so concurrent runs download one at a time."""
    _cache_dir().mkdir(parents=True, exist_ok=True)
    with open(_cache_dir() / ".download.lock", "w") as lock:
        if fcntl:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        yield


def _cache_dir():
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


def _save_atomically(path, **arrays):
    """Write an .npz of `arrays` to `path`, whole or not at all; a disk that refuses only warns."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, "wb") as file:
            np.savez_compressed(file, **arrays)
    except OSError as error:  # a read-only or full disk: work without the cache
        warnings.warn(f"Could not cache notMNIST in {path.parent} ({error}); decoding again next time.")


@contextlib.contextmanager
def atomic_file(path, mode):
    """Open a temporary file beside `path`; rename it to `path` only if the block finishes.

    Readers never see half a file, and an error (even Ctrl-C) leaves nothing behind.
    """
    folder = os.path.dirname(os.path.abspath(path))
    file = tempfile.NamedTemporaryFile(mode, dir=folder, prefix=".", suffix=".partial", delete=False)
    try:
        with file:
            yield file
        os.chmod(file.name, 0o644)  # temporary files are private; results and caches are for sharing
        os.replace(file.name, path)
    finally:
        if os.path.exists(file.name):
            os.remove(file.name)
