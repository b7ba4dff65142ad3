"""Machine-readable manifests of the paper's datasets, and a verifier for local copies."""
