//! Deterministic host simulator for scheduling policies (being written).
