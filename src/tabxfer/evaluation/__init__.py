"""Evaluation shared by runs, artifacts and monitoring: slices and metrics by slice."""
