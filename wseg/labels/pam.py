"""Predictive annotator models (PAMs) for scribbles, from the PAM gap study.

Local random forests per image, the global network's predictions, their average
``P_comb = 1/2 P_local + 1/2 P_global``, Potts or dense-CRF regularisation, argmax = the PFA.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.ensemble import RandomForestClassifier
from torch import nn

from wseg.data.records import IGNORE_INDEX, Sample, SegmentationSource
from wseg.data.store import PseudoLabelStore
from wseg.data.transforms import build_eval_transform, transform_sample
from wseg.data.weak import sample_scribble
from wseg.labels.crf import DenseCRFParams, dense_crf
from wseg.labels.generate import LabelGenerator
from wseg.labels.potts import potts_map
from wseg.nets.checkpoint import file_digest, load_network
from wseg.nets.predict import predict_probs
from wseg.nets.pretrained import offline_lite0_state_dict

__all__ = [
    "FEATURES",
    "PAPER_CRF",
    "ColourPositionFeatures",
    "Lite0StemFeatures",
    "LocalPAMGenerator",
    "PFAGenerator",
    "SubsetSource",
    "combine",
    "local_pam",
    "regularise",
]

PAPER_CRF: dict[str, float] = {
    "bilateral_compat": 3.0,
    "bilateral_sxy": 30.0,
    "bilateral_srgb": 5.0,
    "gaussian_compat": 5.0,
    "gaussian_sxy": 2.0,
}
"""The PAM paper's dense CRF (supp. 5.4): w1 = 3, sigma_alpha = 30, sigma_beta = 5, w2 = 5,
sigma_gamma = 2, in `wseg.labels.crf.DenseCRFParams` names."""

POTTS_LAMBDA_LOCAL = 10.0
"""Potts weight for the local and the combined PAM (supp. 5.3)."""
POTTS_LAMBDA_GLOBAL = 50.0
"""Potts weight for the global PAM alone (supp. 5.3)."""


def _colour_position(image: np.ndarray, position: bool) -> list[np.ndarray]:
    """RGB and CIE Lab on ``[0, 1]``, and optionally (row, column) on ``[0, 1]``: ``H, W`` maps."""
    height, width = image.shape[:2]
    lab = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2LAB)
    maps = [image[..., c].astype(np.float32) / 255.0 for c in range(3)]
    maps += [lab[..., c].astype(np.float32) / 255.0 for c in range(3)]
    if position:
        rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
        maps += [rows / max(height - 1, 1), cols / max(width - 1, 1)]
    return maps


@dataclass
class ColourPositionFeatures:
    """Per-pixel colour (RGB and CIE Lab) and position: the cheapest local-PAM features.

    Args:
        position: Add the pixel's row and column, each scaled to ``[0, 1]``.

    """

    position: bool = True

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """``float32`` ``H, W, F`` features of a ``uint8`` ``H, W, 3`` RGB image."""
        return np.stack(_colour_position(image, self.position), axis=-1)


@functools.lru_cache(maxsize=1)
def _lite0_stem_weight() -> torch.Tensor:
    """The 32 ImageNet stem filters (``32, 3, 3, 3``) of EfficientNet-Lite0, read once."""
    return offline_lite0_state_dict()["conv_stem.weight"].float()


@dataclass
class Lite0StemFeatures:
    """First-layer filter responses of ImageNet EfficientNet-Lite0, plus colour and position.

    The paper feeds the random forest the first-layer responses of VGG-16 and AlexNet (64 3x3 and
    96 11x11 filters: 160 features). Offline, we use the 32 3x3 filters of the EfficientNet-Lite0
    stem (`wseg.nets.pretrained`), applied at stride 1 (one response per pixel; the network itself
    uses stride 2) with replicate padding, on the image at each of ``scales`` (the half scale
    stands in for AlexNet's larger filters) and upsampled back bilinearly. The raw convolution is
    used: the stem's batch norm is a per-feature affine map, which a random forest's threshold
    splits ignore, and its ReLU6 would only clip information. Colour (RGB, Lab) and position are
    appended (`ColourPositionFeatures`). Default: 32 x 2 + 6 + 2 = 72 features.

    Args:
        scales: Image scales at which the filters run.
        colour: Append RGB and Lab.
        position: Append row and column.

    """

    scales: tuple[float, ...] = (1.0, 0.5)
    colour: bool = True
    position: bool = True

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """``float32`` ``H, W, F`` features of a ``uint8`` ``H, W, 3`` RGB image."""
        height, width = image.shape[:2]
        weight = _lite0_stem_weight()
        # timm's tf_efficientnet_lite0 expects RGB in [0, 1] normalised by mean 0.5, std 0.5.
        x = torch.from_numpy(np.array(image, np.float32)).permute(2, 0, 1)[None]
        x = (x / 255.0 - 0.5) / 0.5
        responses = []
        with torch.no_grad():
            for scale in self.scales:
                scaled = x
                if scale != 1.0:
                    size = (max(1, round(height * scale)), max(1, round(width * scale)))
                    scaled = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
                out = F.conv2d(F.pad(scaled, (1, 1, 1, 1), mode="replicate"), weight)
                if out.shape[-2:] != (height, width):
                    out = F.interpolate(
                        out, size=(height, width), mode="bilinear", align_corners=False
                    )
                responses.append(out[0])
        maps = list(torch.cat(responses).numpy())
        if self.colour:
            maps += _colour_position(image, position=False)
        if self.position:
            rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
            maps += [rows / max(height - 1, 1), cols / max(width - 1, 1)]
        return np.stack(maps, axis=-1).astype(np.float32)


FEATURES: dict[str, type] = {
    "lite0_stem": Lite0StemFeatures,
    "colour_position": ColourPositionFeatures,
}
"""Pixel feature extractors of the local PAM by name: ``cls(**options)(image) -> H, W, F``."""


def local_pam(
    features: np.ndarray,
    scribble: np.ndarray,
    num_classes: int,
    num_trees: int = 50,
    num_selected: int | None = 45,
    seed: int = 0,
) -> np.ndarray:
    """Local PAM (paper sec. 2.3.1): a random forest trained on one image's scribbled pixels.

    The forest (scikit-learn, ``num_trees`` trees, Gini impurity, fully grown) learns the scribbled
    pixels' classes from their features. When ``num_selected`` is smaller than the number of
    features, the features are ranked by the forest's Gini importance and a second forest is
    trained on the ``num_selected`` best (the paper keeps 100 of 160; it does not say whether per
    image or once; we rank per image, since every local PAM is its own model). The forest then
    predicts every pixel. Only the classes scribbled in the image can receive probability; the
    others get exactly 0. An image with a single scribbled class is that class everywhere; an
    image without any scribble gets the uniform distribution (no evidence either way).

    Args:
        features: ``float32`` ``H, W, F`` pixel features.
        scribble: ``uint8`` ``H, W`` scribble labels, 255 = unlabelled.
        num_classes: Number of classes L, background included.
        num_trees: Trees of the forest (paper: 50).
        num_selected: Features kept by Gini importance; None keeps all.
        seed: Seed of the forest.

    Returns:
        ``float32`` ``L, H, W`` class probabilities, summing to 1 at every pixel.

    Raises:
        ValueError: On size mismatches or scribble classes outside ``0..L-1``.

    """
    height, width, num_features = features.shape
    if scribble.shape != (height, width):
        raise ValueError(f"scribble {scribble.shape} does not match features {features.shape}")
    labelled = scribble != IGNORE_INDEX
    classes = np.unique(scribble[labelled]).astype(np.int64)
    if classes.size and classes.max() >= num_classes:
        raise ValueError(f"scribble classes {classes.tolist()} outside 0..{num_classes - 1}")
    if num_selected is not None and num_selected < 1:
        raise ValueError(f"num_selected must be >= 1 or None, got {num_selected}")
    if classes.size == 0:
        return np.full((num_classes, height, width), 1.0 / num_classes, np.float32)
    probs = np.zeros((num_classes, height, width), np.float32)
    if classes.size == 1:
        probs[classes[0]] = 1.0
        return probs
    pixels = features.reshape(-1, num_features)
    x, y = pixels[labelled.reshape(-1)], scribble[labelled].astype(np.int64)

    def forest() -> RandomForestClassifier:
        return RandomForestClassifier(n_estimators=num_trees, random_state=seed, n_jobs=1)

    model = forest().fit(x, y)
    selected = np.arange(num_features)
    if num_selected is not None and num_selected < num_features:
        selected = np.sort(np.argsort(-model.feature_importances_, kind="stable")[:num_selected])
        model = forest().fit(x[:, selected], y)
    predicted = model.predict_proba(pixels[:, selected]).astype(np.float32)
    probs[model.classes_] = predicted.T.reshape(len(model.classes_), height, width)
    return probs


def combine(
    p_local: np.ndarray | None, p_global: np.ndarray | None, local_weight: float = 0.5
) -> np.ndarray:
    """Average the local and global PAMs (paper Eq. 11): ``w P_local + (1 - w) P_global``.

    Args:
        p_local: ``L, H, W`` local probabilities, or None.
        p_global: ``L, H, W`` global probabilities, or None.
        local_weight: ``w`` (paper: 1/2); used only when both are given.

    Returns:
        ``float32`` ``L, H, W``: the average, or the one given.

    """
    if p_local is None and p_global is None:
        raise ValueError("combine needs at least one of p_local and p_global")
    if p_local is None or p_global is None:
        return np.asarray(p_local if p_global is None else p_global, np.float32)
    if p_local.shape != p_global.shape:
        raise ValueError(f"local {p_local.shape} and global {p_global.shape} PAMs differ in shape")
    if not 0.0 <= local_weight <= 1.0:
        raise ValueError(f"local_weight must lie in [0, 1], got {local_weight}")
    return (local_weight * p_local + (1.0 - local_weight) * p_global).astype(np.float32)


def regularise(
    probs: np.ndarray,
    image: np.ndarray,
    method: Literal["none", "potts", "crf"],
    potts_lambda: float = POTTS_LAMBDA_LOCAL,
    potts_eta: float = 0.01,
    potts_max_iter: int = 1000,
    crf: dict[str, Any] | None = None,
    crf_backend: Literal["pydensecrf", "torch"] = "pydensecrf",
) -> np.ndarray:
    """The MAP soft labelling ``M_MAP(P)`` of paper Eq. 5 under Potts or the dense CRF.

    Potts: `wseg.labels.potts.potts_map` (primal-dual on the simplex, edge weight
    ``exp(-eta |grad I|)``). Dense CRF: `wseg.labels.crf.dense_crf` mean-field marginals (10
    iterations) with the paper's kernels (`PAPER_CRF`) unless ``crf`` says otherwise. Classes whose
    probability is 0 at every pixel are left out of the solve and stay 0.

    Args:
        probs: ``L, H, W`` class probabilities.
        image: ``uint8`` ``H, W, 3`` RGB image.
        method: ``none`` (``probs`` unchanged), ``potts`` or ``crf``.
        potts_lambda: Potts weight lambda.
        potts_eta: Edge sensitivity eta.
        potts_max_iter: Most primal-dual iterations of the Potts solver.
        crf: `wseg.labels.crf.DenseCRFParams` fields (None: `PAPER_CRF`).
        crf_backend: Dense CRF backend.

    Returns:
        ``float32`` ``L, H, W`` soft labelling, on the simplex at every pixel.

    """
    if probs.shape[1:] != image.shape[:2]:
        raise ValueError(f"probs {probs.shape} and image {image.shape} differ in size")
    if method == "none":
        return np.asarray(probs, np.float32)
    if method not in ("potts", "crf"):
        raise ValueError(f"regulariser must be none, potts or crf, got {method!r}")
    # Classes with probability 0 at every pixel (those a local PAM never saw) cost -log(eps) at
    # every pixel and are dominated by the classes present, so they are left out of the solve and
    # stay exactly 0: the Potts solver's work grows with the number of labels (21 on VOC).
    active = np.flatnonzero(probs.reshape(len(probs), -1).max(axis=1) > 0)
    pixels = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
    p = torch.from_numpy(np.ascontiguousarray(probs[active], np.float32))[None]
    if method == "potts":
        solved = potts_map(
            p, pixels.float(), lam=potts_lambda, eta=potts_eta, max_iter=potts_max_iter
        )
    else:
        params = DenseCRFParams(**(PAPER_CRF if crf is None else crf))
        solved = dense_crf(pixels, p, params, backend=crf_backend)
    out = np.zeros(probs.shape, np.float32)
    out[active] = solved[0].numpy()
    return out


@dataclass
class LocalPAMGenerator(LabelGenerator):
    """Soft local-PAM probabilities of every image of a split (`local_pam` on its scribble).

    Scribbles come from `wseg.data.weak.sample_scribble`, as the datamodule reads them, so that
    the forests and the networks see the same strokes.

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
