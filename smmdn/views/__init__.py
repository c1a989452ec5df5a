"""Forecasts people can look at: a site's recent observations against the predicted mixture (``site``), drawn as
one PNG per depth (``fan``) and as a self-contained HTML page per site (``page``), plus the network overview
the daily flow publishes (``overview``)."""
