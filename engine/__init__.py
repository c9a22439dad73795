"""hardaug: targeted data augmentation for text classifiers."""

__version__ = "0.1.0"
