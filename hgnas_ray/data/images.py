"""Read image files into uint8 arrays: ImageFolder directories and tarballs of them.

Layout (torchvision's ImageFolder): ``<root>/<class>/<image>``; class ids are the sorted class
folder names, and samples are ordered by (class, file name). Tarballs are streamed member by
member and decoded in memory, never extracted to disk; a member ``[task/][split/]class/file``
belongs to ``split`` when that folder is a known split name, else to ``"train"``.

Every image is converted to RGB (as torchvision's default loader does). A file that does not
decode raises ``DataError`` naming it, unless ``skip_corrupt=True``, which skips it and warns once
with the count.
"""

from __future__ import annotations

import io
import tarfile
import warnings
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np
from PIL import Image
from tqdm import tqdm

from hgnas_ray.errors import DataError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".pgm", ".tif",
                            ".tiff", ".webp"})
SPLIT_NAMES = ("train", "test", "val", "valid", "validation")
TARBALL_SUFFIXES = (".tar.gz", ".tgz", ".tar")


class Sample(NamedTuple):
    class_name: str
    name: str          # file path or "tarball::member", for messages and ordering
    image: np.ndarray  # (H, W, 3) uint8


class ImageArrays(NamedTuple):
    images: np.ndarray            # (N, H, W, 3) uint8
    labels: np.ndarray            # (N,) int64
    class_names: tuple[str, ...]  # sorted; label i is class_names[i]


class ImageDecoder:
    """Decodes image bytes to RGB arrays; remembers what it skipped when ``skip_corrupt``."""

    def __init__(self, skip_corrupt: bool = False) -> None:
        self.skip_corrupt = skip_corrupt
        self.skipped: list[str] = []

    def __call__(self, data: bytes, name: str) -> np.ndarray | None:
        try:
            with Image.open(io.BytesIO(data)) as image:
                return np.asarray(image.convert("RGB"))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            if not self.skip_corrupt:
                raise DataError(f"cannot decode image {name}: {exc}; replace or delete the file, "
                                "or write a copy without unreadable images with `hgnas "
                                "prepare-data <task or folder> --skip-corrupt` (Python: "
                                "skip_corrupt=True): a CIFAR task then loads from that copy, "
                                "other data by passing the .npz it writes as the task") from exc
            self.skipped.append(name)
            return None

    def warn_skipped(self, source: str | Path) -> None:
        if self.skipped:
            warnings.warn(f"{source}: skipped {len(self.skipped)} corrupt image(s), first "
                          f"{self.skipped[0]}", stacklevel=3)


def is_image_name(name: str) -> bool:
    """True for image files, ignoring hidden files such as macOS ``._x.jpg`` resource forks."""
    path = PurePosixPath(name)
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def is_tarball(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(TARBALL_SUFFIXES)


def class_dirs(directory: Path) -> list[Path]:
    """Sorted non-hidden sub-directories: the classes of an ImageFolder tree."""
    return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_image_tree(directory: Path, skip_corrupt: bool = False,
                    progress: bool = True) -> ImageArrays:
    """Read ``directory/<class>/<image>`` into arrays."""
    if not directory.is_dir():
        raise DataError(f"image folder {str(directory)!r} does not exist or is not a directory")
    files = [(d.name, f) for d in class_dirs(directory)
             for f in sorted(d.iterdir()) if f.is_file() and is_image_name(f.name)]
    _check_classes(directory, {name for name, _ in files}, class_dirs(directory))
    decode = ImageDecoder(skip_corrupt)
    samples = []
    for class_name, file in tqdm(files, desc=f"reading {directory.name}", unit="img",
                                 disable=None if progress else True, leave=False,
                                 mininterval=2.0):
        image = decode(file.read_bytes(), str(file))
        if image is not None:
            samples.append(Sample(class_name, str(file), image))
    decode.warn_skipped(directory)
    return stack_samples(samples, str(directory), tuple(d.name for d in class_dirs(directory)))


def _check_classes(directory: Path, with_images: set[str], dirs: list[Path]) -> None:
    if not dirs:
        raise DataError(f"{directory} has no class folders; expected the ImageFolder layout "
                        f"{directory}/<class>/<image>.jpg|png")
    empty = [d.name for d in dirs if d.name not in with_images]
    if empty:
        raise DataError(f"{directory}: class folder(s) without images: {', '.join(empty[:5])}; "
                        "remove them or add images (class ids come from the folder names)")


def read_tarball_samples(path: Path, splits: Iterable[str] | None = None,
                         skip_corrupt: bool = False,
                         progress: bool = True) -> dict[str, list[Sample]]:
    """Stream a tarball of ImageFolder trees; return the decoded samples of each split."""
    wanted = set(splits) if splits is not None else None
    decode = ImageDecoder(skip_corrupt)
    found: dict[str, list[Sample]] = {}
    with open(path, "rb") as raw, tqdm.wrapattr(raw, "read", total=path.stat().st_size,
                                                desc=f"reading {path.name}",
                                                disable=None if progress else True,
                                                leave=False, mininterval=2.0) as stream:
        try:
            with tarfile.open(fileobj=stream, mode="r|*") as tar:
                _collect_members(tar, path, wanted, decode, found)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DataError(f"cannot read tarball {path}: {exc}; the file is truncated or not a "
                            "tar archive, download or copy it again") from exc
    decode.warn_skipped(path)
    return found


def _collect_members(tar: tarfile.TarFile, path: Path, wanted: set[str] | None,
                     decode: ImageDecoder, found: dict[str, list[Sample]]) -> None:
    for member in tar:
        parts = PurePosixPath(member.name).parts
        if not member.isfile() or len(parts) < 2 or not is_image_name(member.name):
            continue
        split = parts[-3] if len(parts) >= 3 and parts[-3] in SPLIT_NAMES else "train"
        if wanted is not None and split not in wanted:
            continue
        name = f"{path}::{member.name}"
        handle = tar.extractfile(member)
        image = decode(handle.read(), name) if handle is not None else None
        if image is not None:
            found.setdefault(split, []).append(Sample(parts[-2], name, image))


def stack_samples(samples: list[Sample], source: str,
                  class_names: tuple[str, ...] | None = None) -> ImageArrays:
    """Sort samples by (class, name), check they share one size, stack them.

    ``class_names`` defaults to the sorted classes present among ``samples``.
    """
    if not samples:
        raise DataError(f"{source}: no readable images found; expected files named "
                        f"<class>/<image> with one of {', '.join(sorted(IMAGE_SUFFIXES))}")
    samples = sorted(samples, key=lambda s: (s.class_name, s.name))
    if class_names is None:
        class_names = tuple(sorted({s.class_name for s in samples}))
    shape = samples[0].image.shape
    for sample in samples:
        if sample.image.shape != shape:
            raise DataError(f"{sample.name} has size {sample.image.shape[:2]} but "
                            f"{samples[0].name} has {shape[:2]}; all images of a task must "
                            "share one size, resize them first")
    ids = {name: i for i, name in enumerate(class_names)}
    labels = np.array([ids[s.class_name] for s in samples], dtype=np.int64)
    return ImageArrays(np.stack([s.image for s in samples]), labels, class_names)
