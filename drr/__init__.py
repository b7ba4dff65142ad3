"""DRR generator: CT volume -> attenuation -> cone-beam geometry -> projector -> images.

The pipeline is a straight line (docs/STYLE.md): `volume_io` loads a Volume,
`attenuation` maps HU to mu per mm, `geometry` places source and detector,
`projector` / `fast_projector` integrate mu along rays, `writer` stores the
results, `pipeline` runs whole cases and `cli` is the `drr-generate` command.
"""
