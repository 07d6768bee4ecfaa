"""The one exception base of ``models``.

``ModelsError``
  - ``SchemaError``: a dataset does not follow the documented schema (``models.schema``).
  - ``SpecMismatch``: a checkpoint was trained with a different feature spec than the one asked
    for (or than this code builds); it is refused rather than silently mis-fed.
  - ``CheckpointError``: a models directory is missing a file, or a file fails its checksum.
"""

from __future__ import annotations


class ModelsError(Exception):
    """Base of every error ``models`` raises on purpose."""


class SchemaError(ModelsError):
    pass


class SpecMismatch(ModelsError):
    pass


class CheckpointError(ModelsError):
    pass
