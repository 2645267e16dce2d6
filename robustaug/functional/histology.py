"""Histopathology kernels: stain variation in optical-density space, defocus, compression, slide defects.

Images are bright-field RGB ``(B, 3, H, W)`` in [0, 1] (1 = the unattenuated illumination).
Optical density (Beer-Lambert) is ``OD = -log10(I)``; stains add in OD:
``OD = sum_s c_s v_s`` with unit stain vectors ``v_s`` (Ruifrok & Johnston 2001). All kernels are
deterministic (noise from recorded seeds) and never write into their input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.rng import per_sample_noise

__all__ = [
    "INK_COLORS_OD",
    "OD_EPS",
    "RUIFROK_HED",
    "bubble",
    "defocus",
    "defocus_radius_px",
    "disk_kernel",
    "hed_jitter",
    "ink_marker",
    "jpeg",
    "macenko_stain_matrix",
    "od_to_rgb",
    "rgb_to_hed",
    "rgb_to_od",
    "stain_matrix_perturbation",
    "tile_seam",
    "tissue_fold",
]

#: Smallest transmitted intensity used in OD (OD <= 6).
OD_EPS = 1e-6

_HED = torch.tensor([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=torch.float64)
#: Ruifrok & Johnston (2001) stain OD vectors (rows H, E, DAB), normalised to unit length.
RUIFROK_HED = _HED / _HED.norm(dim=1, keepdim=True)

#: OD vectors (per unit density) of pathologists' marker inks, from their transmitted colours.
INK_COLORS_OD = {
    "green": [0.70, 0.22, 0.46],
    "blue": [0.82, 0.52, 0.12],
    "black": [1.00, 1.00, 0.92],
    "red": [0.12, 0.92, 0.82],
}


def rgb_to_od(x: Tensor) -> Tensor:
    """Optical density ``-log10(max(I, 1e-6))``."""
    return -torch.log10(x.clamp_min(OD_EPS))


def od_to_rgb(od: Tensor) -> Tensor:
    """Transmitted intensity ``10^{-OD}`` clipped to [0, 1]."""
    return torch.pow(10.0, -od).clamp(0.0, 1.0)


def _check_rgb(x: Tensor, name: str = "x") -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"`{name}` must be an RGB batch (B, 3, H, W), got shape {tuple(x.shape)}.")


def rgb_to_hed(x: Tensor) -> Tensor:
    """Ruifrok-Johnston colour deconvolution: stain concentrations ``(B, 3, H, W)`` (H, E, DAB) in OD."""
    _check_rgb(x)
    inv = torch.linalg.inv(RUIFROK_HED).to(device=x.device, dtype=x.dtype)
    return torch.einsum("bchw,cs->bshw", rgb_to_od(x), inv)


def hed_jitter(x: Tensor, alpha: Tensor, beta: Tensor) -> Tensor:
    """Per-stain scale and shift of the Ruifrok-Johnston concentrations (Tellez et al. 2019).

    $$ c = OD\\,M^{-1},\\quad c'_s = \\alpha_s c_s + \\beta_s,\\quad I' = 10^{-c' M} $$

    Args:
        x: RGB ``(B, 3, H, W)`` in [0, 1].
        alpha: ``(B, 3)`` scales for H, E, DAB.
        beta: ``(B, 3)`` shifts in OD units.

    Returns:
        The re-stained RGB batch in [0, 1]; ``alpha = 1, beta = 0`` is the identity (pixels darker
        than OD 6 are clipped to it).
    """
    _check_rgb(x)
    bsz, _, h, w = x.shape
    m = RUIFROK_HED.to(device=x.device, dtype=torch.float64)
    a = alpha.to(device=x.device, dtype=torch.float64).reshape(-1, 3)
    b = beta.to(device=x.device, dtype=torch.float64).reshape(-1, 3)
    # One per-sample affine map of OD: od' = od M^-1 diag(a) M + b M (a 1x1 grouped convolution).
    lin = torch.linalg.inv(m).unsqueeze(0) * a.unsqueeze(1) @ m  # (B, 3, 3): rows in, cols out
    bias = (b @ m).to(x.dtype).reshape(-1)
    wgt = lin.transpose(1, 2).reshape(bsz * 3, 3, 1, 1).to(x.dtype)
    od = torch.nn.functional.conv2d(rgb_to_od(x).reshape(1, bsz * 3, h, w), wgt, bias, groups=bsz)
    return od_to_rgb(od.reshape(bsz, 3, h, w))


def macenko_stain_matrix(
    x: Tensor, od_threshold: float = 0.15, percentile: float = 1.0, min_pixels: int = 16
) -> Tensor:
    """Estimate the H and E stain vectors of one RGB image with Macenko's method.

    Pixels with OD below ``od_threshold`` in any channel (background) are dropped; the remaining OD
    vectors are projected on the plane of the two leading eigenvectors of their covariance; the
    stain vectors are the directions at the ``percentile`` and ``100 - percentile`` percentiles of
    the angle in that plane. The vector with the larger red OD is haematoxylin.

    Args:
        x: RGB ``(3, H, W)`` in [0, 1].
        od_threshold: Background OD threshold.
        percentile: Robust extreme-angle percentile (Macenko et al. use 1).
        min_pixels: Fewer tissue pixels than this returns the Ruifrok-Johnston H and E vectors.

    Returns:
        ``(2, 3)`` float64 unit stain vectors (rows H, E) with non-negative entries.

    References:
        Macenko et al., "A method for normalizing histology slides for quantitative analysis",
        ISBI 2009.
    """
    od = rgb_to_od(x.detach().to(torch.float64)).reshape(3, -1).T  # (N, 3)
    od = od[(od > od_threshold).all(dim=1)]
    ref = RUIFROK_HED[:2].clone()
    if od.shape[0] < min_pixels:
        return ref
    cov = torch.cov(od.T)
    _, vecs = torch.linalg.eigh(cov)
    plane = vecs[:, [2, 1]]  # leading two
    plane = plane * torch.where(plane.sum(0) < 0, -1.0, 1.0).to(plane)
    proj = od @ plane
    phi = torch.atan2(proj[:, 1], proj[:, 0])
    q = torch.tensor([percentile / 100, 1 - percentile / 100], dtype=torch.float64)
    lo, hi = torch.quantile(phi, q)
    v1 = plane @ torch.stack([torch.cos(lo), torch.sin(lo)])
    v2 = plane @ torch.stack([torch.cos(hi), torch.sin(hi)])
    v = torch.stack([v1, v2]) if v1[0] > v2[0] else torch.stack([v2, v1])
    v = v.clamp_min(0)
    v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)
    if not torch.isfinite(v).all() or float(torch.abs(v[0] @ v[1])) > 0.995:
        return ref
    return v


def stain_matrix_perturbation(x: Tensor, stain: Tensor, new_stain: Tensor) -> Tensor:
    """Re-render with a perturbed stain matrix, keeping each pixel's concentrations.

    Concentrations are the least-squares decomposition on the estimated vectors,
    ``c = OD M^+`` (``M`` is ``(2, 3)``); the residual OD not explained by the two stains is kept.

    $$ OD' = OD + c\\,(M' - M),\\quad I' = 10^{-OD'} $$

    Args:
        x: RGB ``(B, 3, H, W)`` in [0, 1].
        stain: ``(B, 2, 3)`` estimated stain vectors (rows H, E).
        new_stain: ``(B, 2, 3)`` perturbed stain vectors.

    Returns:
        The re-stained batch; ``new_stain == stain`` is the identity.
    """
    _check_rgb(x)
    m = stain.to(device=x.device, dtype=x.dtype)
    m2 = new_stain.to(device=x.device, dtype=x.dtype)
    od = rgb_to_od(x)
    pinv = torch.linalg.pinv(m)  # (B, 3, 2)
    c = torch.einsum("bchw,bcs->bshw", od, pinv)
    od2 = od + torch.einsum("bshw,bsc->bchw", c, m2 - m)
    return od_to_rgb(od2)


# ----------------------------------------------------------------------------- optics
def defocus_radius_px(z_um: Tensor, na: float, pixel_um: float, immersion_index: float = 1.0) -> Tensor:
    """Geometric blur-circle radius in pixels: ``|z| tan(asin(NA / n)) / pixel``."""
    theta = math.asin(min(na / immersion_index, 0.999))
    return z_um.abs() * math.tan(theta) / pixel_um


def disk_kernel(radius: Tensor, size: int) -> Tensor:
    """Anti-aliased uniform disks ``(B, size, size)`` of per-sample ``radius`` (pixels), unit sum."""
    r = (size - 1) // 2
    t = torch.arange(-r, r + 1, dtype=radius.dtype, device=radius.device)
    d = torch.sqrt(t.reshape(-1, 1) ** 2 + t.reshape(1, -1) ** 2)
    k = (radius.reshape(-1, 1, 1) + 0.5 - d).clamp(0.0, 1.0)
    return k / k.sum(dim=(1, 2), keepdim=True)


def _conv_disk(x: Tensor, radius: Tensor) -> Tensor:
    b, c, h, w = x.shape
    rmax = float(radius.max()) if b else 0.0
    r = max(0, math.ceil(rmax + 0.5))
    if r == 0:
        return x
    k = disk_kernel(radius.to(device=x.device, dtype=x.dtype), 2 * r + 1)
    wgt = k.repeat_interleave(c, dim=0).unsqueeze(1)
    xp = F.pad(x.reshape(1, b * c, h, w), (r, r, r, r), mode="replicate")
    return F.conv2d(xp, wgt, groups=b * c).reshape(b, c, h, w)


def defocus(x: Tensor, radius_px: Tensor, focus_map: Tensor | None = None, levels: int = 6) -> Tensor:
    """Defocus blur with a disk PSF, optionally varying smoothly across the image.

    With ``focus_map`` ``(B, H, W)`` (blur radius in pixels per pixel) the image is blurred at
    ``levels`` radii between 0 and the map's maximum and each pixel interpolates linearly between
    the two nearest levels (a standard approximation of a space-variant PSF).

    Args:
        x: ``(B, C, H, W)``.
        radius_px: ``(B,)`` uniform blur radius in pixels (ignored where ``focus_map`` is given).
        focus_map: Optional ``(B, H, W)`` per-pixel radius in pixels.
        levels: Number of radii for the space-variant approximation.

    Returns:
        The blurred batch (replicate padding; the mean is preserved).
    """
    if focus_map is None:
        return _conv_disk(x, radius_px)
    b = x.shape[0]
    fm = focus_map.to(device=x.device, dtype=x.dtype)
    out = []
    for i in range(b):
        rmax = float(fm[i].max())
        if rmax <= 0:
            out.append(x[i : i + 1])
            continue
        rs = torch.linspace(0, rmax, levels, dtype=x.dtype, device=x.device)
        stack = torch.cat([_conv_disk(x[i : i + 1], rs[j : j + 1]) for j in range(levels)])
        pos = fm[i] / rmax * (levels - 1)
        j0 = pos.floor().clamp(0, levels - 2).long()
        fr = (pos - j0.to(x.dtype)).unsqueeze(0)
        s0 = torch.gather(stack, 0, j0.unsqueeze(0).unsqueeze(0).expand(1, *stack.shape[1:]))
        s1 = torch.gather(stack, 0, (j0 + 1).unsqueeze(0).unsqueeze(0).expand(1, *stack.shape[1:]))
        out.append((1 - fr) * s0 + fr * s1)
    return torch.cat(out)


def jpeg(x: Tensor, quality: Tensor, subsampling: str = "4:2:0") -> Tensor:
    """JPEG compression and decompression (differentiable approximation, Reich et al. 2024).

    RGB batches are coded as colour JPEG: YCbCr with 4:2:0 chroma subsampling and the standard
    luma/chroma quantisation tables scaled by quality (``subsampling="4:2:0"``, the libjpeg
    default), or with full-resolution chroma (``"4:4:4"``: the Y, Cb and Cr planes are each coded
    as a grayscale plane with the luma table). Other channel counts are coded one channel at a time
    as grayscale (replicated to three equal channels, so the chroma planes are empty, then averaged
    back). Uses :func:`kornia.enhance.jpeg_codec_differentiable`.

    Args:
        x: ``(B, C, H, W)`` in [0, 1] (clipped to it first).
        quality: ``(B,)`` JPEG quality in [1, 100].
        subsampling: ``"4:2:0"`` or ``"4:4:4"`` (RGB only).

    Returns:
        The decoded batch in [0, 1].
    """
    from kornia.enhance import jpeg_codec_differentiable

    b, c, h, w = x.shape
    q = quality.to(device=x.device, dtype=x.dtype).reshape(b)
    xc = x.clamp(0.0, 1.0)

    def gray(planes: Tensor) -> Tensor:
        n = planes.shape[1]
        g = planes.reshape(b * n, 1, h, w).expand(b * n, 3, h, w)
        return jpeg_codec_differentiable(g, q.repeat_interleave(n)).mean(1).reshape(b, n, h, w)

    if c == 3 and subsampling == "4:2:0":
        return jpeg_codec_differentiable(xc, q).clamp(0.0, 1.0)
    if c == 3 and subsampling == "4:4:4":
        m = torch.tensor(
            [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
            dtype=x.dtype, device=x.device,
        )
        off = torch.tensor([0.0, 0.5, 0.5], dtype=x.dtype, device=x.device).reshape(1, 3, 1, 1)
        ycc = torch.einsum("ij,bjhw->bihw", m, xc) + off
        dec = gray(ycc) - off
        return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(m), dec).clamp(0.0, 1.0)
    if subsampling not in ("4:2:0", "4:4:4"):
        raise ValueError(f"`subsampling` must be '4:2:0' or '4:4:4', got {subsampling!r}.")
    return gray(xc).clamp(0.0, 1.0)


# ----------------------------------------------------------------------------- slide defects
def tile_seam(
    x: Tensor,
    tile_px: Tensor,
    offset: Tensor,
    gain_std: Tensor,
    vignetting: Tensor,
    seeds: Tensor,
    max_tiles: tuple[int, int],
) -> Tensor:
    """Stitching seams: each scanner camera tile has its own illumination gain and flat-field residual.

    $$ I'(p) = I(p)\\ g_{t(p)}\\ \\big(1 - v\\, \\rho_{t}(p)^2\\big),\\quad
    g_{t,c} = 1 + \\sigma(0.8\\,n_t + 0.6\\,n_{t,c}) $$

    with ``t(p)`` the tile containing pixel ``p`` and ``rho_t`` the normalised distance from the
    tile centre (1 at the corners).

    Args:
        x: ``(B, C, H, W)`` in [0, 1].
        tile_px: ``(B,)`` tile edge in pixels.
        offset: ``(B, 2)`` grid offsets in [0, 1) of a tile (rows, columns).
        gain_std: ``(B,)`` per-tile gain standard deviation ``sigma``.
        vignetting: ``(B,)`` per-tile corner fall-off ``v``.
        seeds: ``(B,)`` seeds of the per-tile gains.
        max_tiles: ``(rows, cols)`` size of the per-sample gain grid (covers the smallest tile).

    Returns:
        The batch with seams, clipped to [0, 1].
    """
    b, c, h, w = x.shape
    dev, dt = x.device, x.dtype
    ny, nx = max_tiles
    n = per_sample_noise(seeds, (ny, nx, c + 1), device=dev, dtype=dt)
    sd = gain_std.to(device=dev, dtype=dt).reshape(b, 1, 1, 1)
    gains = 1 + sd * (0.8 * n[..., :1] + 0.6 * n[..., 1:])  # (B, ny, nx, C)
    tp = tile_px.to(device=dev, dtype=dt).reshape(b, 1, 1)
    off = offset.to(device=dev, dtype=dt)
    rows = torch.arange(h, device=dev, dtype=dt).reshape(1, h, 1) + off[:, 0].reshape(b, 1, 1) * tp
    cols = torch.arange(w, device=dev, dtype=dt).reshape(1, 1, w) + off[:, 1].reshape(b, 1, 1) * tp
    ty = torch.floor(rows / tp).long().clamp(0, ny - 1).expand(b, h, w)
    tx = torch.floor(cols / tp).long().clamp(0, nx - 1).expand(b, h, w)
    idx = (ty * nx + tx).reshape(b, h * w, 1).expand(b, h * w, c)
    g = torch.gather(gains.reshape(b, ny * nx, c), 1, idx).reshape(b, h, w, c).permute(0, 3, 1, 2)
    fy = (rows + 0.5) / tp - torch.floor(rows / tp) - 0.5  # in [-0.5, 0.5)
    fx = (cols + 0.5) / tp - torch.floor(cols / tp) - 0.5
    rho2 = 2 * (fy**2 + fx**2)  # 1 at the corners
    v = vignetting.to(device=dev, dtype=dt).reshape(b, 1, 1)
    return (x * g * (1 - v * rho2).unsqueeze(1)).clamp(0.0, 1.0)


def _line_frame(b: int, h: int, w: int, point: Tensor, angle: Tensor, dev, dt) -> tuple[Tensor, Tensor]:
    """Signed distance (pixels) to lines through ``point`` (fractions) at ``angle`` (rad), and normals."""
    py = point[:, 0].to(device=dev, dtype=dt).reshape(b, 1, 1) * h
    px = point[:, 1].to(device=dev, dtype=dt).reshape(b, 1, 1) * w
    a = angle.to(device=dev, dtype=dt).reshape(b, 1, 1)
    ny, nx = torch.cos(a), -torch.sin(a)  # unit normal (rows, cols); line direction (sin, cos)
    yy = torch.arange(h, device=dev, dtype=dt).reshape(1, h, 1) + 0.5
    xx = torch.arange(w, device=dev, dtype=dt).reshape(1, 1, w) + 0.5
    s = (yy - py) * ny + (xx - px) * nx
    return s, torch.cat([ny, nx], dim=2)  # (B,H,W), (B,1,2)


def tissue_fold(x: Tensor, point: Tensor, angle: Tensor, width_px: Tensor, extra_layers: Tensor) -> Tensor:
    """Tissue fold: a flap folded over along a line doubles the optical density in a band.

    The section folds along the line through ``point`` at ``angle``; tissue at signed distance
    ``s`` in ``(0, W)`` is covered by the mirror image of the tissue at ``-s`` (the flap), so the
    OD there is the sum of both layers (``extra_layers = 1`` doubles it for uniform tissue).

    $$ OD'(p) = OD(p) + k\\, m(s)\\, OD(p - 2 s\\,\\mathbf n),\\quad m = \\mathbb 1[0 < s < W] $$

    Args:
        x: RGB (or any-channel) ``(B, C, H, W)`` in [0, 1].
        point: ``(B, 2)`` a point of the fold line, fractions of (H, W).
        angle: ``(B,)`` direction of the fold line in radians.
        width_px: ``(B,)`` band width in pixels.
        extra_layers: ``(B,)`` ``k``, OD multiple added by the flap (1 = one extra layer).

    Returns:
        The folded batch in [0, 1].
    """
    b, _, h, w = x.shape
    dev, dt = x.device, x.dtype
    s, nrm = _line_frame(b, h, w, point, angle, dev, dt)
    wd = width_px.to(device=dev, dtype=dt).reshape(b, 1, 1)
    m = (s.clamp(0.0, 1.0) * (wd - s).clamp(0.0, 1.0)).clamp(0.0, 1.0)
    yy = torch.arange(h, device=dev, dtype=dt).reshape(1, h, 1) + 0.5
    xx = torch.arange(w, device=dev, dtype=dt).reshape(1, 1, w) + 0.5
    sy = yy - 2 * s * nrm[..., 0:1]
    sx = xx - 2 * s * nrm[..., 1:2]
    grid = torch.stack([sx / w * 2 - 1, sy / h * 2 - 1], dim=-1)
    od = rgb_to_od(x)
    flap = F.grid_sample(od, grid, mode="bilinear", padding_mode="border", align_corners=False)
    k = extra_layers.to(device=dev, dtype=dt).reshape(b, 1, 1, 1)
    return od_to_rgb(od + k * m.unsqueeze(1) * flap)


def bubble(
    x: Tensor, centers: Tensor, radii_px: Tensor, haze: Tensor, rim_od: Tensor, rim_px: float = 1.5
) -> Tensor:
    """Air bubbles under the coverslip: a dark refracting rim around a washed-out interior.

    $$ I_1 = I + h\\, m_{in} (1 - I),\\quad I' = I_1\\, 10^{-\\,OD_{rim}\\, e^{-(d - r)^2 / 2 w^2}} $$

    Args:
        x: ``(B, C, H, W)`` in [0, 1].
        centers: ``(B, K, 2)`` bubble centres, fractions of (H, W).
        radii_px: ``(B, K)`` radii in pixels.
        haze: ``(B,)`` interior wash-out toward white, in [0, 1].
        rim_od: ``(B,)`` optical density of the rim.
        rim_px: Rim half-width (Gaussian sigma) in pixels.

    Returns:
        The batch with bubbles, in [0, 1].
    """
    b, _, h, w = x.shape
    dev, dt = x.device, x.dtype
    yy = torch.arange(h, device=dev, dtype=dt).reshape(1, 1, h, 1) + 0.5
    xx = torch.arange(w, device=dev, dtype=dt).reshape(1, 1, 1, w) + 0.5
    cy = centers[..., 0].to(device=dev, dtype=dt)[..., None, None] * h
    cx = centers[..., 1].to(device=dev, dtype=dt)[..., None, None] * w
    r = radii_px.to(device=dev, dtype=dt)[..., None, None]
    d = torch.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)  # (B, K, H, W)
    inside = (r - d + 0.5).clamp(0, 1).amax(1, keepdim=True)
    ring = torch.exp(-0.5 * ((d - r) / rim_px) ** 2).amax(1, keepdim=True)
    hz = haze.to(device=dev, dtype=dt).reshape(b, 1, 1, 1)
    ro = rim_od.to(device=dev, dtype=dt).reshape(b, 1, 1, 1)
    y = x + hz * inside * (1 - x)
    return (y * torch.pow(10.0, -ro * ring)).clamp(0.0, 1.0)


def ink_marker(
    x: Tensor,
    control: Tensor,
    width_px: Tensor,
    density: Tensor,
    color_od: Tensor,
    seeds: Tensor,
    samples: int = 64,
) -> Tensor:
    """Marker-pen ink: a stroke along a quadratic Bezier curve adds the ink's OD.

    $$ OD' = OD + \\rho\\, (1 + 0.15 n)\\, m(p)\\, \\mathbf v_{ink} $$

    with ``m`` the soft stroke mask and ``n`` a smooth streak texture from the seed.

    Args:
        x: RGB ``(B, 3, H, W)`` in [0, 1].
        control: ``(B, 3, 2)`` Bezier control points, fractions of (H, W).
        width_px: ``(B,)`` stroke width in pixels.
        density: ``(B,)`` ink density ``rho`` (OD multiple of the colour vector).
        color_od: ``(B, 3)`` ink OD vectors.
        seeds: ``(B,)`` seeds of the streak texture.
        samples: Points sampled along the curve.

    Returns:
        The inked batch in [0, 1].
    """
    _check_rgb(x)
    b, _, h, w = x.shape
    dev, dt = x.device, x.dtype
    t = torch.linspace(0, 1, samples, device=dev, dtype=dt).reshape(1, samples, 1)
    cp = control.to(device=dev, dtype=dt) * torch.tensor([h, w], device=dev, dtype=dt)
    pts = (1 - t) ** 2 * cp[:, 0:1] + 2 * (1 - t) * t * cp[:, 1:2] + t**2 * cp[:, 2:3]  # (B,S,2)
    yy = torch.arange(h, device=dev, dtype=dt).reshape(1, h, 1, 1) + 0.5
    xx = torch.arange(w, device=dev, dtype=dt).reshape(1, 1, w, 1) + 0.5
    d2 = (yy - pts[:, None, None, :, 0]) ** 2 + (xx - pts[:, None, None, :, 1]) ** 2
    d = torch.sqrt(d2.amin(-1))  # (B, H, W)
    half = width_px.to(device=dev, dtype=dt).reshape(b, 1, 1) / 2
    m = (half - d + 0.5).clamp(0.0, 1.0)
    n = per_sample_noise(seeds, (h, w), device=dev, dtype=dt)
    n = F.avg_pool2d(n.unsqueeze(1), 5, stride=1, padding=2, count_include_pad=False).squeeze(1)
    n = n / n.reshape(b, -1).std(1).clamp_min(1e-6).reshape(b, 1, 1) if h * w > 1 else n
    rho = density.to(device=dev, dtype=dt).reshape(b, 1, 1) * (1 + 0.15 * n).clamp_min(0)
    ink = (rho * m).unsqueeze(1) * color_od.to(device=dev, dtype=dt).reshape(b, 3, 1, 1)
    return od_to_rgb(rgb_to_od(x) + ink)
