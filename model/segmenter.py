"""The mask segmenter as a service: where is the face mask on an aligned face (weights key "segmenter")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from model.config import WEIGHTS_DIR

THRESHOLD = 0.5


class Segmenter:
    def __init__(self, net: nn.Module, device: torch.device, card: dict | None = None):
        self.net = net.to(device).eval()
        self.net.requires_grad_(False)
        self.device = device
        self.card = card or {}

    @torch.no_grad()
    def predict_batch(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] -> (B, 1, H, W) probability that a pixel is mask."""
        x = images.to(self.device, torch.float32)
        return torch.sigmoid(self.net(x).float()).to(images.device)

    def predict(self, image: np.ndarray, margin_px: int = 0) -> np.ndarray:
        """image uint8 (H, W, 3) (an aligned 256x256 face) -> bool (H, W), True = mask.

        `margin_px` grows the region: for inpainting a hole a little too large is harmless (the
        `unmask` model is trained on such holes) while a missed rim of mask fabric stays visible.
        """
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 127.5 - 1
        mask = self.predict_batch(x)[:, :1] > THRESHOLD  # (1, 1, H, W)
        if margin_px > 0:
            k = 2 * margin_px + 1
            mask = torch.nn.functional.max_pool2d(mask.float(), k, stride=1, padding=margin_px) > 0
        return mask[0, 0].cpu().numpy()


def clean_mask(mask: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
    """A predicted mask region made plausible: one piece, no holes, nothing over the eyes.

    Real photos bring patterns the synthetic masks never had: the raw prediction can leave holes
    in printed fabric and stray blobs on hair or background. A face mask is one solid region
    below the eyes, so keep the largest connected piece, fill its holes, and (given the aligned
    68 landmarks) clear everything above the lower eyelids.
    """
    import cv2
    from scipy.ndimage import binary_fill_holes

    m = np.asarray(mask, dtype=bool).copy()
    if landmarks is not None:
        eyes_bottom = float(np.max(np.asarray(landmarks)[[40, 41, 46, 47], 1]))
        m[: max(0, int(np.ceil(eyes_bottom)) + 2)] = False
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
    if n <= 1:
        return m
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return binary_fill_holes(labels == largest)


def load_segmenter(
    untrained: bool = False,
    *,
    preset: str = "compact",
    device: str | torch.device | None = None,
    weights_dir: str | Path = WEIGHTS_DIR,
) -> Segmenter:
    """The shipped segmenter (WeightsError when missing/corrupt), or a seeded untrained one."""
    from model.checkpoint import load_weights
    from model.networks import build_network, from_architecture
    from model.train_config import load_preset

    dev = torch.device(device) if device is not None else torch.device("cpu")
    if untrained:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = build_network(
                "unet_segmenter",
                **load_preset(preset).get("networks", {}).get("unet_segmenter", {}),
            )
        return Segmenter(net, dev, {"untrained": True})
    state, card = load_weights("segmenter", weights_dir)
    net = from_architecture(card["architecture"])
    net.load_state_dict(state)
    return Segmenter(net, dev, card)
