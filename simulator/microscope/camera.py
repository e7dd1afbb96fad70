"""Camera model: photons to digital numbers (domain reference 3.1, 8.4).

Per pixel, with mean signal ``S = QE * photons + dark * t_exp`` in electrons:

    e   = min(S, full_well)                     (per physical pixel)
    e_b = sum of e over b x b pixels            (binning)
    n   = Poisson(e_b) + N(0, (b sigma_read)^2) (noise)
    ADU = clip(offset + (gain / e_per_adu) * n, 0, 65535) // 2^(16 - bits)

[A, 3.1 "simulator camera model"; sCMOS defaults QE 0.8, sigma_read 1.5 e-, offset 100 ADU,
0.5 e-/ADU, 6.5 um pixels, 2048 x 2048]. Full well 30 ke- [L, sCMOS]. Lower bit depths keep
the top bits of the 16-bit conversion (so 8- and 12-bit modes cover the same range with
coarser steps) [A].

Noise is cheap by design (the render budget is 20 ms per 1024 x 1024 frame):

* above ``poisson_threshold_e`` the Poisson term is its normal approximation, combined with
  the read noise into one draw ``e_b + sqrt(e_b + (b sigma)^2) z``; below it the exact
  Poisson draw is used (``numpy`` Poisson costs ~40 ns per pixel, ~40x a bank draw);
* ``z`` comes from :class:`NormalBank`: a precomputed bank of iid standard normals; a frame
  takes ``(A[o1:o1+n] + B[o2:o2+n]) / sqrt(2)`` from two disjoint halves at random offsets, so
  within a frame every pixel's noise is iid N(0, 1); across frames noise values recur only
  as a randomly shifted pair. Drawing fresh normals costs ~10 ms per megapixel here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["BIT_DEPTHS", "CameraParams", "NormalBank", "bin_sum", "digitize"]

Float32Array = NDArray[np.float32]
UInt16Array = NDArray[np.uint16]

BIT_DEPTHS = (8, 12, 16)


@dataclass(frozen=True)
class CameraParams:
    """An sCMOS camera (defaults: domain reference 3.1 simulator defaults).

    Attributes:
        sensor_shape: (rows, columns) of physical pixels (2048 x 2048 [L, 3.1]).
        pixel_pitch_um: physical pixel size (6.5 um [L, 3.1]).
        quantum_efficiency: QE (0.8 [A, 3.1]).
        read_noise_e: read noise sigma, e- (1.5 [A, 3.1]).
        offset_adu: black level in 16-bit ADU (100 [A, 3.1]).
        e_per_adu: electrons per ADU at gain 1 (0.5 [A, 3.1]).
        full_well_e: full-well capacity, e- (30 000 [L]).
        dark_e_per_s: dark current, e-/px/s (0.5 [L, cooled sCMOS]).
        poisson_threshold_e: below this mean signal the exact Poisson draw is used.
        vignetting_corner: relative illumination at the full-sensor corner (0.8 [A]).
    """

    sensor_shape: tuple[int, int] = (2048, 2048)
    pixel_pitch_um: float = 6.5
    quantum_efficiency: float = 0.8
    read_noise_e: float = 1.5
    offset_adu: float = 100.0
    e_per_adu: float = 0.5
    full_well_e: float = 30000.0
    dark_e_per_s: float = 0.5
    poisson_threshold_e: float = 10.0
    vignetting_corner: float = 0.8


class NormalBank:
    """Standard normal draws for frames of up to ``max_pixels`` pixels (see module doc).

    Args:
        rng: picks the offsets (and fills the bank on first use).
        max_pixels: largest frame.
    """

    def __init__(self, rng: np.random.Generator, max_pixels: int) -> None:
        """Remember the generator; the bank is filled on first use."""
        self._rng = rng
        self._half = 2 * max_pixels
        self._bank: Float32Array | None = None

    def normal(self, shape: tuple[int, int]) -> Float32Array:
        """An array of iid N(0, 1) float32 values of ``shape``."""
        n = shape[0] * shape[1]
        if n > self._half // 2:
            raise ValueError(f"frame of {n} pixels exceeds the bank ({self._half // 2})")
        if self._bank is None:
            self._bank = self._rng.standard_normal(2 * self._half, dtype=np.float32)
            self._bank *= np.float32(1.0 / math.sqrt(2.0))
        o1, o2 = self._rng.integers(0, self._half - n + 1, size=2)
        a = self._bank[o1 : o1 + n]
        b = self._bank[self._half + o2 : self._half + o2 + n]
        return (a + b).reshape(shape)


def bin_sum(image: Float32Array, binning: int) -> Float32Array:
    """Sum ``binning x binning`` blocks (shape must be divisible)."""
    if binning == 1:
        return image
    h, w = image.shape
    out: Float32Array = image.reshape(h // binning, binning, w // binning, binning).sum(
        axis=(1, 3), dtype=np.float32
    )
    return out


def digitize(
    signal_e: Float32Array,
    camera: CameraParams,
    *,
    gain: float,
    binning: int,
    bit_depth: int,
    bank: NormalBank | None,
    rng: np.random.Generator,
) -> UInt16Array:
    """Noise, gain, offset and quantisation of an (unbinned) mean-electron image.

    Args:
        signal_e: mean electrons per physical pixel (modified in place: full-well clip).
        camera: camera parameters.
        gain: analog gain multiplier (ADU per electron = gain / e_per_adu).
        binning: b (sum of b x b pixels).
        bit_depth: 8, 12 or 16.
        bank: normal draws; ``None`` renders the noise-free expectation (rounded).
        rng: for the exact Poisson draws of low pixels.

    Returns:
        The digital image, uint16.
    """
    if bit_depth not in BIT_DEPTHS:
        raise ValueError(f"bit_depth must be one of {BIT_DEPTHS}, got {bit_depth}")
    # A mean photo-electron count is never negative; blurs of sharp edges (defocus, FFT
    # smoothing) can leave tiny negative values, which the Poisson draw would reject.
    np.clip(signal_e, np.float32(0.0), np.float32(camera.full_well_e), out=signal_e)
    e = bin_sum(signal_e, binning)
    if bank is not None:
        sigma_b = np.float32(binning * camera.read_noise_e)
        z = bank.normal(e.shape)
        noisy = np.sqrt(e + sigma_b * sigma_b)
        noisy *= z
        noisy += e
        low = e < np.float32(camera.poisson_threshold_e)
        if np.any(low):
            noisy[low] = rng.poisson(e[low]).astype(np.float32) + sigma_b * z[low]
        e = noisy
    scale = np.float32(gain / camera.e_per_adu / 2.0 ** (16 - bit_depth))
    adu = e * scale
    adu += np.float32(camera.offset_adu / 2.0 ** (16 - bit_depth) + 0.5)  # +0.5: round
    np.clip(adu, 0.0, float(2**bit_depth - 1), out=adu)
    out: UInt16Array = adu.astype(np.uint16)
    return out
