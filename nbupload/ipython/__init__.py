"""The IPython front end: ``%load_ext nbupload``, the ``%upload`` magics, ``%config Uploader``."""

from .extension import load_ipython_extension, unload_ipython_extension

__all__ = ["load_ipython_extension", "unload_ipython_extension"]
