"""hgnas-ray: hierarchical generative neural architecture search on Ray."""

__version__ = "0.1.0"
