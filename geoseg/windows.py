"""Patch-grid and block planning: pure arithmetic on sizes, windows and transforms.

Vocabulary
----------
patch
    A ``patch_size`` x ``patch_size`` square of source pixels fed to the model.
    Patches start every ``stride`` pixels from the scene's top-left corner.
cell
    One pixel of the output grid: a ``stride`` x ``stride`` square of source
    pixels.  Cell ``(r, c)`` is covered by every patch whose square contains
    it; its probabilities are the mean over those patches.
block
    A rectangle of cells, the unit of work of one Dask task.  A task reads the
    source window that holds every patch covering its cells.

Nothing here opens a file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from affine import Affine
from rasterio.windows import Window


@dataclass(frozen=True)
class PatchGrid:
    """The patch grid of one scene.

    Parameters
    ----------
    width, height
        Scene size in pixels.
    patch
        Patch size in pixels.
    stride
        Distance between patch origins; must divide ``patch``.
    """

    width: int
    height: int
    patch: int
    stride: int

    def __post_init__(self) -> None:
        if self.stride < 1 or self.patch < 1:
            raise ValueError("patch and stride must be positive")
        if self.patch % self.stride:
            raise ValueError(
                f"stride {self.stride} must divide the patch size {self.patch} "
                f"(e.g. {self.patch}, {self.patch // 2} or {self.patch // 4})"
            )

    @property
    def overlap(self) -> int:
        """Patches covering a cell along one axis (``patch // stride``)."""
        return self.patch // self.stride

    @property
    def n_cells(self) -> tuple[int, int]:
        """Output grid shape (rows, cols): every source pixel lies in a cell."""
        return math.ceil(self.height / self.stride), math.ceil(self.width / self.stride)

    @property
    def n_patches(self) -> tuple[int, int]:
        """Patch positions (rows, cols); the last ones may run past the edge (padded)."""

        def n(size: int) -> int:
            return max(1, math.ceil((size - self.patch) / self.stride) + 1)

        return n(self.height), n(self.width)

    def patches_for_cells(self, c0: int, c1: int, axis_patches: int) -> tuple[int, int]:
        """Patch index range ``[q0, q1)`` covering cells ``[c0, c1)`` on one axis."""
        q0 = max(0, c0 - self.overlap + 1)
        q1 = min(axis_patches, c1)
        return q0, q1

    def cell_transform(self, transform: Affine) -> Affine:
        """Transform of the cell grid: the source transform scaled by the stride."""
        return transform @ Affine.scale(self.stride, self.stride)


@dataclass(frozen=True)
class Block:
    """A rectangle of cells and the patches that cover it."""

    index: int
    row_off: int  # in cells
    col_off: int
    height: int
    width: int
    prow0: int  # covering patches [prow0, prow1) x [pcol0, pcol1)
    prow1: int
    pcol0: int
    pcol1: int

    @property
    def cell_window(self) -> Window:
        return Window(self.col_off, self.row_off, self.width, self.height)

    @property
    def n_patches(self) -> int:
        return (self.prow1 - self.prow0) * (self.pcol1 - self.pcol0)

    def read_window(self, grid: PatchGrid) -> Window:
        """Source window holding every covering patch (may run past the edges)."""
        s = grid.stride
        return Window(
            self.pcol0 * s,
            self.prow0 * s,
            (self.pcol1 - self.pcol0 - 1) * s + grid.patch,
            (self.prow1 - self.prow0 - 1) * s + grid.patch,
        )


def choose_block_cells(
    grid: PatchGrid,
    target_px: int = 2048,
    source_tile: int | None = None,
    min_blocks: int = 1,
) -> int:
    """Block side in cells: about ``target_px`` source pixels, aligned to the
    source's internal tiles where the stride allows it, and small enough to give
    at least ``min_blocks`` blocks (so every worker has work on small scenes)."""
    s = grid.stride
    b = max(1, round(target_px / s))
    if source_tile and source_tile % s == 0 and b * s >= source_tile:
        per_tile = source_tile // s
        b = max(per_tile, (b // per_tile) * per_tile)
    rows, cols = grid.n_cells
    while b > 4 and math.ceil(rows / b) * math.ceil(cols / b) < min_blocks:
        b = max(4, b // 2)
    return b


def plan_blocks(grid: PatchGrid, block_cells: int) -> list[Block]:
    """Split the cell grid into blocks of ``block_cells`` x ``block_cells`` cells,
    row-major, and attach the patch range covering each."""
    if block_cells < 1:
        raise ValueError("block_cells must be positive")
    rows, cols = grid.n_cells
    prows, pcols = grid.n_patches
    blocks: list[Block] = []
    for r0 in range(0, rows, block_cells):
        r1 = min(rows, r0 + block_cells)
        q0r, q1r = grid.patches_for_cells(r0, r1, prows)
        for c0 in range(0, cols, block_cells):
            c1 = min(cols, c0 + block_cells)
            q0c, q1c = grid.patches_for_cells(c0, c1, pcols)
            blocks.append(
                Block(len(blocks), r0, c0, r1 - r0, c1 - c0, q0r, q1r, q0c, q1c)
            )
    return blocks


def is_north_up(transform: Affine) -> bool:
    """True when the transform has no rotation or shear and rows run southwards."""
    return transform.b == 0 and transform.d == 0 and transform.a > 0 and transform.e < 0


RESAMPLE_TOLERANCE = 0.1
"""A scene whose pixel size is within this fraction of the model's training
resolution is classified as it is (``--resample auto`` does nothing)."""


@dataclass(frozen=True)
class Resample:
    """How a scene's patches are brought to the model's training resolution.

    The patch grid stays in source pixels (``src_patch``, ``src_stride``: a
    :class:`PatchGrid` over the scene), so the cell grid is the source grid
    scaled by the integer ``src_stride`` and its cells sit on source pixel
    edges.  Each block's window is read at ``stride / src_stride`` model
    pixels per source pixel, where the model's ``patch`` x ``patch`` patches
    start every ``stride`` model pixels.

    Parameters
    ----------
    patch, stride
        Patch size and stride in model pixels (the contract's patch size and
        the requested stride).
    src_patch, src_stride
        The same in source pixels: ``src_patch = (patch // stride) * src_stride``.
    source_res_m
        The scene's ground pixel size (m).
    target_res_m
        The model's training resolution (m).
    """

    patch: int
    stride: int
    src_patch: int
    src_stride: int
    source_res_m: float
    target_res_m: float

    @property
    def factor(self) -> float:
        """Effective source pixels per model pixel (``src_stride / stride``)."""
        return self.src_stride / self.stride

    @property
    def resolution_m(self) -> float:
        """Effective ground size of a model pixel (m): the resolution actually used."""
        return self.source_res_m * self.factor

    @property
    def reducing(self) -> bool:
        """True when the model sees fewer pixels than the source has (averaged)."""
        return self.factor > 1

    def model_shape(self, height: int, width: int) -> tuple[int, int]:
        """Model-pixel shape of a source window whose sides are multiples of ``src_stride``."""
        if height % self.src_stride or width % self.src_stride:
            raise ValueError(f"window {height}x{width} is not a multiple of the source stride {self.src_stride}")
        return height // self.src_stride * self.stride, width // self.src_stride * self.stride

    def to_dict(self) -> dict:
        """The figures recorded in the statistics (``options``)."""
        return {
            "resample_factor": self.factor,
            "resample_resolution_m": self.resolution_m,
            "source_resolution_m": self.source_res_m,
            "training_resolution_m": self.target_res_m,
            "patch_source_px": self.src_patch,
            "stride_source_px": self.src_stride,
        }


def plan_resample(
    patch: int, stride: int, source_res_m: float, target_res_m: float, tolerance: float = RESAMPLE_TOLERANCE,
) -> Resample | None:
    """The resampling of a scene at ``source_res_m`` for a model trained at
    ``target_res_m``, or None when the two are within ``tolerance``.

    With ``f = target_res_m / source_res_m``, a model stride of ``stride`` px
    covers ``src_stride = max(1, round(stride * f))`` source pixels and a patch
    ``src_patch = (patch // stride) * src_stride``: the multiple of the overlap
    nearest to ``patch * f``, so the source stride divides the source patch.
    The rounding moves the resolution actually used (:attr:`Resample.resolution_m`)
    by at most half a source pixel per model stride (e.g. a 60 m scene, a 10 m
    model, patch 64 stride 64: 11 source px per patch, 10.9 m; stride 16: 3 per
    stride, 11.25 m).  None too when the rounding leaves one source pixel per
    model pixel.
    """
    if patch % stride:
        raise ValueError(f"stride {stride} must divide the patch size {patch}")
    if source_res_m <= 0 or target_res_m <= 0:
        raise ValueError("resolutions must be positive")
    f = target_res_m / source_res_m
    if abs(f - 1) <= tolerance:
        return None
    src_stride = max(1, round(stride * f))
    if src_stride == stride:
        return None
    return Resample(patch, stride, (patch // stride) * src_stride, src_stride, source_res_m, target_res_m)
