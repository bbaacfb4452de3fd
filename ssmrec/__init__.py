"""ssmrec: collaborative filtering with the sampled softmax loss and its rivals."""

from ssmrec._version import __version__

__all__ = ["Recommender", "__version__", "compare"]


def __getattr__(name: str):
    if name == "Recommender":  # imported on first use: `import ssmrec` stays light
        from ssmrec.api import Recommender

        return Recommender
    if name == "compare":  # the race of losses (ssmrec.race), also imported on first use
        from ssmrec.race import compare

        return compare
    raise AttributeError(f"module 'ssmrec' has no attribute {name!r}")
