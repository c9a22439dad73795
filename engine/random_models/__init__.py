"""Random-weight models of real architectures, built locally for tests and benchmarks."""
