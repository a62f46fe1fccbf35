"""Shared code of the Callflow Service: event model, S3 layout, storage, responses, logging."""
