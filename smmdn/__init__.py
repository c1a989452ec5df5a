"""smmdn: operational probabilistic soil-moisture forecasting with an LSTM mixture density network.

The library is importable without Prefect; flows in ``flows/`` only arrange its functions.
"""

__version__ = "0.1.0"
