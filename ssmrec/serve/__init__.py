"""Serving what was trained: read an export (numpy only), rank exactly or through an index.

Nothing here imports the training code or torch; an export folder is the whole interface
(see :mod:`ssmrec.train.export` for its layout).
"""

from ssmrec.serve.export import Export, ExportError, load_export

__all__ = ["Export", "ExportError", "load_export"]
