"""Message Batches (api-spec §11): the operations behind the endpoints, and the worker."""
