"""The offline demo: a simulated sensor network fed through the real adapters into the real daily cycle."""
