"""Loaders: each maps one trip-record format onto the canonical schema (:mod:`tabxfer.data.schema`)."""

from tabxfer.data.sources.base import RowParser, TripSource, resolve_paths, scan_table
from tabxfer.data.sources.chicago import ChicagoTaxiTrips
from tabxfer.data.sources.citibike import CitiBikeTrips
from tabxfer.data.sources.kaggle import KaggleNYCTaxi
from tabxfer.data.sources.seaborn_taxis import SeabornTaxis
from tabxfer.data.sources.statsmaths import StatsmathsNYCTaxi
from tabxfer.data.sources.synthetic import SyntheticTrips
from tabxfer.data.sources.tlc import TLCTrips

__all__ = [
    "ChicagoTaxiTrips",
    "CitiBikeTrips",
    "KaggleNYCTaxi",
    "RowParser",
    "SeabornTaxis",
    "StatsmathsNYCTaxi",
    "SyntheticTrips",
    "TLCTrips",
    "TripSource",
    "resolve_paths",
    "scan_table",
]
