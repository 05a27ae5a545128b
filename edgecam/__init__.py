"""edgecam: train, compress, export and run compact CNNs on embedded cameras."""

__version__ = "0.3.0"
