"""corpusmap: turn a corpus of scientific abstracts into a map."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("corpusmap")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"


def load_run(path):
    """Open a run directory: corpus table and memory-mapped vectors (see :class:`corpusmap.run.Run`)."""
    from corpusmap.run import open_run

    return open_run(path)


__all__ = ["__version__", "load_run"]
