"""Camera-based imaging kernels (fundus, dermatoscopy, endoscopy) and generic pixel degradations.

Images are ``(B, C, H, W)`` (generic kernels also ``(B, C, D, H, W)``) in [0, 1]. All kernels are
deterministic (noise from recorded seeds) and never write into their input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..core.rng import per_sample_noise

__all__ = [
    "FONT_3X5",
    "illumination_field",
    "overlay",
    "pixelate",
    "quantize",
    "render_overlay_mask",
    "salt_pepper",
    "specular_highlight",
    "vignetting",
    "vignetting_gain",
]


def _radius(b: int, h: int, w: int, center: Tensor, dev, dt) -> Tensor:
    """Distance from per-sample centres (fractions of H, W), normalised by the half-diagonal."""
    cy = center[:, 0].to(device=dev, dtype=dt).reshape(b, 1, 1) * h
    cx = center[:, 1].to(device=dev, dtype=dt).reshape(b, 1, 1) * w
    yy = torch.arange(h, device=dev, dtype=dt).reshape(1, h, 1) + 0.5
    xx = torch.arange(w, device=dev, dtype=dt).reshape(1, 1, w) + 0.5
    return torch.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / (0.5 * math.hypot(h, w))


def vignetting_gain(r: Tensor, law: str, corner_gain: Tensor, coeffs: Tensor | None = None) -> Tensor:
    """Relative illumination ``g(r)`` at normalised radius ``r`` (1 = image corner).

    ``"cos4"``: the cos^4 law of an ideal lens, ``g = cos^4(atan(r/f)) = (1 + k r^2)^{-2}`` with
    ``k = corner_gain^{-1/2} - 1`` so that ``g(1) = corner_gain``.
    ``"poly"``: ``g = 1 + a_2 r^2 + a_4 r^4 + a_6 r^6`` (Kang & Weiss 2000 style) with ``coeffs``
    ``(B, 3)``; if ``coeffs`` is None, ``a_2 = corner_gain - 1`` and ``a_4 = a_6 = 0``.

    Args:
        r: ``(B, H, W)`` normalised radius.
        law: ``"cos4"`` or ``"poly"``.
        corner_gain: ``(B,)`` gain at ``r = 1`` in (0, 1].
        coeffs: Optional ``(B, 3)`` polynomial coefficients.

    Returns:
        ``(B, H, W)`` gains, clipped to >= 0.
    """
    b = r.shape[0]
    cg = corner_gain.to(device=r.device, dtype=r.dtype).reshape(b, 1, 1)
    if law == "cos4":
        k = cg.rsqrt() - 1
        return (1 + k * r**2) ** -2
    if law == "poly":
        if coeffs is None:
            a2, a4, a6 = cg - 1, torch.zeros_like(cg), torch.zeros_like(cg)
        else:
            c = coeffs.to(device=r.device, dtype=r.dtype).reshape(b, 3, 1, 1)
            a2, a4, a6 = c[:, 0], c[:, 1], c[:, 2]
        return (1 + a2 * r**2 + a4 * r**4 + a6 * r**6).clamp_min(0)
    raise ValueError(f"`law` must be 'cos4' or 'poly', got {law!r}.")


def vignetting(
    x: Tensor, corner_gain: Tensor, center: Tensor, law: str = "cos4", coeffs: Tensor | None = None
) -> Tensor:
    """Radial fall-off of illumination/lens transmission: ``y = x g(r)`` (see :func:`vignetting_gain`)."""
    b, _, h, w = x.shape
    r = _radius(b, h, w, center, x.device, x.dtype)
    return x * vignetting_gain(r, law, corner_gain, coeffs).unsqueeze(1)


def illumination_field(
    shape: tuple[int, int], coeffs: Tensor, spot: Tensor, ratio: Tensor, *, device, dtype
) -> Tensor:
    """Smooth multiplicative illumination fields ``(B, H, W)`` with max/min equal to ``ratio``.

    ``log g = ln(ratio) (f - (max f + min f)/2) / (max f - min f)`` with
    ``f = c_1 X + c_2 Y + c_3 X^2 + c_4 Y^2 + c_5 XY + c_6 exp(-|p - p_s|^2 / 2 s^2)``.

    Args:
        shape: ``(H, W)``.
        coeffs: ``(B, 6)`` basis coefficients.
        spot: ``(B, 3)`` light-spot centre (fractions of H, W) and width (fraction of the edge).
        ratio: ``(B,)`` max/min illumination ratio (>= 1).
        device: Output device.
        dtype: Output dtype.

    Returns:
        Gains with geometric mean position 1 between the extremes.
    """
    h, w = shape
    b = coeffs.shape[0]
    yy = torch.linspace(-1, 1, h, device=device, dtype=dtype).reshape(1, h, 1).expand(1, h, w)
    xx = torch.linspace(-1, 1, w, device=device, dtype=dtype).reshape(1, 1, w).expand(1, h, w)
    sp = spot.to(device=device, dtype=dtype)
    sy, sx = sp[:, 0].reshape(b, 1, 1) * 2 - 1, sp[:, 1].reshape(b, 1, 1) * 2 - 1
    blob = torch.exp(-((yy - sy) ** 2 + (xx - sx) ** 2) / (2 * (sp[:, 2].reshape(b, 1, 1) * 2) ** 2))
    basis = torch.cat([xx, yy, xx**2, yy**2, xx * yy]).unsqueeze(0)  # (1, 5, H, W)
    c = coeffs.to(device=device, dtype=dtype)
    f = (c[:, :5].reshape(b, 5, 1, 1) * basis).sum(1) + c[:, 5].reshape(b, 1, 1) * blob
    fmax = f.reshape(b, -1).amax(1).reshape(b, 1, 1)
    fmin = f.reshape(b, -1).amin(1).reshape(b, 1, 1)
    span = (fmax - fmin).clamp_min(1e-12)
    lr = torch.log(ratio.to(device=device, dtype=dtype)).reshape(b, 1, 1)
    return torch.exp(lr * ((f - (fmax + fmin) / 2) / span))


def specular_highlight(
    x: Tensor, centers: Tensor, radii_px: Tensor, intensity: Tensor, elongation: Tensor, angle: Tensor
) -> Tensor:
    """Specular reflections: flat-topped elliptical spots that drive pixels toward saturation.

    $$ m = \\max_k \\exp(-(d_k / r_k)^4),\\quad y = x + s\\, m\\, (1 - x) $$

    with ``d_k`` the elliptical distance to spot ``k``. Pixels where ``m = 0`` are unchanged and
    ``s = 1`` saturates the spot cores to 1 in every channel.

    Args:
        x: ``(B, C, H, W)`` in [0, 1].
        centers: ``(B, K, 2)`` centres (fractions of H, W).
        radii_px: ``(B, K)`` semi-minor radii in pixels.
        intensity: ``(B,)`` ``s`` in [0, 1].
        elongation: ``(B, K)`` axis ratio >= 1.
        angle: ``(B, K)`` orientation in radians.

    Returns:
        The batch with highlights.
    """
    b, _, h, w = x.shape
    dev, dt = x.device, x.dtype
    yy = torch.arange(h, device=dev, dtype=dt).reshape(1, 1, h, 1) + 0.5
    xx = torch.arange(w, device=dev, dtype=dt).reshape(1, 1, 1, w) + 0.5
    cy = centers[..., 0].to(device=dev, dtype=dt)[..., None, None] * h
    cx = centers[..., 1].to(device=dev, dtype=dt)[..., None, None] * w
    a = angle.to(device=dev, dtype=dt)[..., None, None]
    e = elongation.to(device=dev, dtype=dt)[..., None, None]
    r = radii_px.to(device=dev, dtype=dt)[..., None, None]
    u = (xx - cx) * torch.cos(a) + (yy - cy) * torch.sin(a)
    v = -(xx - cx) * torch.sin(a) + (yy - cy) * torch.cos(a)
    d = torch.sqrt((u / e) ** 2 + v**2)
    m = torch.exp(-((d / r) ** 4)).amax(1, keepdim=True)
    m = torch.where(m < 1e-6, torch.zeros_like(m), m)
    s = intensity.to(device=dev, dtype=dt).reshape(b, 1, 1, 1)
    return x + s * m * (1 - x)


# ----------------------------------------------------------------------------- overlay
#: A 3x5 bitmap font (rows top to bottom, 3 bits each, MSB = left) for burned-in annotations.
FONT_3X5: dict[str, tuple[int, int, int, int, int]] = {
    "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 7, 1, 7),
    "4": (5, 5, 7, 1, 1), "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 2, 2, 2),
    "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7), "A": (2, 5, 7, 5, 5), "C": (7, 4, 4, 4, 7),
    "D": (6, 5, 5, 5, 6), "E": (7, 4, 6, 4, 7), "H": (5, 5, 7, 5, 5), "L": (4, 4, 4, 4, 7),
    "M": (5, 7, 7, 5, 5), "N": (6, 5, 5, 5, 5), "O": (7, 5, 5, 5, 7), "R": (6, 5, 6, 5, 5),
    "S": (7, 4, 7, 1, 7), "T": (7, 2, 2, 2, 2), "X": (5, 5, 2, 5, 5), "Z": (7, 1, 2, 4, 7),
    ":": (0, 2, 0, 2, 0), ".": (0, 0, 0, 0, 2), "/": (1, 1, 2, 4, 4), "-": (0, 0, 7, 0, 0),
    " ": (0, 0, 0, 0, 0),
}
_CHARS = "".join(FONT_3X5)


def _draw_text(mask: Tensor, text: str, top: int, left: int, scale: int) -> None:
    h, w = mask.shape
    for i, ch in enumerate(text):
        glyph = FONT_3X5.get(ch.upper(), FONT_3X5[" "])
        x0 = left + i * 4 * scale
        for row, bits in enumerate(glyph):
            for col in range(3):
                if bits >> (2 - col) & 1:
                    y0, xs = top + row * scale, x0 + col * scale
                    if y0 < h and xs < w and y0 + scale > 0 and xs + scale > 0:
                        mask[max(y0, 0) : y0 + scale, max(xs, 0) : xs + scale] = 1.0


def render_overlay_mask(
    shape: tuple[int, int], kind: int, text_codes: Tensor, position: Tensor, scale: int, tick_px: float
) -> Tensor:
    """Render one overlay mask ``(H, W)`` in {0, 1}.

    Args:
        shape: ``(H, W)``.
        kind: 0 = text, 1 = ruler (a line with ticks every ``tick_px`` and numbered major ticks),
            2 = both.
        text_codes: ``(L,)`` indices into the font's characters (the burned-in string).
        position: ``(2,)`` top-left of the text (fractions); the ruler runs along the opposite edge.
        scale: Font pixel size (each glyph is 3x5 cells of ``scale`` pixels).
        tick_px: Ruler tick spacing in pixels.

    Returns:
        The float mask.
    """
    h, w = shape
    mask = torch.zeros(h, w)
    if kind in (0, 2):
        text = "".join(_CHARS[int(c) % len(_CHARS)] for c in text_codes.tolist())
        _draw_text(mask, text, int(float(position[0]) * h), int(float(position[1]) * w), scale)
    if kind in (1, 2):
        base = h - 1 - max(1, scale)
        mask[base : base + max(1, scale // 2 + 1), :] = 1.0
        n_ticks = int(w / tick_px) + 1
        for k in range(n_ticks):
            x0 = round(2 + k * tick_px)
            if x0 >= w:
                break
            major = k % 5 == 0
            length = (4 if major else 2) * max(1, scale)
            mask[max(0, base - length) : base, x0 : x0 + max(1, scale // 2 + 1)] = 1.0
            if major and scale >= 1:
                _draw_text(mask, str(k // 5), base - length - 6 * scale, x0 + 2, scale)
    return mask


def overlay(x: Tensor, masks: Tensor, color: Tensor, opacity: Tensor) -> Tensor:
    """Composite burned-in overlays: ``y = x (1 - a m) + a m c``.

    Args:
        x: ``(B, C, H, W)`` in [0, 1].
        masks: ``(B, H, W)`` in [0, 1].
        color: ``(B, 3)`` RGB overlay colour (grey images use its mean).
        opacity: ``(B,)`` ``a`` in [0, 1].

    Returns:
        The annotated batch.
    """
    b, c = x.shape[:2]
    col = color.to(device=x.device, dtype=x.dtype)
    col = col if c == 3 else col.mean(1, keepdim=True).expand(b, c)
    m = masks.to(device=x.device, dtype=x.dtype).unsqueeze(1) * opacity.to(device=x.device, dtype=x.dtype).reshape(b, 1, 1, 1)
    return x * (1 - m) + m * col.reshape(b, c, 1, 1)


# ----------------------------------------------------------------------------- generic
def pixelate(x: Tensor, block: float, phase: Sequence[float] = ()) -> Tensor:
    """Average over square cells of ``block`` pixels (a grid with phase ``phase``) and fill each cell.

    Pixel ``p`` belongs to cell ``floor((p + phase) / block)`` along each axis, so fractional
    block sizes and sub-pixel grid phases are allowed (the cells then hold alternately
    ``floor(block)`` and ``ceil(block)`` pixels, like a box-filtered resize).

    Args:
        x: ``(B, C, *spatial)`` (2 or 3 spatial axes); one block size and phase for the batch.
        block: Cell edge in pixels (``<= 1`` is the identity).
        phase: Grid phase per spatial axis in pixels, in ``[0, block)``.

    Returns:
        The pixelated batch (each cell holds its mean, so the image mean is preserved).
    """
    nd = x.ndim - 2
    if block <= 1:
        return x
    ph = list(phase) if len(phase) else [0.0] * nd
    size = list(x.shape[2:])
    ids = None
    for ax, n in enumerate(size):
        cell = torch.floor((torch.arange(n, dtype=torch.float64) + ph[ax]) / block).long()
        cell = cell - cell[0]
        ids = cell if ids is None else ids.unsqueeze(-1) * (int(cell[-1]) + 1) + cell
    ids = ids.reshape(-1).to(x.device)
    n_cells = int(ids.max()) + 1
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    sums = torch.zeros(*flat.shape[:2], n_cells, dtype=x.dtype, device=x.device).index_add(2, ids, flat)
    counts = torch.zeros(n_cells, dtype=x.dtype, device=x.device).index_add(
        0, ids, torch.ones_like(ids, dtype=x.dtype)
    )
    return (sums / counts).index_select(2, ids).reshape(x.shape)


def salt_pepper(x: Tensor, amount: Tensor, salt_fraction: Tensor, low: Tensor, high: Tensor, seeds: Tensor) -> Tensor:
    """Dead (stuck-low) and hot (stuck-high) pixels: every channel of a defective pixel is replaced.

    A pixel is dead with probability ``amount (1 - salt_fraction)`` and hot with probability
    ``amount * salt_fraction``, from one uniform field per sample.

    Args:
        x: ``(B, C, *spatial)``.
        amount: ``(B,)`` fraction of defective pixels.
        salt_fraction: ``(B,)`` fraction of defective pixels that are hot.
        low: ``(B,)`` value of dead pixels.
        high: ``(B,)`` value of hot pixels.
        seeds: ``(B,)`` seeds.

    Returns:
        The corrupted batch.
    """
    b = x.shape[0]
    u = per_sample_noise(seeds, x.shape[2:], device=x.device, dtype=torch.float64, kind="uniform")
    shape = (b,) + (1,) * (x.ndim - 2)
    a = amount.to(device=x.device, dtype=torch.float64).reshape(shape)
    s = salt_fraction.to(device=x.device, dtype=torch.float64).reshape(shape)
    dead = (u < a * (1 - s)).unsqueeze(1)
    hot = (u >= 1 - a * s).unsqueeze(1)
    lo = low.to(device=x.device, dtype=x.dtype).reshape(b, *([1] * (x.ndim - 1)))
    hi = high.to(device=x.device, dtype=x.dtype).reshape(b, *([1] * (x.ndim - 1)))
    y = torch.where(dead, lo.expand_as(x), x)
    return torch.where(hot, hi.expand_as(x), y)


def quantize(x: Tensor, levels: Tensor, phase: Tensor | None = None) -> Tensor:
    """Uniform quantisation of [0, 1] to ``levels`` grey levels with an ADC offset ``phase``.

    $$ y = \\frac{\\mathrm{round}(x (L - 1) + \\phi) - \\phi}{L - 1} $$

    clipped to [0, 1]; ``phase`` (a fraction of one step, ``(B,)``) shifts the decision thresholds
    as a DC offset of the converter does; 0 gives plain rounding.

    Args:
        x: ``(B, C, *spatial)`` in [0, 1] (clipped first).
        levels: ``(B,)`` number of levels ``L >= 2`` (``2^bits`` for a bit depth).
        phase: ``(B,)`` threshold offset in steps, in [0, 1); ``None`` = 0.

    Returns:
        The quantised batch.
    """
    shape = (-1, *([1] * (x.ndim - 1)))
    lv = levels.to(device=x.device, dtype=x.dtype).reshape(shape) - 1
    ph = 0.0 if phase is None else phase.to(device=x.device, dtype=x.dtype).reshape(shape)
    return ((torch.round(x.clamp(0.0, 1.0) * lv + ph) - ph) / lv).clamp(0.0, 1.0)
