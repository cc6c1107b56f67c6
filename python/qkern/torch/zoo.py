"""Small demo models on sklearn's bundled digits (no download): a classifier and a U-Net denoiser, seeded training."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

try:  # a progress bar while the user waits; training works without it
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover - tqdm is in the demo/test extras
    tqdm = None


@dataclass(frozen=True)
class Split:
    """Inputs and targets (float32 NCHW, or int64 labels) for training and testing."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def _digits(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    return x, torch.from_numpy(d.target.astype(np.int64))


def _split(x: torch.Tensor, y: torch.Tensor, seed: int, test_fraction: float = 0.2) -> Split:
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(x)))
    n_test = round(len(x) * test_fraction)
    test, train = perm[:n_test], perm[n_test:]
    return Split(x[train], y[train], x[test], y[test])


@functools.lru_cache(maxsize=4)
def digits_classification(seed: int = 0) -> Split:
    """Digits upsampled to 16x16 in [0, 1], labels 0..9; 80/20 split by a seeded permutation."""
    x, y = _digits(16)
    return _split(x, y, seed)


@functools.lru_cache(maxsize=4)
def digits_denoising(seed: int = 0, sigma: float = 0.3) -> Split:
    """Digits upsampled to 32x32 in [0, 1] with seeded Gaussian noise of std `sigma` as input, clean as target."""
    clean, _ = _digits(32)
    g = torch.Generator().manual_seed(seed + 1)
    noisy = clean + sigma * torch.randn(clean.shape, generator=g)
    return _split(noisy, clean, seed)


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


class ResidualBlock(nn.Module):
    """conv-BN-ReLU, conv-BN, + identity, ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + x)


class DigitsNet(nn.Module):
    """16x16 digits -> 10 logits: conv3x3 blocks, strided convs, BN, a residual add, global pool, linear head."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.stem = _conv_bn_relu(1, width)
        self.down1 = _conv_bn_relu(width, 2 * width, stride=2)
        self.block = ResidualBlock(2 * width)
        self.down2 = _conv_bn_relu(2 * width, 4 * width, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.1)
        self.fc = nn.Linear(4 * width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down2(self.block(self.down1(self.stem(x))))
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))


class UNet(nn.Module):
    """32x32 denoiser: conv3x3 encoder with strided downsampling, ConvTranspose2d 2x2 s2 upsampling, cat skips."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.enc1 = nn.Sequential(nn.Conv2d(1, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, w, 3, padding=1), nn.ReLU())
        self.down1 = nn.Sequential(nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU())
        self.enc2 = nn.Sequential(nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU())
        self.down2 = nn.Sequential(nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), nn.ReLU())
        self.mid = nn.Sequential(nn.Conv2d(4 * w, 4 * w, 3, padding=1), nn.ReLU())
        self.up2 = nn.Sequential(nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2), nn.ReLU())
        self.dec2 = nn.Sequential(nn.Conv2d(4 * w, 2 * w, 3, padding=1), nn.ReLU())
        self.up1 = nn.Sequential(nn.ConvTranspose2d(2 * w, w, 2, stride=2), nn.ReLU())
        self.dec1 = nn.Sequential(nn.Conv2d(2 * w, w, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(w, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(self.down1(e1))
        m = self.mid(self.down2(e2))
        d2 = self.dec2(torch.cat([self.up2(m), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        return self.head(d1)


def _train(
    model: nn.Module,
    data: Split,
    loss_fn: object,
    *,
    epochs: int,
    seed: int,
    lr: float,
    batch_size: int = 96,
    desc: str = "training",
    progress: bool = True,
) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * ((len(data.x_train) + batch_size - 1) // batch_size)
    )
    steps = range(epochs)
    if progress and tqdm is not None:
        steps = tqdm(steps, desc=desc, unit="epoch", leave=False)
    model.train()
    for _ in steps:
        perm = torch.randperm(len(data.x_train), generator=g)
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            opt.zero_grad()
            loss = loss_fn(model(data.x_train[idx]), data.y_train[idx])
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def train_classifier(seed: int = 0, epochs: int = 8, width: int = 8, progress: bool = True) -> tuple[DigitsNet, Split]:
    """A seeded DigitsNet trained on the digits split; returns the model (eval mode) and its data."""
    torch.manual_seed(seed)
    data = digits_classification(seed)
    model = _train(
        DigitsNet(width), data, F.cross_entropy, epochs=epochs, seed=seed, lr=1e-2, desc="classifier", progress=progress
    )
    return model, data


def train_unet(seed: int = 0, epochs: int = 8, width: int = 8, progress: bool = True) -> tuple[UNet, Split]:
    """A seeded UNet trained to denoise 32x32 digits (MSE loss); returns the model (eval mode) and its data."""
    torch.manual_seed(seed)
    data = digits_denoising(seed)
    model = _train(UNet(width), data, F.mse_loss, epochs=epochs, seed=seed, lr=3e-3, desc="u-net", progress=progress)
    return model, data


def accuracy(logits: np.ndarray | torch.Tensor, labels: torch.Tensor) -> float:
    """Percentage of argmax predictions equal to the labels."""
    pred = np.asarray(logits).argmax(axis=1)
    return float(100.0 * np.mean(pred == labels.numpy()))


def psnr(output: np.ndarray | torch.Tensor, target: torch.Tensor, peak: float = 1.0) -> float:
    """10 log10(peak^2 / MSE) over the whole set, in dB."""
    mse = float(np.mean((np.asarray(output, dtype=np.float64) - target.numpy().astype(np.float64)) ** 2))
    return float(10.0 * np.log10(peak * peak / mse))


@functools.lru_cache(maxsize=4)
def cached_classifier(seed: int = 0, epochs: int = 8, width: int = 8) -> tuple[DigitsNet, Split]:
    """train_classifier once per process for these arguments (tests share it; do not modify the model)."""
    return train_classifier(seed, epochs, width, progress=False)
