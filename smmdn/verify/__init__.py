"""How good the forecasts are: continuous verification of the daily cycle (``verification``), the metrics
(``metrics``) and the backtest on canonical CSVs (``backtest``)."""
