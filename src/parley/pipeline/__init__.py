"""The message pipeline: the one path a message takes, and what it needs beyond core."""
