"""Tolom: payment acceptance and billing for the SOCHI reporting system and e-signatures."""

__version__ = "0.1.0"
