"""Fast projector for circular trajectories: Siddon's piecewise-constant line
integral, computed separably (horizontal pass, then slice crossings).

The source orbits the vertical axis and detector rows run along -z, so a ray's
horizontal path depends only on its detector column. Each column marches along
the horizontal index axis (x or y) its path advances most on, so inside one
voxel slab of that axis the path moves at most one voxel across (|tan| <= 1).

1. Horizontal pass (per column, all slices at once). In a slab the path covers
   the across interval [lo, hi]. The mean of a piecewise-constant row over an
   interval crossing at most one voxel boundary c is a two-tap weighted sum:
   weight (hi - c) / (hi - lo) on the voxel beyond c, the rest on the first.
   One `embedding_bag` call sums these taps over `group` slabs for every
   (column, slice), on the slice *differences* mu(j - 1) - mu(j); a cumulative
   sum over slabs then gives D(m, j): how much the path from the volume's entry
   to knot m gains by running in slice j - 1 rather than j.
2. Slice crossings (per ray). A ray that stays in slice j from entry to exit
   collects S(end, j) = sum over j' > j of D(end, j'). Each crossing of the
   boundary between slices j - 1 and j at knot position m adds +-D(m, j): the
   telescoping sum of Siddon's segments. D is linear between knots, so each
   crossing costs two taps, and a ray costs its number of crossings, not its
   number of slabs.

What is not exact: inside a slab the across and slice fractions are combined
as a product (the slab's rectangle rather than its diagonal: second order), and
with group > 1 a crossing inside a group is spread over the group's slabs in
proportion (group 1 is exact up to the first point). Measured against
Plastimatch exact and against an analytic phantom by `python -m drr.bench_speed`;
tests/drr/test_fast_projector.py checks it against our Siddon.

Two engines run these steps: 'torch' (batched tensor ops, any device) and 'compiled' (the CPU
default: drr.fast_kernel, one column at a time in cache). At the same group they agree to float
rounding on float32 rows; on float16 rows the torch engine also rounds each knot's sum to float16
(relative RMS difference < 2e-4, tests/drr/test_fast_projector.py).

Needs the voxel axes along the world axes (any order and sign: the volume is
transposed/flipped exactly, by drr.orientation.axis_aligned_view); an oblique
volume must be resampled first (drr.orientation.align_to_axes).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from umed_common.interrupts import check_stop

from . import host_memory
from .geometry import Geometry, view_frames
from .orientation import axis_aligned_view

# Slabs per knot, per engine. Torch: on the chest CT (72 views) against Plastimatch exact, worst
# view: group 1 NCC 0.9999983, 2: 0.9999975, 3: 0.9999951, 4: 0.9999907, 8: 0.999956. Against the
# analytic phantom group 4 is still more accurate than Plastimatch exact (worst-view rel RMS
# 0.857 % vs 0.876 %), and 0.87 s against 1.05 s for group 2 (python -m drr.bench_speed --group N).
# Compiled (drr.fast_kernel), chest CT, 72 views, 2 threads, against Plastimatch exact: group 1
# 0.43 s (NCC 0.9999983), 2: 0.28 s (0.9999975), 4: 0.24 s (0.9999907); the torch engine at group 4
# took 0.62 s in the same run (development machine, nothing else running).
DEFAULT_GROUP = {"torch": 4, "compiled": 2}
ENGINES = ("auto", "compiled", "torch")
# The slice-difference rows that every view reads are stored in half precision: half the
# memory traffic, and the sums over knots are float32. Worst-view NCC against Plastimatch
# exact 0.9999975 in float16 as in float32 (group 2); bfloat16 loses a digit (rel RMS x2).
DEFAULT_TABLE_DTYPE = torch.float16


def box_average(mu_zyx: torch.Tensor, factors_xyz, origin_xyz, spacing_xyz):
    """Average (fx, fy, fz) boxes; pads with air (0) to whole boxes.

    Returns (mu (Z', Y', X'), origin_xyz', spacing_xyz') of the coarse grid,
    whose voxel centres are the box centres.
    """
    fx, fy, fz = factors_xyz
    if (fx, fy, fz) == (1, 1, 1):
        return mu_zyx, tuple(origin_xyz), tuple(spacing_xyz)
    depth, height, width = mu_zyx.shape
    pad = (0, (-width) % fx, 0, (-height) % fy, 0, (-depth) % fz)
    padded = F.pad(mu_zyx, pad)
    coarse = F.avg_pool3d(padded[None, None], kernel_size=(fz, fy, fx))[0, 0]
    factors = np.array([fx, fy, fz], dtype=np.float64)
    spacing = np.asarray(spacing_xyz, dtype=np.float64)
    origin = np.asarray(origin_xyz, dtype=np.float64) + (factors - 1) / 2 * spacing
    return coarse.contiguous(), tuple(origin), tuple(spacing * factors)


def _factors(downsample) -> tuple[int, int, int]:
    """'auto' means none: the separable exact integral is fast without box averaging."""
    if downsample in ("auto", None):
        return (1, 1, 1)
    if isinstance(downsample, int):
        return (downsample,) * 3
    return tuple(int(f) for f in downsample)


def project_fast(mu_zyx: torch.Tensor, index_to_world, geometry: Geometry, *, view_indices=None,
                 downsample="auto", group: int | None = None, table_dtype: torch.dtype = DEFAULT_TABLE_DTYPE,
                 workers: int = 1, progress=None, engine: str = "auto") -> torch.Tensor:
    """(Z, Y, X) mu per mm -> (V, H, W) float32 line integrals.

    index_to_world (4, 4): its direction must be a signed permutation (voxel axes along
    the world axes, any order and sign); ValueError otherwise.

    downsample: 'auto' (none), an int, or (fx, fy, fz) box-averaging factors.
    group: voxel slabs summed per knot of the horizontal pass (1 = exact Siddon); None: the
    engine's default (DEFAULT_GROUP).
    table_dtype: storage of the slice-difference rows (float16 default, or float32).
    workers: CPU threads that project batches of views side by side (see _run_batches).
    engine: 'compiled' (drr.fast_kernel, CPU only), 'torch' (any device), or 'auto':
    compiled on the CPU, torch elsewhere.
    """
    # Any order and sign of the voxel axes: the same voxels, transposed/flipped (no copy
    # when already LPS). An oblique affine raises: resample it first (orientation.align_to_axes).
    mu_zyx, affine = axis_aligned_view(mu_zyx, index_to_world)
    spacing = np.diag(affine)[:3]
    engine = _engine(engine, mu_zyx.device)
    group = DEFAULT_GROUP[engine] if group is None else group
    if group < 1:
        raise ValueError(f"group must be >= 1, got {group}")
    mu, origin, spacing = box_average(mu_zyx.float(), _factors(downsample), affine[:3, 3], spacing)
    workers = workers if mu.device.type == "cpu" else 1
    steps = _slice_steps(mu, table_dtype, workers)
    grid_yx = tuple(mu.shape[1:])
    frames = view_frames(geometry, view_indices, dtype=torch.float64, device=mu.device)
    rays = _rays_in_index_space(frames, np.asarray(origin), np.asarray(spacing))
    count = frames["source"].shape[0]
    out = torch.zeros((count, geometry.detector_rows, geometry.detector_cols), dtype=torch.float32,
                      device=mu.device)

    batches = _view_batches(count, workers)

    rows = _kernel_rows(steps) if engine == "compiled" else None

    def one_batch(views: list[int]) -> None:
        source = rays["source"][views]  # (B, 3)
        toward = rays["cols"][views] - source[:, None, :2]  # (B, W, 2) horizontal direction, index units
        march_y = toward[..., 1].abs() > toward[..., 0].abs()
        for march in (0, 1):
            # every worker thread looks for a Ctrl-C before each pass, not only the thread that reports
            # progress: otherwise the other threads would run their queued batches to the end
            check_stop()
            view_at, col_at = torch.nonzero(march_y if march else ~march_y, as_tuple=True)
            if view_at.numel():
                out[torch.as_tensor(views, device=out.device)[view_at], :, col_at] = _column_pass(
                    engine, steps, rows, grid_yx, source[view_at], toward[view_at, col_at], rays["rows_z"],
                    march, np.asarray(spacing), group).t()

    _run_batches(one_batch, batches, workers, progress)
    return out


def _engine(engine: str, device: torch.device) -> str:
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "auto":
        return "compiled" if device.type == "cpu" else "torch"
    if engine == "compiled" and device.type != "cpu":
        raise ValueError(f"the compiled engine runs on the CPU; the volume is on {device}")
    return engine


def _kernel_rows(steps: torch.Tensor) -> np.ndarray:
    """The slice-difference rows as drr.fast_kernel reads them: float16 as its bits (numba has no float16)."""
    rows = steps.numpy()
    return rows.view(np.uint16) if rows.dtype == np.float16 else rows


def _column_pass(engine: str, steps, rows, grid_yx, source, toward, rows_z, march: int, spacing,
                 group: int) -> torch.Tensor:
    """Line integrals (H, C) of one march direction of one batch of views (see _project_columns);
    `rows` is _kernel_rows(steps) for the compiled engine."""
    if engine == "torch":
        return _project_columns(steps, grid_yx, source, toward, rows_z, march, spacing, group)
    from .fast_kernel import project_columns  # numba's import is paid by the compiled engine only

    out = np.empty((source.shape[0], rows_z.shape[0]), dtype=np.float32)
    project_columns(rows, grid_yx[0], grid_yx[1], source.contiguous().numpy(), toward.contiguous().numpy(),
                    rows_z.contiguous().numpy(), march, np.asarray(spacing, dtype=np.float64), group, out)
    return torch.from_numpy(out).t()


# Views per batch: the columns of several views share one set of tensor ops (fewer, larger
# ops: less interpreter time per view); 4 keeps a batch's tables within ~20 MB.
VIEWS_PER_BATCH = 4


def _view_batches(count: int, workers: int) -> list[list[int]]:
    """Consecutive views in batches of VIEWS_PER_BATCH, smaller when needed to feed every worker."""
    size = max(1, min(VIEWS_PER_BATCH, -(-count // max(1, workers))))
    return [list(range(start, min(start + size, count))) for start in range(0, count, size)]


def _run_batches(one_batch, batches: list[list[int]], workers: int, progress) -> None:
    """Call one_batch on each batch, on `workers` threads when more than one.

    The per-view ops are small, so torch's intra-op threads idle at each of the many
    short ops; whole batches on separate threads keep every core busy. Each thread
    then wants single-threaded torch ops. That setting is process-wide, so the command
    makes it once (torch.set_num_threads(1), drr.cli.threads_for), never this call:
    other cases may be projecting on other threads meanwhile.
    """
    count = sum(len(batch) for batch in batches)
    done = 0

    def report(batch) -> None:
        nonlocal done
        done += len(batch)
        if progress is not None:
            progress(done / count)

    if workers <= 1 or len(batches) == 1:
        for batch in batches:
            one_batch(batch)
            report(batch)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for batch, _ in zip(batches, pool.map(one_batch, batches)):
            report(batch)


# Horizontal voxels per block of _slice_steps: a block's differences (~1 MB in float16)
# stay in cache for their transpose; measured 2x faster than one whole-volume transpose.
STEP_BLOCK_COLUMNS = 4096


def _slice_steps(mu_zyx: torch.Tensor, dtype: torch.dtype, workers: int = 1) -> torch.Tensor:
    """(Y * X, Z + 1) rows of mu(j - 1) - mu(j) along z, air beyond both ends; row y * X + x.

    One row of slices per horizontal voxel, so `embedding_bag` reads whole rows; both march
    axes index the same rows (strides X and 1), so one copy serves both. The differences
    are taken in the slice-major layout, a block of horizontal voxels at a time, each block
    transposed into place while it is in cache; blocks run on `workers` threads (CPU).
    """
    depth = mu_zyx.shape[0]
    slices = mu_zyx.reshape(depth, -1)
    columns = slices.shape[1]
    steps = host_memory.empty((columns, depth + 1), dtype, mu_zyx.device)  # 70 MB for a CT: huge pages
    block = STEP_BLOCK_COLUMNS if mu_zyx.device.type == "cpu" else columns

    def one_block(first: int) -> None:
        part = slices[:, first:first + block]
        differences = torch.empty((depth + 1, part.shape[1]), dtype=dtype, device=mu_zyx.device)
        torch.sub(part[:-1], part[1:], out=differences[1:-1])
        differences[0] = -part[0]
        differences[-1] = part[-1]
        steps[first:first + block] = differences.t()

    starts = range(0, columns, block)
    if workers <= 1 or len(starts) == 1:
        for first in starts:
            one_block(first)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one_block, starts))
    return steps


def _rays_in_index_space(frames, origin, spacing) -> dict[str, torch.Tensor]:
    """Source (V, 3), detector columns in the horizontal plane (V, W, 2), rows' z (H,): index units."""
    device = frames["source"].device
    origin_t = torch.as_tensor(origin, dtype=torch.float64, device=device)
    spacing_t = torch.as_tensor(spacing, dtype=torch.float64, device=device)
    cols_mm = (frames["detector_centre"][:, None, :2]
               + frames["col_offsets_mm"][None, :, None] * frames["col_axis"][:, None, :2])
    rows_z_mm = frames["detector_centre"][0, 2] - frames["row_offsets_mm"]  # row axis is -z
    return {"source": (frames["source"] - origin_t) / spacing_t,
            "cols": (cols_mm - origin_t[:2]) / spacing_t[:2],
            "rows_z": (rows_z_mm - origin_t[2]) / spacing_t[2]}


def _project_columns(steps, grid_yx, source, toward, rows_z, march: int, spacing, group: int) -> torch.Tensor:
    """Line integrals (H, C) for C columns whose horizontal paths advance most along `march`.

    steps (Y * X, Z + 1) slice differences, source (C, 3) per column (columns of several
    views) and toward (C, 2) in index units, rows_z (H,) the detector rows' z index.
    """
    table = _knot_table(steps, grid_yx, source, toward, march, group)  # (K + 1, C, Z + 1)
    step = toward[:, march]  # (C,) march index per unit of the ray parameter
    rise = rows_z[:, None] - source[None, :, 2]  # (H, C) z index per unit of the ray parameter
    slope_z = rise / step[None, :] * group  # (H, C) z index per knot
    z_start = source[None, :, 2] + (-0.5 - source[None, :, march]) * slope_z / group  # z at knot 0
    z_end = z_start + (table.shape[0] - 1) * slope_z
    integral = _stay_term(table, z_end) + _crossing_term(table, z_start, z_end, slope_z)
    # A slab is 1 march index = spacing[march] mm of march; the ray runs |ray| / |march part| per mm.
    ray_mm = torch.stack(torch.broadcast_tensors(toward[None, :, 0] * spacing[0], toward[None, :, 1] * spacing[1],
                                                 rise * spacing[2]), dim=-1)
    stretch = ray_mm.norm(dim=-1) / (step.abs() * spacing[march])[None, :]
    return (integral.double() * stretch * spacing[march]).float()


def _knot_table(steps, grid_yx, source, toward, march: int, group: int) -> torch.Tensor:
    """D (K + 1, C, Z + 1): slice differences integrated along each column's path up to knot k."""
    knots_z = steps.shape[1]
    width = grid_yx[1]
    # march 0: planes are x (stride 1 in the rows), across is y (stride X); march 1 the reverse
    planes, across_size = (grid_yx[1], grid_yx[0]) if march == 0 else grid_yx
    plane_stride, across_stride = (1, width) if march == 0 else (width, 1)
    cols, device = toward.shape[0], steps.device
    across = 1 - march
    boundaries = torch.arange(planes + 1, dtype=torch.float64, device=device) - 0.5
    across_at = (source[None, :, across]
                 + (boundaries[:, None] - source[None, :, march]) * (toward[:, across] / toward[:, march]))
    first, weight = _two_tap(across_at)  # (P, C)
    knots = -(-planes // group)
    # Whole groups (padded slabs weigh 0), and one leading group of weight 0: knot 0. The per-slab
    # values are regrouped (K + 1, C, group) as views; the taps are then built in that order.
    padding = (0, 0, group, knots * group - planes)

    def regroup(per_slab: torch.Tensor, pad_value=0) -> torch.Tensor:  # (P, C) -> (K + 1, C, group)
        return F.pad(per_slab, padding, value=pad_value).view(knots + 1, group, cols).transpose(1, 2)

    # a padded slab's first tap is out of range (weight 0) and its second has weight 0
    first, weight = regroup(first, pad_value=-1), regroup(weight)
    plane = regroup(torch.arange(planes, device=device)[:, None].expand(planes, cols))
    taps = torch.stack([first, first + 1], dim=-1)  # (K + 1, C, group, 2)
    tap_weight = torch.stack([1 - weight, weight], dim=-1) * ((taps >= 0) & (taps < across_size))
    index = taps.clamp_(0, across_size - 1).mul_(across_stride).add_(plane[..., None] * plane_stride)
    table = F.embedding_bag(index.view(-1, 2 * group), steps,
                            per_sample_weights=tap_weight.view(-1, 2 * group).to(steps.dtype), mode="sum")
    table = _float32_buffer(table.view(knots + 1, cols, knots_z))
    for knot in range(1, knots + 1):  # in place, whole (C, Z + 1) blocks: ~3x torch.cumsum(dim=0)
        table[knot].add_(table[knot - 1])
    return table


_buffers = threading.local()


def _float32_buffer(per_knot: torch.Tensor) -> torch.Tensor:
    """per_knot as float32; a half-precision table is copied into this thread's reused buffer.

    A fresh 10-20 MB tensor per call costs more in page faults than the copy itself.
    """
    if per_knot.dtype == torch.float32:
        return per_knot
    buffer = getattr(_buffers, "table", None)
    if buffer is None or buffer.numel() < per_knot.numel() or buffer.device != per_knot.device:
        buffer = _buffers.table = torch.empty(per_knot.numel(), dtype=torch.float32, device=per_knot.device)
    return buffer[:per_knot.numel()].view(per_knot.shape).copy_(per_knot)


def _two_tap(position_at_boundaries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean of a piecewise-constant profile between consecutive boundary positions.

    position_at_boundaries (B, C) in index units (voxel k spans k - 0.5 .. k + 0.5), each
    interval crossing at most one voxel boundary -> first voxel (B - 1, C), long, and the
    weight (B - 1, C) of the next voxel: the fraction of the interval beyond the boundary.
    """
    lo = torch.minimum(position_at_boundaries[:-1], position_at_boundaries[1:])
    hi = torch.maximum(position_at_boundaries[:-1], position_at_boundaries[1:])
    first = torch.floor(lo + 0.5)
    width = hi - lo
    beyond = torch.where(width > 0, (hi - first - 0.5) / width.clamp(min=1e-12), torch.zeros_like(width))
    return first.long(), beyond.clamp(0.0, 1.0)


def _stay_term(table, z_end) -> torch.Tensor:
    """(H, C) S(end, j) = sum_{j' > j} D(end, j') for the slice j each ray ends in."""
    knots, cols, knots_z = table.shape
    totals = table[-1].flip(-1).cumsum(-1).flip(-1)  # (C, Z + 1): S(end, j) at j + 1
    last = torch.floor(z_end + 0.5).long()
    inside = (last >= 0) & (last < knots_z - 1)
    flat = torch.arange(cols, device=table.device)[None, :] * knots_z + (last.clamp(0, knots_z - 2) + 1)
    return totals.reshape(-1)[flat] * inside


def _crossing_term(table, z_start, z_end, slope_z) -> torch.Tensor:
    """(H, C) sum over each ray's slice-boundary crossings of sign(slope) x D(knot, boundary).

    Rays are flattened column-major so that lookups stay within one column's rows; a ray's
    crossings form one bag of 2 taps each (D is linear between knots).
    """
    knots, cols, knots_z = table.shape
    rows, device = z_start.shape[0], table.device
    lo = torch.minimum(z_start, z_end).t().reshape(-1)
    hi = torch.maximum(z_start, z_end).t().reshape(-1)
    slope = slope_z.t().reshape(-1)
    level = slope.abs() < 1e-12  # a ray in one plane z = const never crosses
    first = torch.ceil(lo + 0.5).clamp(min=0)  # first boundary j' (between slices j'-1 and j')
    count = (torch.floor(hi + 0.5).clamp(max=knots_z - 1) - first + 1).clamp(min=0)
    count = torch.where(level, 0, count).long()
    total = int(count.sum())
    if total == 0:
        return torch.zeros_like(z_start, dtype=torch.float32)
    starts = (torch.cumsum(count, 0) - count).int()
    per_crossing = lambda per_ray: torch.repeat_interleave(per_ray, count, output_size=total)  # noqa: E731
    # boundary = entry number + (the ray's first boundary - its first entry)
    boundary = torch.arange(total, device=device, dtype=torch.int32) + per_crossing(first.int() - starts)
    inverse = (1.0 / torch.where(level, 1.0, slope)).float()
    start = (z_start.t().reshape(-1) + 0.5).float()
    knot = boundary.float().sub_(per_crossing(start)).mul_(per_crossing(inverse)).clamp_(0, knots - 1)
    below = torch.floor(knot).clamp_(max=knots - 2)
    fraction = knot.sub_(below)
    column_base = (torch.arange(count.numel(), device=device, dtype=torch.int32) // rows) * knots_z
    near = below.int().mul_(cols * knots_z).add_(boundary).add_(per_crossing(column_base))
    flat = table.reshape(-1, 1)
    # Two bag sums (knot below, knot above) rather than one of interleaved taps: no stacking.
    summed = (F.embedding_bag(near, flat, starts, per_sample_weights=1 - fraction, mode="sum")
              + F.embedding_bag(near.add_(cols * knots_z), flat, starts, per_sample_weights=fraction, mode="sum"))
    return (summed[:, 0] * torch.sign(slope).float()).view(cols, rows).t()
