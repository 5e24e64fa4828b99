//! End-to-end scenarios (see `tests/`).
