"""smmdn: operational probabilistic soil-moisture forecasting with an LSTM mixture density network.

The library is importable without Prefect; flows in ``flows/`` only arrange its functions.
"""

__version__ = "0.1.0"

from smmdn.redact import install_log_redaction as _install_log_redaction

_install_log_redaction()  # every process that imports smmdn logs redacted text only
