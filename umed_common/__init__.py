"""Small helpers shared by the drr, model and benchmark pipelines."""
