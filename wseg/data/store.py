"""The pseudo-label store: one file per image id plus a manifest naming the config that made them.

A changed config hashes to a new directory, so labels of two configurations never mix (README:
"The pseudo-label store").
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote

import cv2
import numpy as np

import wseg

__all__ = ["MANIFEST_NAME", "PseudoLabelStore", "StoreError", "config_hash", "ids_digest"]

MANIFEST_NAME = "manifest.json"
STATS_LOG = "label_stats.jsonl"
"""Per-label generator statistics, one JSON line per label written (see `record_stats`)."""
FORMAT_NAME = "wseg-pseudo-labels"
FORMAT_VERSION = 1
_SUFFIX = {"hard": ".png", "soft": ".npz"}


class StoreError(RuntimeError):
    """A directory is not a store, or holds a store of another configuration."""


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``config`` (sorted keys, no whitespace).

    Args:
        config: JSON-serialisable mapping.

    Returns:
        64 hex digits.

    """
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def ids_digest(ids: Iterator[str] | list[str]) -> str:
    """SHA-256 of a set of image ids (sorted, one per line): the same ids give the same digest."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def _git_commit() -> str | None:
    """Return the commit of the wseg checkout, when it is one and git is at hand."""
    package_dir = Path(wseg.__file__).resolve().parent
    try:
        result = subprocess.run(
            ["git", "-C", str(package_dir), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path`` and rename it into place."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class PseudoLabelStore:
    """A directory of pseudo labels for one dataset split, made by one generator configuration.

    Layout: ``manifest.json`` and one file per image: ``<name>.png`` (hard labels, ``uint8``, 255 =
    void) or ``<name>.npz`` (soft labels, ``float16`` ``L, H, W``, compressed). ``<name>`` is the
    image id percent-encoded (``/`` -> ``%2F``), so Cityscapes-like ids map to flat file names and
    back. Every write is atomic (temporary file + ``os.replace``): a killed writer leaves either the
    old state or the complete file, never a truncated one (stray ``.tmp-*`` files are ignored).

    The manifest holds ``config`` (the generator's full configuration with dataset, root and split),
    ``config_hash``, ``kind``, the wseg version and git commit, the creation date, ``classes``, the
    expected ``num_images``, ``data`` (the data it labels: resolved root, split, number of images
    and `ids_digest` of their ids; `labelled_data`), per-run generation statistics and the quality
    figures. ``label_stats.jsonl`` holds each label's statistics as it is written, so that a run
    killed before it could record itself is recovered by the next (`logged_stats`). Stores written
    before ``data`` and the log existed load as before; their data is read from ``config``.

    Args:
        path: Directory of an existing store.
        expected_hash: When given, the store's ``config_hash`` must equal it.

    Raises:
        StoreError: If ``path`` holds no readable manifest, or its hash differs.

    """

    def __init__(self, path: str | os.PathLike, expected_hash: str | None = None) -> None:
        self.path = Path(path)
        manifest_path = self.path / MANIFEST_NAME
        if not manifest_path.is_file():
            raise StoreError(f"{self.path} is not a pseudo-label store: {MANIFEST_NAME} is missing")
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise StoreError(f"{manifest_path}: unreadable manifest ({error})") from error
        if manifest.get("format") != FORMAT_NAME or manifest.get("kind") not in _SUFFIX:
            raise StoreError(f"{manifest_path}: not a {FORMAT_NAME} manifest")
        if expected_hash is not None and manifest.get("config_hash") != expected_hash:
            raise StoreError(
                f"{self.path} holds labels of config {manifest.get('config_hash')}, not "
                f"{expected_hash}; refusing to mix configurations (use another output directory)"
            )
        self.manifest: dict[str, Any] = manifest
        self.kind: Literal["hard", "soft"] = manifest["kind"]

    @staticmethod
    def directory_for(root: str | os.PathLike, config: Mapping[str, Any]) -> Path:
        """Return the store directory ``<root>/<generator>-<hash8>`` of a configuration.

        Args:
            root: Parent directory of stores.
            config: Full configuration; must hold a ``generator`` name.

        Returns:
            Path of the store directory (not created).

        """
        if "generator" not in config:
            raise ValueError("a store config must name its 'generator'")
        return Path(root) / f"{config['generator']}-{config_hash(config)[:8]}"

    @classmethod
    def create_or_resume(
        cls,
        root: str | os.PathLike,
        config: Mapping[str, Any],
        kind: Literal["hard", "soft"] = "hard",
        classes: list[str] | None = None,
        num_images: int | None = None,
    ) -> PseudoLabelStore:
        """Open the store of ``config`` under ``root``, creating it when absent.

        Args:
            root: Parent directory of stores; the store is ``directory_for(root, config)``.
            config: Full JSON-serialisable configuration (generator, its options, dataset, split).
            kind: ``"hard"`` (PNG label maps) or ``"soft"`` (float16 probabilities).
            classes: Class names, background first, recorded in the manifest.
            num_images: Number of images the split holds, recorded in the manifest.

        Returns:
            The store; resuming keeps every label already written.

        Raises:
            StoreError: If the directory exists but is not a store of exactly this config.

        """
        if kind not in _SUFFIX:
            raise ValueError(f"kind must be 'hard' or 'soft', got {kind!r}")
        config = json.loads(json.dumps(dict(config), sort_keys=True))
        digest = config_hash(config)
        path = cls.directory_for(root, config)
        if (path / MANIFEST_NAME).is_file():
            store = cls(path, expected_hash=digest)
            if store.kind != kind:
                raise StoreError(f"{path} holds {store.kind} labels, not {kind}")
            return store
        if path.exists() and any(p for p in path.iterdir() if not p.name.startswith(".tmp-")):
            raise StoreError(
                f"{path} exists, is not empty and has no {MANIFEST_NAME}; not touching it"
            )
        path.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "config": config,
            "config_hash": digest,
            "generator": config["generator"],
            "wseg_version": wseg.__version__,
            "git_commit": _git_commit(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "classes": list(classes) if classes is not None else None,
            "num_images": num_images,
            "runs": [],
            "quality": None,
        }
        _atomic_write(path / MANIFEST_NAME, (json.dumps(manifest, indent=2) + "\n").encode())
        return cls(path, expected_hash=digest)

    @property
    def config_hash(self) -> str:
        """The SHA-256 of the store's configuration."""
        return self.manifest["config_hash"]

    def update_manifest(self, **fields: Any) -> None:
        """Set top-level manifest fields (statistics, quality) and rewrite the manifest atomically.

        Args:
            **fields: JSON-serialisable values; ``config`` and ``config_hash`` cannot be changed.

        """
        frozen = {"format", "format_version", "kind", "config", "config_hash"} & fields.keys()
        if frozen:
            raise ValueError(f"manifest fields {sorted(frozen)} are fixed at creation")
        self.manifest.update(json.loads(json.dumps(fields)))
        _atomic_write(
            self.path / MANIFEST_NAME, (json.dumps(self.manifest, indent=2) + "\n").encode()
        )

    def labelled_data(self) -> dict[str, Any]:
        """The data the labels were made from: ``root``, ``split`` (and ``ids_sha256``) if known.

        From the manifest's ``data``, or for older stores from ``config["dataset"]``; keys that
        neither records are absent.
        """
        data = dict(self.manifest.get("data") or {})
        dataset = self.manifest.get("config", {}).get("dataset") or {}
        if isinstance(dataset, Mapping):
            for key in ("root", "split"):
                if key not in data and dataset.get(key) is not None:
                    data[key] = str(dataset[key])
        return data

    def record_stats(
        self, image_id: str, run_id: str, stats: Mapping[str, int], seconds: float = 0.0
    ) -> None:
        """Append the statistics of one written label to ``label_stats.jsonl``.

        One ``write`` of one short line to a file opened for appending, safe from several worker
        processes at once; a line cut short by a kill is skipped when read.

        Args:
            image_id: The label's image id.
            run_id: The generation run that wrote it.
            stats: Its generator statistics.
            seconds: Time the generator took on it.

        """
        entry = {"id": image_id, "run": run_id, "stats": dict(stats), "seconds": seconds}
        line = json.dumps(entry) + "\n"
        descriptor = os.open(self.path / STATS_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, line.encode())
        finally:
            os.close(descriptor)

    def logged_stats(self) -> dict[str, tuple[str, dict[str, int], float]]:
        """Image id -> (run id, statistics, seconds) of each label in the log (latest line wins)."""
        path = self.path / STATS_LOG
        if not path.is_file():
            return {}
        logged = {}
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
                seconds = float(entry.get("seconds", 0.0))
                logged[str(entry["id"])] = (str(entry["run"]), dict(entry["stats"]), seconds)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
                continue
        return logged

    def file_for(self, image_id: str) -> Path:
        """Path of the label file of ``image_id`` (which may not exist).

        Args:
            image_id: Dataset image id; any characters, ``/`` included.

        """
        if not image_id:
            raise ValueError("empty image id")
        return self.path / (quote(image_id, safe="") + _SUFFIX[self.kind])

    def has(self, image_id: str) -> bool:
        """Whether a label of ``image_id`` has been written.

        Args:
            image_id: Dataset image id.

        """
        return self.file_for(image_id).is_file()

    def ids(self) -> list[str]:
        """Ids of all labels in the store, sorted."""
        suffix = _SUFFIX[self.kind]
        return sorted(
            unquote(entry.name[: -len(suffix)])
            for entry in os.scandir(self.path)
            if entry.name.endswith(suffix) and not entry.name.startswith(".tmp-")
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids())

    def __len__(self) -> int:
        return len(self.ids())

    def write(self, image_id: str, label: np.ndarray) -> None:
        """Atomically write the label of ``image_id``, replacing an earlier one.

        Args:
            image_id: Dataset image id.
            label: Hard store: ``H, W`` integer labels in 0..255. Soft store: ``L, H, W`` floats.

        Raises:
            ValueError: If the label's shape, dtype or values do not fit the store's kind.

        """
        label = np.asarray(label)
        if self.kind == "hard":
            if label.ndim != 2 or not np.issubdtype(label.dtype, np.integer):
                raise ValueError(
                    f"{image_id}: hard labels must be an integer H,W array, got "
                    f"{label.dtype} {label.shape}"
                )
            if label.size and (label.min() < 0 or label.max() > 255):
                raise ValueError(f"{image_id}: hard labels must lie in 0..255")
            ok, encoded = cv2.imencode(".png", label.astype(np.uint8))
            if not ok:
                raise ValueError(f"{image_id}: PNG encoding failed for shape {label.shape}")
            data = encoded.tobytes()
        else:
            if label.ndim != 3 or not np.issubdtype(label.dtype, np.floating):
                raise ValueError(
                    f"{image_id}: soft labels must be a float L,H,W array, got "
                    f"{label.dtype} {label.shape}"
                )
            buffer = io.BytesIO()
            np.savez_compressed(buffer, probs=label.astype(np.float16))
            data = buffer.getvalue()
        _atomic_write(self.file_for(image_id), data)

    def read(self, image_id: str) -> np.ndarray:
        """Read the label of ``image_id``.

        Args:
            image_id: Dataset image id.

        Returns:
            Hard store: ``uint8`` ``H, W``. Soft store: ``float32`` ``L, H, W``.

        Raises:
            FileNotFoundError: If the store has no label of ``image_id``.
            ValueError: If the file is corrupt.

        """
        path = self.file_for(image_id)
        if not path.is_file():
            raise FileNotFoundError(
                f"{self.path}: no pseudo label for image id {image_id!r} ({path.name})"
            )
        if self.kind == "hard":
            label = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
            if label is None or label.ndim != 2:
                raise ValueError(f"{path}: corrupt pseudo-label PNG")
            return label
        try:
            with np.load(path) as archive:
                return archive["probs"].astype(np.float32)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            raise ValueError(f"{path}: corrupt soft pseudo label ({error})") from error
