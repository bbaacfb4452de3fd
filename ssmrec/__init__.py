"""ssmrec: collaborative filtering with the sampled softmax loss and its rivals."""

__version__ = "0.1.0"
