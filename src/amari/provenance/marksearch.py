"""Finding the keyed tile mark after the image was scaled, squeezed, rotated, mirrored, cropped or pasted.

A candidate geometry is a 2×2 map from the frame the mark was laid out in to the image's pixels; it
moves each keyed frequency k to k·A⁻¹ in the image's spectrum, where the reader samples the spectrum
(zero-padded twice, so a frequency is never more than a quarter of a bin from a sample). Translation
only turns phases, which the shift search absorbs, so a crop costs nothing; the eight turns and
mirrors of the square tile are tried for every candidate. The candidates:

1. **From the image's size**: brought back to a 512 px short side (a resize of the whole frame) or long
   side (a cut to another aspect ratio), unscaled for a crop of each size amari writes (512, 768, 1024)
   down to 45 % of its side, and squeezed back to a square (an aspect change).
2. **From the spectrum**: the tile repeats, so its frequencies stand out of the image's own as a
   lattice of peaks. Their summed power (phases ignored) is scanned over scales from 0.35 to 4 at
   0.4 % steps and over rotations within ±10° at 0.25° steps around every candidate; the best become
   candidates too.
3. **Screenshots**: an image on a flat canvas (a page, a desktop) is also read alone: the canvas's
   flat pixels are set aside and each large block of content is searched as an image of its own.

Images of 1,024 px and more a side are read at half size or less (the pattern is at least twice as
large in them), so a 4,000 px photo costs what a 1,000 px one does.
"""

from __future__ import annotations

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


class Spectrum:
    """The normalised residual of a luma plane, its padded spectrum, and its power relative to the
    power around each frequency."""

    def __init__(self, plane: np.ndarray):
        from scipy import fft, ndimage

        self.height, self.width = plane.shape
        self.rows = fft.next_fast_len(2 * self.height, real=True)
        self.cols = fft.next_fast_len(2 * self.width, real=True)
        self.values = fft.rfft2(mark.residual(plane), s=(self.rows, self.cols), workers=1)
        power = (self.values.real**2 + self.values.imag**2).astype(np.float32)
        self.power = power / (ndimage.uniform_filter(power, 9) + 1e-12)
        # Peaks widened by a bin either way, for scans in steps three times coarser.
        self.pooled = ndimage.maximum_filter(self.power, 3)

    def _index(self, frequencies: np.ndarray):
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
        rows, cols, negative, inside = self._index(frequencies)
        signed_rows = np.where(rows < self.rows // 2, rows, rows - self.rows)
        turn = (signed_rows * (self.height - 1) / self.rows + cols * (self.width - 1) / self.cols) / 2
        values = self.values[rows, cols] * np.exp(2j * np.pi * turn)
        return np.where(inside, np.where(negative, np.conj(values), values), 0)

    def lattice_power(self, frequencies: np.ndarray, pooled: bool = False) -> np.ndarray:
        """Mean relative power at the key's frequencies, per leading index of (..., n, 2)."""
        rows, cols, _, inside = self._index(frequencies)
        return np.where(inside, (self.pooled if pooled else self.power)[rows, cols], 0).mean(axis=-1)


def frequencies(matrices: np.ndarray) -> np.ndarray:
    """The key's frequencies in the image (cycles per pixel) under each frame -> image map: (..., n, 2)."""
    inverse = np.linalg.inv(matrices).astype(np.float32)[..., None, :, :]
    cycles = mark.key().cycles.astype(np.float32)
    return cycles[:, :1] * inverse[..., 0, :] + cycles[:, 1:] * inverse[..., 1, :]


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
    """The isotropic scales where the lattice's power peaks, found at three times the step on the
    widened peaks, then to the step."""
    low, high = _SCALES[0], min(_SCALES[1], min(spectrum.height, spectrum.width) / mark.TILE)
    if high <= low:
        return []
    scales = np.exp(np.arange(np.log(low), np.log(high), 3 * _SCALE_STEP))
    power = spectrum.lattice_power(frequencies(scales[:, None, None] * np.eye(2)), pooled=True)
    peaks: list[float] = []
    for index in np.argsort(power)[::-1]:
        if all(abs(np.log(scales[index] / other)) > 0.03 for other in peaks):
            peaks.append(float(scales[index]))
        if len(peaks) == count:
            break
    found = []
    for peak in peaks:
        near = peak * np.exp(np.arange(-3, 4) * _SCALE_STEP)
        power = spectrum.lattice_power(frequencies(near[:, None, None] * np.eye(2)))
        found.append(np.eye(2) * near[int(np.argmax(power))])
    return found


def _rescaled(spectrum: Spectrum, matrix: np.ndarray) -> np.ndarray:
    """`matrix` rescaled within ±1.2 % to where the lattice's power peaks: a size off by a few pixels
    (a canvas's block found a little wide, a size rounded twice) costs the phases more than the power."""
    factors = np.exp(np.arange(-3, 4) * _SCALE_STEP)
    scaled = factors[:, None, None] * matrix
    return scaled[int(np.argmax(spectrum.lattice_power(frequencies(scaled))))]


def _best_rotation(spectrum: Spectrum, matrix: np.ndarray) -> np.ndarray:
    """`matrix` turned by the angle within ±10° where the lattice's power peaks (coarse, then fine)."""
    coarse = _ANGLES[::3]
    turned = _rotations(coarse) @ matrix
    angle = coarse[int(np.argmax(spectrum.lattice_power(frequencies(turned), pooled=True)))]
    fine = angle + (_ANGLES[1] - _ANGLES[0]) * np.arange(-2, 3)
    turned = _rotations(fine) @ matrix
    return turned[int(np.argmax(spectrum.lattice_power(frequencies(turned))))]


def _test(spectrum: Spectrum, matrices: list[np.ndarray]) -> Found | None:
    """The best of every candidate in each of the tile's eight orientations."""
    if not matrices:
        return None
    oriented = np.einsum("cij,sjk->csik", np.array(matrices), _SYMMETRIES).reshape(-1, 2, 2)
    samples = spectrum.sample(frequencies(oriented))
    found = mark.surfaces(samples)
    flat = found.reshape(len(oriented), -1)
    best = int(np.argmax(flat.max(axis=1)))
    surface = found[best]
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
    sized += [_rescaled(spectrum, matrix) for matrix in sized]
    best = _test(spectrum, sized)
    if best is None or best.score < _EARLY or not accepted(best):
        found = sized + _scale_peaks(spectrum)
        best = _better(best, _test(spectrum, [_best_rotation(spectrum, matrix) for matrix in found]))
        best = _better(best, _test(spectrum, found[len(sized) :]))
    if best is not None and step > 1:
        best = Found(best.score, best.second, best.bits, best.matrix * step)
    return best


def accepted(found: Found | None) -> bool:
    return (
        found is not None
        and found.score >= mark.THRESHOLD
        and found.second < max(mark.SECOND_LIMIT, mark.SECOND_SHARE * found.score)
    )


def regions(plane: np.ndarray, limit: int = 3) -> list[tuple[slice, slice]]:
    """Blocks of content on a flat canvas, largest first; none when the image is not a canvas."""
    from scipy import ndimage

    small = plane[::2, ::2]
    mean = ndimage.uniform_filter(small, 3)
    flat = np.sqrt(np.maximum(ndimage.uniform_filter(small * small, 3) - mean * mean, 0)) < 0.75
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
    if accepted(best) and best.score >= _EARLY:
        return best
    for rows, cols in regions(plane):
        found = search(np.ascontiguousarray(plane[rows, cols]))
        if accepted(found) and (not accepted(best) or found.score > best.score):
            best = found
        elif not accepted(best):
            best = _better(best, found)
    return best
