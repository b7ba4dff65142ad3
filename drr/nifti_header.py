"""The few NIfTI-1 / NIfTI-2 header fields the truncation check needs, read from the header's bytes.

Importing nibabel for them cost about 0.3 s of every `drr-generate` on a NIfTI (it imports much more than
the header); the fields are fixed offsets of the standard (nifti1.h, nifti2.h). SimpleITK still reads the
orientation and does everything else.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

# the bytes that hold every field read here, for both versions
HEADER_BYTES = 540

# NIFTI_TYPE_* codes with a plain numpy equivalent (complex and RGB types are left to SimpleITK)
_DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8", 1280: "u8"}
# version -> (sizeof_hdr, offsets and formats of: datatype, bitpix, dim[8], vox_offset, scl_slope, scl_inter)
_LAYOUT = {1: (348, (70, "h"), (72, "h"), (40, "8h"), (108, "f"), (112, "f"), (116, "f")),
           2: (540, (12, "h"), (14, "h"), (16, "8q"), (168, "q"), (176, "d"), (184, "d"))}


@dataclass(frozen=True)
class NiftiHeader:
    """shape: dim[1..dim[0]] (x fastest); dtype: numpy type in the file's byte order, None for types
    without one; bitpix: bits per voxel; vox_offset: where the voxels start; slope, intercept as stored."""

    shape: tuple[int, ...]
    dtype: np.dtype | None
    bitpix: int
    vox_offset: int
    slope: float
    intercept: float

    @property
    def voxel_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.bitpix // 8


def parse_nifti_header(data: bytes) -> NiftiHeader:
    """The header at the start of `data` (at least HEADER_BYTES, or the whole file when shorter);
    ValueError saying what is wrong when it is not a NIfTI-1/2 single-file header."""
    if len(data) < 4:
        raise ValueError("shorter than a header")
    for order in "<>":
        size = struct.unpack_from(order + "i", data)[0]
        version = {348: 1, 540: 2}.get(size)
        if version is not None:
            break
    else:
        raise ValueError("sizeof_hdr is neither 348 (NIfTI-1) nor 540 (NIfTI-2)")
    if len(data) < size:
        raise ValueError(f"only {len(data)} of the header's {size} bytes")
    _, *fields = _LAYOUT[version]
    datatype, bitpix, dim, vox_offset, slope, intercept = (struct.unpack_from(order + fmt, data, offset)
                                                           for offset, fmt in fields)
    ndim = dim[0]
    if not 1 <= ndim <= 7 or any(n < 1 for n in dim[1:ndim + 1]):
        raise ValueError(f"dim {list(dim)} is not a valid image size")
    if bitpix[0] <= 0 or bitpix[0] % 8:
        raise ValueError(f"bitpix {bitpix[0]} is not a whole number of bytes")
    code = _DTYPES.get(datatype[0])
    # a single file keeps its voxels after the header and its 4 extension bytes at least (nifti1_io reads a
    # smaller vox_offset as that)
    offset = max(int(vox_offset[0]), size + 4)
    return NiftiHeader(tuple(int(n) for n in dim[1:ndim + 1]), None if code is None else np.dtype(order + code),
                       bitpix[0], offset, float(slope[0]), float(intercept[0]))
