"""vgsalign: evaluate word-object alignments in visually grounded speech models."""

__version__ = "0.1.0"
