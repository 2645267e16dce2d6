"""Pure, deterministic kernels behind the artifact classes (no randomness, no in-place writes)."""
