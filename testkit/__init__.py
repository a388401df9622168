"""What the tests and the benchmarks share: a simulated DATEV user at the emulator's login pages,
sample documents, and the refresh-race worker process. Never imported by core/, ui/ or pages/."""
