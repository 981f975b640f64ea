"""A folder of images without labels: what ``predict`` and ``python -m wseg segment`` read."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from wseg.data.datasets.common import read_image, with_background
from wseg.data.records import Sample, SegmentationSource

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def list_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` (`IMAGE_SUFFIXES`, any case), sorted by name.

    Raises:
        FileNotFoundError: If ``folder`` is not a directory.
        ValueError: If it holds no image, or two images share a stem (their outputs would clash).

    """
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    images = sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    )
    if not images:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    stems: dict[str, Path] = {}
    for path in images:
        if path.stem in stems:
            raise ValueError(
                f"{stems[path.stem]} and {path} would both be written as {path.stem}.png"
            )
        stems[path.stem] = path
    return images


class ImageFolderSource(SegmentationSource):
    """The images directly in a folder (see `list_images`), ids = file stems, no labels.

    Args:
        folder: The image folder.
        classes: The class names of the model that will segment them (background first).

    """

    def __init__(self, folder: str | Path, classes: Sequence[str]) -> None:
        self.folder = Path(folder)
        self.classes = with_background(classes)
        self._paths = list_images(self.folder)
        self._ids = [path.stem for path in self._paths]

    @property
    def ids(self) -> list[str]:
        """File stems, sorted by file name."""
        return self._ids

    def load(self, index: int) -> Sample:
        """Read the image (no mask, no boxes)."""
        path = self._paths[index]
        return Sample(id=self._ids[index], image=read_image(path), source=str(path))
