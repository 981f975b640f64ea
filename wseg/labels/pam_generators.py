"""The PAM pseudo-label generators: local-PAM probabilities and predicted full annotations (PFAs).

They run the maths of `wseg.labels.pam` over a split as `wseg.labels.generators.LabelGenerator`s.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from wseg.data.records import IGNORE_INDEX, Sample
from wseg.data.scribbles import sample_scribble
from wseg.data.store import PseudoLabelStore
from wseg.data.transforms import build_eval_transform, transform_sample
from wseg.labels.generators import LabelGenerator
from wseg.labels.pam import (
    FEATURES,
    PAPER_CRF,
    POTTS_LAMBDA_GLOBAL,
    POTTS_LAMBDA_LOCAL,
    combine,
    local_pam,
    regularise,
)
from wseg.nets.checkpoint import file_digest, load_network
from wseg.nets.predict import predict_probs

__all__ = ["LocalPAMGenerator", "PFAGenerator"]


@dataclass
class LocalPAMGenerator(LabelGenerator):
    """Soft local-PAM probabilities of every image of a split (`local_pam` on its scribble).

    Scribbles come from `wseg.data.scribbles.sample_scribble`, as the datamodule reads them, so
    that the forests and the networks see the same strokes.

    Args:
        scribbles: ``dataset`` (the reader's scribbles) or ``synthesize`` (from the masks).
        scribble_width: Stroke width of synthesised scribbles.
        scribble_seed: Seed of synthesised scribbles.
        curated: Curated scribbles (true class at every scribbled pixel).
        features: Name of the pixel features in `FEATURES`.
        feature_options: Keyword arguments of the feature extractor.
        num_trees: Trees per forest (paper: 50).
        num_selected: Features kept by Gini importance (paper: 100 of 160; the default keeps
            45 of the 72 default features, the same 62.5%); None keeps all.
        seed: Seed of every forest.

    """

    name: ClassVar[str] = "pam_local"
    kind: ClassVar[Literal["hard", "soft"]] = "soft"
    scribbles: Literal["dataset", "synthesize"] = "synthesize"
    scribble_width: int = 3
    scribble_seed: int = 0
    curated: bool = False
    features: str = "lite0_stem"
    feature_options: dict[str, Any] = field(default_factory=dict)
    num_trees: int = 50
    num_selected: int | None = 45
    seed: int = 0

    def __post_init__(self) -> None:
        if self.features not in FEATURES:
            raise ValueError(
                f"unknown features {self.features!r}; expected one of {list(FEATURES)}"
            )
        extractor = FEATURES[self.features](**self.feature_options)
        self.feature_options = {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(extractor).items()
        }
        self._extractor: Callable[[np.ndarray], np.ndarray] = extractor
        if self.num_trees < 1:
            raise ValueError(f"num_trees must be >= 1, got {self.num_trees}")

    def __call__(self, sample: Sample, num_classes: int) -> tuple[np.ndarray, Counter]:
        """Fit the image's forest on its scribble and predict every pixel (see `LabelGenerator`)."""
        scribble = sample_scribble(
            sample, self.scribbles, self.scribble_width, self.scribble_seed, self.curated
        )
        probs = local_pam(
            self._extractor(sample.image),
            scribble,
            num_classes,
            self.num_trees,
            self.num_selected,
            self.seed,
        )
        scribbled = int((scribble != IGNORE_INDEX).sum())
        return probs, Counter(scribbled_pixels=scribbled, without_scribble=int(scribbled == 0))


@dataclass
class PFAGenerator(LabelGenerator):
    """Predicted full annotations: local, global or combined PAM, regularised, argmax (Eq. 6-13).

    ``P_local`` is read from a `LocalPAMGenerator` store; ``P_global`` is predicted on the fly
    by the global PAM network (a checkpoint of `wseg.methods.ScribblePAM` trained on the
    scribbles; full image, no test-time augmentation, as the paper disables multi-scale for the
    global PAM), on CUDA when available. Both given: ``P_comb = w P_local + (1 - w) P_global``.
    The PFA is the per-pixel argmax of ``P`` or of its Potts / dense-CRF MAP labelling; the
    scribbled pixels are not clamped (the paper does not clamp them either).

    Args:
        local_store: Directory of the local-PAM soft store, or None.
        global_checkpoint: Checkpoint of the global PAM, or None.
        global_digest: SHA-256 of the checkpoint file, filled in (and checked) on construction, so
            that a retrained global PAM makes a new store.
        local_weight: ``w`` (paper: 1/2).
        regulariser: ``none``, ``potts`` or ``crf``.
        potts_lambda: Potts weight; None: the paper's 10 with a local PAM, 50 for the global alone.
        potts_eta: Edge sensitivity of the Potts weight (paper: 0.01).
        potts_max_iter: Most primal-dual iterations of the Potts solver (its default 1000 is
            about 20 s for a 96x96 image on one CPU core; 300 changes under 0.1% of the labels).
        crf: `wseg.labels.crf.DenseCRFParams` fields; None: the paper's (`PAPER_CRF`).
        crf_backend: Dense CRF backend.

    """

    name: ClassVar[str] = "pfa"
    local_store: str | None = None
    global_checkpoint: str | None = None
    global_digest: str = ""
    local_weight: float = 0.5
    regulariser: Literal["none", "potts", "crf"] = "none"
    potts_lambda: float | None = None
    potts_eta: float = 0.01
    potts_max_iter: int = 1000
    crf: dict[str, Any] | None = None
    crf_backend: Literal["pydensecrf", "torch"] = "pydensecrf"

    def __post_init__(self) -> None:
        if self.local_store is None and self.global_checkpoint is None:
            raise ValueError("a PFA needs a local store, a global checkpoint, or both")
        if self.regulariser not in ("none", "potts", "crf"):
            raise ValueError(f"regulariser must be none, potts or crf, got {self.regulariser!r}")
        if self.local_store is not None:
            store = PseudoLabelStore(self.local_store)
            if store.kind != "soft":
                raise ValueError(f"{self.local_store} holds hard labels; the local PAM is soft")
            self.local_store = str(store.path)
        if self.global_checkpoint is not None:
            path = Path(self.global_checkpoint)
            if not path.is_file():
                raise FileNotFoundError(f"global PAM checkpoint not found: {path}")
            digest = file_digest(path)
            if self.global_digest and self.global_digest != digest:
                raise ValueError(
                    f"{path} has SHA-256 {digest[:12]}..., not the expected "
                    f"{self.global_digest[:12]}...: the global PAM changed"
                )
            self.global_checkpoint, self.global_digest = str(path), digest
        if self.potts_lambda is None:
            local = self.local_store is not None
            self.potts_lambda = POTTS_LAMBDA_LOCAL if local else POTTS_LAMBDA_GLOBAL
        if self.crf is None:
            self.crf = dict(PAPER_CRF)
        self._net: nn.Module | None = None
        self._store: PseudoLabelStore | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Worker processes rebuild the network and the store handle themselves.
        return {**self.__dict__, "_net": None, "_store": None}

    def global_probs(self, sample: Sample, num_classes: int) -> np.ndarray:
        """``float32`` ``L, H, W`` softmax of the global PAM on the full image."""
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if self._net is None:
            self._net = load_network(self.global_checkpoint, device).net
        image = transform_sample(build_eval_transform(), sample, num_classes)["image"]
        with torch.no_grad():
            probs = predict_probs(self._net, image[None].to(device))[0]
        if probs.shape[0] != num_classes:
            raise ValueError(
                f"global PAM {self.global_checkpoint} predicts {probs.shape[0]} classes, the "
                f"dataset has {num_classes}"
            )
        return probs.float().cpu().numpy()

    def probabilities(self, sample: Sample, num_classes: int) -> np.ndarray:
        """``P`` before regularisation: local, global or their average."""
        p_local = p_global = None
        if self.local_store is not None:
            if self._store is None:
                self._store = PseudoLabelStore(self.local_store)
            p_local = self._store.read(sample.id)
            if p_local.shape != (num_classes, *sample.size):
                raise ValueError(
                    f"{self._store.file_for(sample.id)}: local PAM of shape {p_local.shape}, "
                    f"expected {(num_classes, *sample.size)}"
                )
        if self.global_checkpoint is not None:
            p_global = self.global_probs(sample, num_classes)
        return combine(p_local, p_global, self.local_weight)

    def __call__(self, sample: Sample, num_classes: int) -> tuple[np.ndarray, Counter]:
        """Average, regularise and take the argmax (see `LabelGenerator`)."""
        probs = regularise(
            self.probabilities(sample, num_classes),
            sample.image,
            self.regulariser,
            potts_lambda=float(self.potts_lambda),
            potts_eta=self.potts_eta,
            potts_max_iter=self.potts_max_iter,
            crf=self.crf,
            crf_backend=self.crf_backend,
        )
        return probs.argmax(axis=0).astype(np.uint8), Counter(images=1)
