"""Finding the keyed tile mark after the image was scaled, squeezed, rotated, mirrored, cropped or pasted.

A candidate geometry is a 2×2 map from the frame the mark was laid out in to the image's pixels; it
moves each keyed frequency k to k·A⁻¹ in the image's spectrum, where the reader samples the spectrum
(zero-padded twice, so a frequency is never more than a quarter of a bin from a sample). Translation
only turns phases, which the shift search absorbs, so a crop costs nothing. The candidates:

1. **From the image's size**, in each of the eight turns and mirrors of the square tile: brought back
   to a 512 px short side (a resize of the whole frame) or long side (a cut to another aspect ratio),
   unscaled for a crop of each size amari writes (512, 768, 1024) down to 45 % of its side, squeezed
   back to a square (an aspect change), and each of these rescaled within ±1.2 % to where the tile's
   frequencies are strongest (a size off by a few pixels).
2. **From the spectrum**, as they are and mirrored: the tile repeats, so its frequencies stand out of
   the image's own as a lattice of peaks. Their summed power (phases ignored) is scanned over scales
   from 0.35 to 4 in 0.4 % steps, then over rotations within ±10° in 0.25° steps around every
   candidate, and over aspect ratios from 0.75 to 1.33 around the best scales; the best become
   candidates too.
3. **Screenshots**: an image on a flat canvas (a page, a desktop) is also read alone: the canvas's
   flat pixels are set aside and each large block of content, found to the pixel, is searched as an
   image of its own.

Most marked images need none of the search: the first candidates are tried as written, on the
unpadded spectrum (a resize to a size amari writes keeps the tile on whole bins), and each later step
runs only when nothing clear was found before it. Images of 1,024 px and more a side are read at half
size or less (the pattern is at least twice as large in them), so a 4,000 px photo costs what a
1,000 px one does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from amari.provenance import keyedtile as mark

# The eight symmetries of the square tile, acting on (y, x): turns by 90° and mirror images.
_SYMMETRIES = np.array(
    [
        [[1, 0], [0, 1]],
        [[1, 0], [0, -1]],  # mirrored left to right
        [[-1, 0], [0, 1]],
        [[-1, 0], [0, -1]],
        [[0, 1], [1, 0]],
        [[0, -1], [1, 0]],
        [[0, 1], [-1, 0]],
        [[0, -1], [-1, 0]],
    ],
    dtype=np.float64,
)
_WRITTEN_SIDES = (512, 768, 1024)
_SCALES = (0.35, 4.0)
_SCALE_STEP = 0.004  # log scale: a quarter of a padded bin at the top of the band of a 512 px image
_ANGLES = np.deg2rad(np.arange(-10.0, 10.001, 0.25))
_EARLY = 15.0  # a candidate from the size alone this strong needs no search
_MIN_SIDE = 128
_CANVAS_FLAT = 0.2  # share of flat pixels from which an image may be a canvas
_REGION_SIDE = 96


@dataclass(frozen=True)
class Found:
    score: float
    second: float  # the best score at any other shift of the same geometry
    bits: np.ndarray
    matrix: np.ndarray  # frame -> image pixels, (y, x)

    @property
    def mirrored(self) -> bool:
        return bool(np.linalg.det(self.matrix) < 0)

    @property
    def scale(self) -> float:
        return float(np.sqrt(abs(np.linalg.det(self.matrix))))

    @property
    def rotation(self) -> float:
        """Degrees, counter-clockwise, of the frame's x axis in the image, within ±45."""
        angle = np.degrees(np.arctan2(-self.matrix[0, 1], self.matrix[1, 1]))
        return float((angle + 45) % 90 - 45)

    @property
    def aspect(self) -> float:
        """Width over height of a frame square in the image."""
        height, width = np.linalg.norm(self.matrix, axis=0)
        return float(width / height)


class _Grid:
    """The spectrum of the residual zero-padded to `pad` times its size (2: no frequency is more than a
    quarter of a bin from a sample)."""

    def __init__(self, residual: np.ndarray, pad: int):
        from scipy import fft

        self.height, self.width = residual.shape
        self.rows = fft.next_fast_len(pad * self.height, real=True)
        self.cols = fft.next_fast_len(pad * self.width, real=True)
        self.values = fft.rfft2(residual, s=(self.rows, self.cols), workers=1)

    def index(self, frequencies: np.ndarray):
        fy, fx = frequencies[..., 0], frequencies[..., 1]
        negative = fx < 0  # a real image's spectrum at -f is the conjugate of that at f
        rows = np.rint(np.where(negative, -fy, fy) * self.rows).astype(np.int32) % self.rows
        cols = np.rint(np.abs(fx) * self.cols).astype(np.int32)
        inside = cols < self.values.shape[1]
        return rows, np.minimum(cols, self.values.shape[1] - 1), negative, inside

    def sample(self, frequencies: np.ndarray) -> np.ndarray:
        """The spectrum at the nearest bin, as if the image's centre were its origin: a pattern over the
        whole image then keeps its phase wherever the frequency falls between two bins (with the corner
        as origin the phase would turn by up to 45° with the distance, and that regular error would
        echo the pattern at other shifts)."""
        rows, cols, negative, inside = self.index(frequencies)
        signed_rows = np.where(rows < self.rows // 2, rows, rows - self.rows)
        turn = (signed_rows * (self.height - 1) / self.rows + cols * (self.width - 1) / self.cols) / 2
        values = self.values[rows, cols] * np.exp(2j * np.pi * turn)
        return np.where(inside, np.where(negative, np.conj(values), values), 0)


class Spectrum:
    """A luma plane's normalised residual, its spectrum (unpadded, and padded twice once needed), and
    its power relative to the power around each frequency."""

    def __init__(self, plane: np.ndarray):
        self.residual = mark.residual(plane).astype(np.float32)
        self.height, self.width = plane.shape
        self.coarse = _Grid(self.residual, 1)

    @functools.cached_property
    def fine(self) -> _Grid:
        return _Grid(self.residual, 2)

    def sample(self, frequencies: np.ndarray, fine: bool = True) -> np.ndarray:
        return (self.fine if fine else self.coarse).sample(frequencies)

    @functools.cached_property
    def _smooth(self) -> np.ndarray:
        values = self.coarse.values
        return mark.box_mean((values.real**2 + values.imag**2).astype(np.float32), 5) + 1e-12

    @functools.cached_property
    def _coarse_power(self) -> np.ndarray:
        """Relative power on the unpadded grid, whose bins are wide enough for scans in coarse steps."""
        values = self.coarse.values
        return (values.real**2 + values.imag**2) / self._smooth

    def lattice_power(self, frequencies: np.ndarray, fine: bool = True) -> np.ndarray:
        """Mean relative power at the key's frequencies, per leading index of (..., n, 2): on the padded
        grid (for fine steps) relative to the unpadded grid's neighbourhood, or on the unpadded grid."""
        rows, cols, _, inside = self.coarse.index(frequencies)
        if not fine:
            return np.where(inside, self._coarse_power[rows, cols], 0).mean(axis=-1)
        fine_rows, fine_cols, _, fine_inside = self.fine.index(frequencies)
        values = self.fine.values[fine_rows, fine_cols]
        relative = (values.real**2 + values.imag**2) / self._smooth[rows, cols]
        return np.where(inside & fine_inside, relative, 0).mean(axis=-1)


def frequencies(matrices: np.ndarray) -> np.ndarray:
    """The key's frequencies in the image (cycles per pixel) under each frame -> image map: (..., n, 2)."""
    return mark.key().cycles @ np.linalg.inv(matrices).astype(np.float32)


def _rotations(angles: np.ndarray) -> np.ndarray:
    cos, sin = np.cos(angles), np.sin(angles)
    return np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], -2)


def size_candidates(height: int, width: int) -> list[np.ndarray]:
    """Frame -> image maps that the image's size suggests."""
    short, long = min(height, width), max(height, width)
    scales = [short / mark.FRAME_SIDE, long / mark.FRAME_SIDE]
    scales += [side / mark.FRAME_SIDE for side in _WRITTEN_SIDES if 0.45 * side <= short <= 1.01 * side]
    unique: list[float] = []
    for scale in scales:
        if all(abs(scale / other - 1) > 0.004 for other in unique):
            unique.append(scale)
    maps = [np.diag([scale, scale]) for scale in unique]
    if 0.7 <= width / height <= 1 / 0.7 and abs(width / height - 1) > 0.01:
        maps.append(np.diag([height, width]) / mark.FRAME_SIDE)  # a square frame squeezed
    return maps


def _scale_peaks(spectrum: Spectrum, count: int = 2) -> list[np.ndarray]:
    """The isotropic scales where the lattice's power peaks: on the unpadded grid at three times the
    step, then to the step on the padded one."""
    low, high = _SCALES[0], min(_SCALES[1], min(spectrum.height, spectrum.width) / mark.TILE)
    if high <= low:
        return []
    cycles = mark.key().cycles
    scales = np.exp(np.arange(np.log(low), np.log(high), 3 * _SCALE_STEP)).astype(np.float32)
    power = spectrum.lattice_power(cycles / scales[:, None, None], fine=False)
    peaks: list[float] = []
    for index in np.argsort(power)[::-1]:
        if all(abs(np.log(scales[index] / other)) > 0.03 for other in peaks):
            peaks.append(float(scales[index]))
        if len(peaks) == count:
            break
    near = np.array(peaks)[:, None] * np.exp(np.arange(-3, 4) * _SCALE_STEP)[None, :]
    power = spectrum.lattice_power(cycles / near[..., None, None].astype(np.float32))
    return [np.eye(2) * row[int(np.argmax(values))] for row, values in zip(near, power)]


def _rescaled(spectrum: Spectrum, matrices: list[np.ndarray]) -> list[np.ndarray]:
    """Each matrix rescaled within ±1.2 % to where the lattice's power peaks: a size off by a few
    pixels (a canvas's block found a little wide, a size rounded twice) costs the phases more than the
    power."""
    scaled = np.exp(np.arange(-3, 4) * _SCALE_STEP)[None, :, None, None] * np.array(matrices)[:, None]
    best = np.argmax(spectrum.lattice_power(frequencies(scaled)), axis=1)
    return list(scaled[np.arange(len(matrices)), best])


def _stretch(axis: int, factor: float) -> np.ndarray:
    return np.diag([factor, 1.0] if axis == 0 else [1.0, factor])


def _best_aspects(spectrum: Spectrum, matrices: list[np.ndarray]) -> list[np.ndarray]:
    """Each matrix stretched along one axis (by 0.75 to 1.33, either axis) to where the lattice's power
    peaks: an aspect change the image's size no longer shows, after a crop (a scale the isotropic scan
    found fits one of the axes)."""
    ratios = np.exp(np.arange(np.log(0.75), np.log(1 / 0.75), 3 * _SCALE_STEP))
    stretches = [(axis, ratio) for axis in (0, 1) for ratio in ratios]
    coarse = np.array(matrices)[:, None] @ np.stack([_stretch(axis, ratio) for axis, ratio in stretches])
    found = []
    for matrix, index in zip(coarse, np.argmax(spectrum.lattice_power(frequencies(coarse), fine=False), axis=1)):
        axis = stretches[index][0]
        nudged = matrix[index] @ np.stack([_stretch(axis, f) for f in np.exp(np.arange(-2, 3) * _SCALE_STEP)])
        found.append(nudged[int(np.argmax(spectrum.lattice_power(frequencies(nudged))))])
    return found


def _best_rotations(spectrum: Spectrum, matrices: list[np.ndarray]) -> list[np.ndarray]:
    """Each matrix turned by the angle within ±10° where the lattice's power peaks (on the unpadded
    grid in steps of 0.75°, then to 0.25° on the padded one)."""
    bases = np.array(matrices)[:, None]
    coarse = _ANGLES[::3]
    angles = coarse[np.argmax(spectrum.lattice_power(frequencies(_rotations(coarse) @ bases), fine=False), axis=1)]
    fine = angles[:, None] + (_ANGLES[1] - _ANGLES[0]) * np.arange(-2, 3)[None, :]
    turned = _rotations(fine) @ bases
    best = np.argmax(spectrum.lattice_power(frequencies(turned)), axis=1)
    return list(turned[np.arange(len(matrices)), best])


def _test(
    spectrum: Spectrum, matrices: list[np.ndarray], symmetries: np.ndarray = _SYMMETRIES, fine: bool = True
) -> Found | None:
    """The best of every candidate in each of the tile's orientations (default: all eight)."""
    if not matrices:
        return None
    oriented = np.einsum("cij,sjk->csik", np.array(matrices), symmetries).reshape(-1, 2, 2)
    samples = spectrum.sample(frequencies(oriented), fine)
    # Every candidate at every other shift, then every shift of the two best.
    screened = np.argsort(mark.surfaces(samples, every=2).reshape(len(oriented), -1).max(axis=1))[-2:]
    found = mark.surfaces(samples[screened])
    best = int(np.argmax(found.reshape(len(screened), -1).max(axis=1)))
    surface = found[best]
    best = int(screened[best])
    row, col = np.unravel_index(int(np.argmax(surface)), surface.shape)
    return Found(
        score=float(surface[row, col]),
        second=_second(surface, row, col),
        bits=mark.payload(samples[best], (row, col)),
        matrix=oriented[best],
    )


def _second(surface: np.ndarray, row: int, col: int, reach: int = 8) -> float:
    """The highest score at least `reach` pixels (around the tile) from the best shift."""
    size = surface.shape[0]
    dy = (np.arange(size) - row + size // 2) % size - size // 2
    dx = (np.arange(size) - col + size // 2) % size - size // 2
    near = (np.abs(dy)[:, None] < reach) & (np.abs(dx)[None, :] < reach)
    return float(np.where(near, -np.inf, surface).max())


def _better(a: Found | None, b: Found | None) -> Found | None:
    if a is None or (b is not None and b.score > a.score):
        return b
    return a


def search(plane: np.ndarray) -> Found | None:
    """The best reading of the mark in one luma plane (an image, or a region of a canvas)."""
    from PIL import Image

    height, width = plane.shape
    if min(height, width) < _MIN_SIDE:
        return None
    step = max(1, min(height, width) // mark.FRAME_SIDE)
    if step > 1:
        size = (width // step, height // step)
        plane = np.asarray(Image.fromarray(plane, mode="F").resize(size, Image.Resampling.LANCZOS))
    spectrum = Spectrum(plane)
    sized = [matrix / step for matrix in size_candidates(height, width)]
    # The common cases first: as written (only resized or cropped), then turned or mirrored, then sizes
    # a few pixels off; the search only when none of them is clearly there.
    best = _test(spectrum, sized, _SYMMETRIES[:1], fine=False)  # on exact bins when only resized
    if not _clear(best):
        best = _better(best, _test(spectrum, sized, _SYMMETRIES[:1]))
    if not _clear(best):
        best = _better(best, _test(spectrum, sized, _SYMMETRIES[1:]))
    if not _clear(best):
        best = _better(best, _test(spectrum, _rescaled(spectrum, sized)))
        # Found by the search: as they are and mirrored (a turn by 90° and a few degrees more is rare).
        peaks = _scale_peaks(spectrum)
        searched = peaks + _best_rotations(spectrum, sized + peaks) + _best_aspects(spectrum, peaks)
        best = _better(best, _test(spectrum, searched, _SYMMETRIES[:2]))
    if best is not None and step > 1:
        best = Found(best.score, best.second, best.bits, best.matrix * step)
    return best


def _clear(found: Found | None) -> bool:
    return found is not None and found.score >= _EARLY and accepted(found)


def accepted(found: Found | None) -> bool:
    return (
        found is not None
        and found.score >= mark.THRESHOLD
        and found.second < max(mark.SECOND_LIMIT, mark.SECOND_SHARE * found.score)
    )


def regions(plane: np.ndarray, limit: int = 3) -> list[tuple[slice, slice]]:
    """Blocks of content on a flat canvas, largest first; none when the image is not a canvas."""
    from scipy import ndimage

    small = np.ascontiguousarray(plane[::2, ::2])
    mean = mark.box_mean(small, 3)
    flat = np.sqrt(np.maximum(mark.box_mean(small * small, 3) - mean * mean, 0)) < 0.75
    if flat.mean() < _CANVAS_FLAT:
        return []
    content = ndimage.binary_closing(~flat, iterations=4)
    labels, _count = ndimage.label(content)
    background = float(np.median(small[flat]))
    found = []
    for rows, cols in ndimage.find_objects(labels):
        top, bottom = max(0, 2 * rows.start - 4), min(plane.shape[0], 2 * rows.stop + 4)
        left, right = max(0, 2 * cols.start - 4), min(plane.shape[1], 2 * cols.stop + 4)
        # To the pixel, where the block's pixels leave the canvas's value (the half-size mask is a few
        # pixels wide of it, and the block's size tells its scale).
        differs = np.abs(plane[top:bottom, left:right] - background) > 1.0
        rows_in, cols_in = np.flatnonzero(differs.any(axis=1)), np.flatnonzero(differs.any(axis=0))
        if len(rows_in) and len(cols_in):
            top, bottom = top + rows_in[0], top + rows_in[-1] + 1
            left, right = left + cols_in[0], left + cols_in[-1] + 1
        if min(bottom - top, right - left) >= _REGION_SIDE and (bottom - top) * (right - left) < 0.8 * plane.size:
            found.append((slice(int(top), int(bottom)), slice(int(left), int(right))))
    found.sort(key=lambda box: -(box[0].stop - box[0].start) * (box[1].stop - box[1].start))
    return found[:limit]


def read(rgb: np.ndarray) -> Found | None:
    """The best reading of the keyed tile mark in an RGB image, or None when it is too small."""
    plane = mark.luma(rgb)
    best = search(plane)
    if _clear(best):
        return best
    for rows, cols in regions(plane):
        found = search(np.ascontiguousarray(plane[rows, cols]))
        if accepted(found) and (not accepted(best) or found.score > best.score):
            best = found
        elif not accepted(best):
            best = _better(best, found)
    return best
