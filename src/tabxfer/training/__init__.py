"""Training: device-resident batches (data.py) and the one LightningModule for every model (module.py)."""
