"""Pure logic: request rules, the neutral event stream, SSE rendering, ids."""
