"""tabxfer: deep tabular transfer learning for trip-duration prediction."""

__version__ = "0.1.0"


def load(path: str, map_location: str = "cpu"):
    """Rebuild a trained model (a ``TabularRegressor``) from a checkpoint file alone."""
    from tabxfer.train import load as _load

    return _load(path, map_location=map_location)
