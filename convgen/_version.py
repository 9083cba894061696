"""The package version: a leaf module, so that the generator can print it without
importing the package's ``__init__`` (which imports the generator)."""

__version__ = "0.1.0"
