"""The package version, recorded in every artefact's provenance (``lsap.__version__``)."""

__version__ = "0.1.0"
