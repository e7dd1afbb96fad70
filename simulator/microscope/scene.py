"""What the sample looks like: chamber walls, gel, fibroblasts and tumoroids (8.4).

Images are built on the sensor's pixel grid in sample coordinates (um). Quantities:

* brightfield: relative transmission ``T`` (1 = clear gel); the renderer multiplies by the
  lamp flux and vignetting. A tumoroid of radius ``R``, necrotic core ``r_n`` and live
  density ``rho_live`` in its viable shell has, at projected distance ``r`` from its
  centre, chord lengths ``L(r) = 2 sqrt(R^2 - r^2)``, ``L_n(r) = 2 sqrt(r_n^2 - r^2)`` and
  absorbance (Beer-Lambert, [A, 8.4 "I = I0 exp(-mu path)"])

      A = a_edge + mu_live rho_live (L - L_n) + mu_dead [(1 - rho_live)(L - L_n) + L_n]

  so the body is dark, dead tissue and the necrotic core darker; ``a_edge`` is the
  scattering of the dense body that gives it a sharp outline. Transmission is
  ``1 - cov (1 - exp(-A)) + halo``, with ``cov`` the pixel coverage of the disc (a linear
  ramp one pixel wide centred on ``R``) and a bright refractive halo
  ``h exp(-((r - R - w)/w)^2)`` just outside the edge.
* fluorescence: emission in photons/px/ms. Live stain (calcein, 2.8) ``q_live rho_live
  (L - L_n)``; dead stain (EthD-1/PI) ``q_dead [(1 - rho_live)(L - L_n) + L_n p]`` with
  stain penetration ``p = exp(-(R - r_n)/lambda_pen)`` into the core ([V qualitative, R137]).
* defocus: each tumoroid's own contribution (its light loss in brightfield, its emission
  in the stains) is blurred by a Gaussian of its own sigma (from ``|z_stage - z_j|``, see
  :func:`simulator.microscope.optics.defocus_sigma_um`); the background by the sigma of
  the gel mid-plane.
* gel: texture ``1 + a_tex n(x, y)`` (``n`` smoothed unit-variance noise on a periodic tile
  sampled by absolute pixel index, so a place looks the same when revisited); PDMS outside
  the chambers slightly darker; dark chamber walls.
* fibroblasts: thin line segments (elongated CAFs), faint in brightfield, visible in the
  live stain.

Every numeric appearance default is an engineering assumption [A] chosen to look like
low-magnification brightfield of gel-embedded organoids ([V, R110]).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from simulator.biology import ChamberLayout, FibroblastLayout
from simulator.microscope.optics import gaussian_blur, gaussian_blur_local

__all__ = [
    "CHANNELS",
    "Appearance",
    "TumoroidView",
    "canonical_channel",
    "chamber_background",
    "draw_tumoroid",
    "gel_texture_tile",
]

Float32Array = NDArray[np.float32]
FloatArray = NDArray[np.float64]

#: Channel aliases -> canonical name.
CHANNELS = {
    "brightfield": "brightfield",
    "bf": "brightfield",
    "live": "live",
    "green": "live",
    "calcein": "live",
    "dead": "dead",
    "red": "dead",
    "ethd1": "dead",
    "pi": "dead",
}


def canonical_channel(channel: str) -> str:
    """Return the canonical channel name ("brightfield", "live" or "dead")."""
    try:
        return CHANNELS[channel.lower()]
    except KeyError:
        raise ValueError(f"unknown channel {channel!r}; use one of {sorted(CHANNELS)}") from None


@dataclass(frozen=True)
class Appearance:
    """Optical appearance of the sample (all [A], see module docstring).

    Attributes:
        bf_photons_px_ms: brightfield photons per pixel per ms through clear gel.
        pdms_transmission: transmission outside the chambers.
        wall_transmission: transmission of the chamber walls.
        wall_width_um: drawn width of a wall.
        texture_amplitude: relative gel texture contrast (brightfield).
        texture_scale_px: correlation length of the gel texture, pixels.
        edge_absorbance: a_edge.
        live_absorbance_per_um: mu_live, 1/um.
        dead_absorbance_per_um: mu_dead, 1/um.
        halo_amplitude: h, relative brightness of the refractive rim.
        halo_width_um: w, rim width in focus.
        fibroblast_absorbance: absorbance of one fibroblast line (brightfield).
        fibroblast_width_um: Gaussian sigma of a fibroblast's width.
        live_photons_per_um_ms: q_live, photons/px/ms per um of live path.
        dead_photons_per_um_ms: q_dead, photons/px/ms per um of dead path.
        fibroblast_live_photons_ms: live-stain photons/px/ms on a fibroblast line.
        autofluorescence_photons_px_ms: gel background in the stain channels.
        stain_penetration_um: lambda_pen of the dead stain into a necrotic core.
    """

    bf_photons_px_ms: float = 2000.0
    pdms_transmission: float = 0.92
    wall_transmission: float = 0.45
    wall_width_um: float = 12.0
    texture_amplitude: float = 0.02
    texture_scale_px: float = 3.0
    edge_absorbance: float = 0.35
    live_absorbance_per_um: float = 0.004
    dead_absorbance_per_um: float = 0.010
    halo_amplitude: float = 0.12
    halo_width_um: float = 3.0
    fibroblast_absorbance: float = 0.08
    fibroblast_width_um: float = 1.5
    live_photons_per_um_ms: float = 1.0
    dead_photons_per_um_ms: float = 1.0
    fibroblast_live_photons_ms: float = 10.0
    autofluorescence_photons_px_ms: float = 0.5
    stain_penetration_um: float = 100.0


def gel_texture_tile(rng: np.random.Generator, size: int, scale_px: float) -> Float32Array:
    """Periodic smoothed noise with zero mean and unit variance (``size x size``)."""
    noise = rng.standard_normal((size, size))
    f = np.fft.fftfreq(size)
    transfer = np.exp(-2.0 * (math.pi * scale_px) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    tile = np.fft.ifft2(np.fft.fft2(noise) * transfer).real
    tile -= tile.mean()
    tile /= tile.std()
    out: Float32Array = tile.astype(np.float32)
    return out


def _chamber_masks(
    xs_um: FloatArray, ys_um: FloatArray, layout: ChamberLayout, wall_um: float
) -> tuple[NDArray[np.bool_], NDArray[np.bool_], list[int]]:
    inside = np.zeros((ys_um.size, xs_um.size), dtype=bool)
    wall = np.zeros_like(inside)
    visible = []
    half = wall_um / 2.0
    for k in range(layout.n_chambers):
        x0, y0 = layout.origin_um(k)
        x1, y1 = x0 + layout.width_um, y0 + layout.length_um
        in_x = (xs_um >= x0) & (xs_um < x1)
        in_y = (ys_um >= y0) & (ys_um < y1)
        if not (in_x.any() or (np.abs(xs_um - x0) < half).any()):
            continue
        if not (in_y.any() or (np.abs(ys_um - y0) < half).any()):
            continue
        visible.append(k)
        inside |= in_y[:, None] & in_x[None, :]
        near_x = (np.abs(xs_um - x0) < half) | (np.abs(xs_um - x1) < half)
        near_y = (np.abs(ys_um - y0) < half) | (np.abs(ys_um - y1) < half)
        span_x = (xs_um >= x0 - half) & (xs_um < x1 + half)
        span_y = (ys_um >= y0 - half) & (ys_um < y1 + half)
        wall |= (span_y[:, None] & near_x[None, :]) | (near_y[:, None] & span_x[None, :])
    return inside, wall, visible


def _fibroblast_lines(
    xs_um: FloatArray,
    ys_um: FloatArray,
    cells: Sequence[tuple[tuple[float, float], FibroblastLayout]],
    px: float,
) -> Float32Array:
    """Line density (about 1 per pixel a line crosses), before the width blur."""
    h, w = ys_um.size, xs_um.size
    image = np.zeros(h * w, dtype=np.float64)
    x_lo, y_lo = xs_um[0] - 0.5 * px, ys_um[0] - 0.5 * px
    for (ox, oy), fib in cells:
        cx, cy = fib.x_um + ox, fib.y_um + oy
        reach = 0.5 * fib.length_um
        keep = (
            (cx + reach >= x_lo)
            & (cx - reach <= x_lo + w * px)
            & (cy + reach >= y_lo)
            & (cy - reach <= y_lo + h * px)
        )
        if not keep.any():
            continue
        n_pts = math.ceil(float(fib.length_um.max()) / (0.5 * px)) + 1
        t = np.linspace(-0.5, 0.5, n_pts)[None, :]
        length = fib.length_um[keep][:, None]
        ang = fib.angle_rad[keep][:, None]
        px_x = (cx[keep][:, None] + t * length * np.cos(ang) - x_lo) / px
        px_y = (cy[keep][:, None] + t * length * np.sin(ang) - y_lo) / px
        weight = np.broadcast_to(length / (n_pts - 1) / px, px_x.shape)
        col, row = np.floor(px_x).astype(np.int64), np.floor(px_y).astype(np.int64)
        ok = (col >= 0) & (col < w) & (row >= 0) & (row < h)
        image += np.bincount((row * w + col)[ok], weights=weight[ok], minlength=h * w)
    return image.reshape(h, w).astype(np.float32)


def chamber_background(
    channel: str,
    xs_um: FloatArray,
    ys_um: FloatArray,
    *,
    layout: ChamberLayout,
    fibroblasts: Sequence[tuple[tuple[float, float], FibroblastLayout]],
    texture: Float32Array,
    blur_px: float,
    appearance: Appearance,
    pixel_um: float,
) -> Float32Array:
    """Background of a field: transmission (brightfield) or photons/px/ms (stains).

    Args:
        channel: canonical channel.
        xs_um: stage x of the pixel columns' centres.
        ys_um: stage y of the pixel rows' centres.
        layout: chamber geometry.
        fibroblasts: (chamber origin on the stage, layout) of the chambers in view.
        texture: periodic gel texture tile.
        blur_px: defocus blur sigma of the gel plane, pixels.
        appearance: appearance parameters.
        pixel_um: sample pixel size.
    """
    ap = appearance
    px = pixel_um
    inside, wall, _ = _chamber_masks(xs_um, ys_um, layout, ap.wall_width_um)
    n = texture.shape[0]
    cols = np.floor(xs_um / px).astype(np.int64) % n
    rows = np.floor(ys_um / px).astype(np.int64) % n
    tex = texture[rows[:, None], cols[None, :]]
    lines = gaussian_blur(
        _fibroblast_lines(xs_um, ys_um, fibroblasts, px), ap.fibroblast_width_um / px
    )
    if channel == "brightfield":
        gel = (1.0 + ap.texture_amplitude * tex) * np.exp(-ap.fibroblast_absorbance * lines)
        image = np.where(inside, gel, np.float32(ap.pdms_transmission))
        image = np.where(wall, np.float32(ap.wall_transmission), image)
    else:
        gel = ap.autofluorescence_photons_px_ms * (1.0 + 0.1 * tex)
        if channel == "live":
            gel = gel + ap.fibroblast_live_photons_ms * lines
        image = np.where(inside, gel, np.float32(0.4 * ap.autofluorescence_photons_px_ms))
        image = np.where(wall, np.float32(0.2 * ap.autofluorescence_photons_px_ms), image)
    return gaussian_blur(image.astype(np.float32), blur_px)


@dataclass(frozen=True)
class TumoroidView:
    """One tumoroid as the renderer needs it (stage coordinates, um).

    Attributes:
        label: label in truth masks (global index + 1).
        x_um: stage x of the centre.
        y_um: stage y of the centre.
        radius_um: R.
        core_um: r_n.
        live_density: live fraction of the viable shell, rho_live.
        sigma_um: defocus blur sigma.
    """

    label: int
    x_um: float
    y_um: float
    radius_um: float
    core_um: float
    live_density: float
    sigma_um: float


def _window(coords_um: FloatArray, centre_um: float, reach_um: float, px: float) -> tuple[int, int]:
    lo = math.floor((centre_um - reach_um - coords_um[0]) / px)
    hi = math.ceil((centre_um + reach_um - coords_um[0]) / px) + 1
    return max(lo, 0), min(hi, coords_um.size)


def draw_tumoroid(
    image: Float32Array,
    gain: Float32Array,
    channel: str,
    xs_um: FloatArray,
    ys_um: FloatArray,
    t: TumoroidView,
    appearance: Appearance,
    pixel_um: float,
) -> None:
    """Draw one tumoroid into ``image`` in place (only its bounding box is touched).

    Args:
        image: photons/px/ms (flux x vignetting x background already applied).
        gain: flux x vignetting of the stain channels (photons scale), same shape.
        channel: canonical channel.
        xs_um: stage x of the columns.
        ys_um: stage y of the rows.
        t: the tumoroid.
        appearance: appearance parameters.
        pixel_um: sample pixel size.
    """
    ap = appearance
    px = pixel_um
    halo_w = ap.halo_width_um
    sigma_px = t.sigma_um / px
    reach = t.radius_um + 4.0 * halo_w + 3.0 * t.sigma_um + 2.0 * px
    c0, c1 = _window(xs_um, t.x_um, reach, px)
    r0, r1 = _window(ys_um, t.y_um, reach, px)
    if c0 >= c1 or r0 >= r1:
        return
    dx = (xs_um[c0:c1] - t.x_um).astype(np.float32)
    dy = (ys_um[r0:r1] - t.y_um).astype(np.float32)
    r2 = dy[:, None] ** 2 + dx[None, :] ** 2
    big, core = t.radius_um, t.core_um
    chord = 2.0 * np.sqrt(np.maximum(np.float32(big * big) - r2, 0.0))
    chord_core = 2.0 * np.sqrt(np.maximum(np.float32(core * core) - r2, 0.0)) if core else 0.0
    shell = chord - chord_core
    rho = np.float32(t.live_density)
    box = (slice(r0, r1), slice(c0, c1))
    if channel == "brightfield":
        r = np.sqrt(r2)
        cov = np.clip((big - r) / np.float32(px) + 0.5, 0.0, 1.0)
        absorb = (
            ap.edge_absorbance
            + ap.live_absorbance_per_um * rho * shell
            + ap.dead_absorbance_per_um * ((1.0 - rho) * shell + chord_core)
        )
        halo = ap.halo_amplitude * np.exp(-(((r - big - halo_w) / np.float32(halo_w)) ** 2))
        loss = cov * (1.0 - np.exp(-absorb)) - halo * (1.0 - cov)
        image[box] *= 1.0 - gaussian_blur_local(loss.astype(np.float32), sigma_px)
    elif channel == "live":
        emission = ap.live_photons_per_um_ms * rho * shell
        image[box] += gain[box] * gaussian_blur_local(emission.astype(np.float32), sigma_px)
    else:
        pen = math.exp(-(big - core) / ap.stain_penetration_um)
        emission = ap.dead_photons_per_um_ms * ((1.0 - rho) * shell + pen * chord_core)
        image[box] += gain[box] * gaussian_blur_local(emission.astype(np.float32), sigma_px)
