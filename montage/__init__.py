"""Montage: long footage in, short highlight montages out."""

__version__ = "0.1.0"
