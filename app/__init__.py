"""mcdrop: Monte Carlo Dropout uncertainty estimation served over HTTP."""

__version__ = "0.1.0"
