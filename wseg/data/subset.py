"""A view of some of a split's images, by id, as a `wseg.data.records.SegmentationSource`."""

from __future__ import annotations

from collections.abc import Sequence

from wseg.data.records import Sample, SegmentationSource

__all__ = ["SubsetSource"]


class SubsetSource(SegmentationSource):
    """The images of a split whose ids are listed (e.g. the curated training set), in split order.

    Args:
        source: The split.
        ids: Ids to keep; each must be in ``source``.

    """

    def __init__(self, source: SegmentationSource, ids: Sequence[str]) -> None:
        wanted = set(ids)
        unknown = sorted(wanted - set(source.ids))
        if unknown:
            raise ValueError(f"{len(unknown)} ids are not in the split, e.g. {unknown[:3]}")
        self.source = source
        self.classes = source.classes
        self._positions = [i for i, image_id in enumerate(source.ids) if image_id in wanted]
        self._ids = [source.ids[i] for i in self._positions]

    @property
    def ids(self) -> list[str]:
        """The kept ids, in the split's order."""
        return self._ids

    def load(self, index: int) -> Sample:
        """Read the ``index``-th kept sample."""
        return self.source.load(self._positions[index])
