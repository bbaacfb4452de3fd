"""The package version, in a module of its own: the export manifest and ``ssmrec --version``
read it without importing the package root (whose ``Recommender`` pulls in the training code)."""

__version__ = "0.1.0"
