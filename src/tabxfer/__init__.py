"""tabxfer: deep tabular transfer learning for trip-duration prediction."""

__version__ = "0.1.0"
