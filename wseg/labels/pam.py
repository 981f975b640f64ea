"""The maths of the predictive annotator models (PAMs) for scribbles, from the PAM gap study.

Pixel features and local random forests per image (`local_pam`), the average with the global
network's predictions ``P_comb = 1/2 P_local + 1/2 P_global`` (`combine`), and Potts or dense-CRF
regularisation (`regularise`); the generators that run them over a split are in
`wseg.labels.pam_generators`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.ensemble import RandomForestClassifier

from wseg.data.records import IGNORE_INDEX
from wseg.labels.crf import DenseCRFParams, dense_crf
from wseg.labels.potts import potts_map
from wseg.nets.pretrained import offline_lite0_state_dict

__all__ = [
    "FEATURES",
    "PAPER_CRF",
    "ColourPositionFeatures",
    "Lite0StemFeatures",
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
