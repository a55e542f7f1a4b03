"""Loaders: each maps one trip-record format onto the canonical schema (:mod:`tabxfer.data.schema`)."""

from tabxfer.data.sources.base import RowParser, TripSource, resolve_paths, scan_table
from tabxfer.data.sources.kaggle import KaggleNYCTaxi
from tabxfer.data.sources.tlc import TLCTrips

__all__ = ["KaggleNYCTaxi", "TLCTrips", "RowParser", "TripSource", "resolve_paths", "scan_table"]
