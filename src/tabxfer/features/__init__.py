"""Features: trips (canonical schema) -> a declared feature spec and model-ready arrays.

Kept import-light on purpose: :mod:`tabxfer.features.cache` (what training reads) needs only numpy, so
importing this package must not pull in polars. Import the submodules you need.
"""
