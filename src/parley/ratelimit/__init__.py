"""Token buckets that refill continuously (api-spec §15), in-process or in Redis."""
