"""Engines: one module per backend. Only `engines/<x>.py` imports its backend library."""
