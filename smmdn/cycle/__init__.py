"""The daily cycle's decisions, as plain functions the Prefect flows call and the tests reach directly:
the day (``day``), what the model sees (``inputs``), which training (``plan``), whether a challenger
replaces the champion (``champion``) and the forecast it issues (``forecast``)."""
