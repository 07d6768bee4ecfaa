"""Frozen dataclass records built from complete field dicts, for the forecast path's batches.

A frozen dataclass's generated ``__init__`` sets each field with its own
``object.__setattr__``; for the 12-field ``PatientForecast`` that was a third of a record's
cost on the forecast path, paid per patient on the thread that holds the GIL.
``build_frozen`` sets the instance's ``__dict__`` in one step instead. It is for classes
without ``__post_init__``, ``slots`` or defaults the caller might rely on; the caller passes
every field in declaration order (checked by an assertion) and the tests hold the records
equal to constructor-built ones (``tests/models/test_fastpath.py``).
"""

from __future__ import annotations

import dataclasses
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")


def build_frozen(cls: type[T], fields: dict[str, Any]) -> T:
    """An instance of the frozen dataclass ``cls`` whose fields are ``fields``."""
    assert tuple(fields) == _field_names(cls), f"{cls.__name__} needs {_field_names(cls)}"
    record = object.__new__(cls)
    object.__setattr__(record, "__dict__", fields)
    return record


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
