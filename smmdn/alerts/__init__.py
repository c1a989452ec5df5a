"""Alert lifecycle, routing, messages and plots (detection is ``smmdn.anomalies``, delivery ``smmdn.notify``,
scoring ``smmdn.verification``)."""
