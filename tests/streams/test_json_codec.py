"""The hot path's JSON codec reads and writes what the standard library does."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streams import json_codec

scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # big ones too: both parsers keep Python ints exact
    | st.floats(allow_nan=False)
    | st.text()
)
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


def outcome(parse: Any, data: bytes) -> tuple[str, Any]:
    try:
        return "value", parse(data)
    except ValueError as exc:
        return "error", (type(exc), str(exc))


def same(a: Any, b: Any) -> bool:
    """Equal, with -0.0 told from 0.0 and types kept (1 is not 1.0 in a twin's input)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


@settings(max_examples=300)
@given(documents, st.booleans())
def test_loads_reads_documents_as_json_does(doc: Any, ascii_only: bool) -> None:
    data = json.dumps(doc, ensure_ascii=ascii_only).encode()
    assert same(json_codec.loads(data), json.loads(data))


@settings(max_examples=500)
@given(documents, st.data())
def test_loads_accepts_and_refuses_what_json_does(doc: Any, data: st.DataObject) -> None:
    """Damaged records (a dead letter's life): same value, or the same error message."""
    raw = bytearray(json.dumps(doc).encode())
    for _ in range(data.draw(st.integers(min_value=0, max_value=3))):
        at = data.draw(st.integers(min_value=0, max_value=len(raw)))
        raw[at:at] = data.draw(st.binary(min_size=1, max_size=3))
    a, b = outcome(json_codec.loads, bytes(raw)), outcome(json.loads, bytes(raw))
    assert a[0] == b[0]
    assert a[1] == b[1] if a[0] == "error" else same(a[1], b[1])


def test_loads_falls_back_where_the_fast_parser_refuses() -> None:
    """Inputs the standard parser reads and pydantic-core does not: still read alike."""
    for raw in (b'"\\ud800"', b'\xef\xbb\xbf{"a": 1}', b"[" * 300 + b"]" * 300, b"NaN"):
        assert same(json_codec.loads(raw), json.loads(raw)) or raw == b"NaN"
    assert math.isnan(json_codec.loads(b"NaN"))


@settings(max_examples=500)
@given(documents | st.floats())
def test_dumps_reads_back_as_what_json_dumps_writes(doc: Any) -> None:
    # Not byte for byte: small floats are spelled 0.00001 instead of 1e-05.
    expected = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    assert same(json.loads(json_codec.dumps(doc)), json.loads(expected))


def test_dumps_is_compact_utf8() -> None:
    assert (
        json_codec.dumps({"a": [1, 2.5, None], "b": "é"}) == '{"a":[1,2.5,null],"b":"é"}'.encode()
    )
