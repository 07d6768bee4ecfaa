"""Errors raised by the runtime adapters.

Exception tree::

    StreamsError
    ├── ConfigError        configuration is missing or contradictory
    └── StoreError         a durable store (SQLite, Kafka topic) is unusable

Rejected *input* is not an exception here: it becomes a dead-letter record (see
``streams.deadletter``) and the pipeline keeps running.
"""

from __future__ import annotations


class StreamsError(Exception):
    """Base of every error the streams package raises."""


class ConfigError(StreamsError):
    """Configuration is missing or contradictory."""


class StoreError(StreamsError):
    """A durable store is unusable (schema mismatch, corrupt file)."""
