"""Console commands: thin Hydra entry points around the library."""
