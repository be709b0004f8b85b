"""Parley: a self-hosted server that speaks Anthropic's Claude API on the wire."""

__version__ = "0.1.0"
