"""DRR generator: CT volume -> attenuation -> cone-beam geometry -> projector -> images.

The pipeline is a straight line (docs/STYLE.md): `volume_io` (and `dicom_io`)
load a `volume.Volume`, `orientation` gives the fast projector an axis-aligned
grid (the one place voxel order, signs and oblique cosines are handled),
`attenuation` maps HU to mu per mm, `geometry` places source and detector,
`projector` / `fast_projector` integrate mu along rays, `writer` stores the
results, `pipeline` runs whole cases and `cli` is the `drr-generate` command.
"""
