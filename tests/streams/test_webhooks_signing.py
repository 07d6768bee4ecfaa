"""Standard Webhooks signing, checked against the independent ``standardwebhooks`` package."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
import standardwebhooks
from test_webhooks_support import SECRET, SECRET_2

from streams.webhooks import Secret, SecretError, SignatureError, generate_secret, sign_headers
from streams.webhooks.signing import verify

NOW = 1_767_600_000
BODY = b'{"type":"vitaltwin.alert.firing","data":{"patient":"pt-1"}}'


def test_our_signature_is_the_reference_signature() -> None:
    headers = sign_headers([Secret.parse(SECRET)], "msg_1", NOW, BODY)
    reference = standardwebhooks.Webhook(SECRET).sign(
        "msg_1", datetime.fromtimestamp(NOW, tz=UTC), BODY.decode()
    )
    assert headers["webhook-signature"] == reference
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(NOW)


def test_rotation_signs_with_every_secret_and_each_verifies_alone() -> None:
    keys = [Secret.parse(SECRET), Secret.parse(SECRET_2)]
    headers = sign_headers(keys, "msg_2", NOW, BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for s in (SECRET, SECRET_2):
        assert verify([Secret.parse(s)], headers, BODY, now_s=NOW) == "msg_2"


def test_verify_rejects_tampering_wrong_keys_and_stale_timestamps() -> None:
    key = Secret.parse(SECRET)
    headers = sign_headers([key], "msg_3", NOW, BODY)
    with pytest.raises(SignatureError, match="no signature"):
        verify([key], headers, BODY + b" ", now_s=NOW)
    with pytest.raises(SignatureError, match="no signature"):
        verify([Secret.parse(SECRET_2)], headers, BODY, now_s=NOW)
    with pytest.raises(SignatureError, match="tolerance"):
        verify([key], headers, BODY, now_s=NOW + 301)
    with pytest.raises(SignatureError, match="missing"):
        verify([key], {"webhook-id": "x"}, BODY, now_s=NOW)


@pytest.mark.parametrize(
    "bad",
    [
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  # no prefix
        "whsec_not base64!",
        "whsec_" + base64.b64encode(b"x" * 16).decode(),  # too short
        "whsec_" + base64.b64encode(b"x" * 65).decode(),  # too long
    ],
)
def test_secrets_must_be_whsec_base64_of_24_to_64_bytes(bad: str) -> None:
    with pytest.raises(SecretError):
        Secret.parse(bad)


def test_generated_secrets_parse_and_never_show_in_repr() -> None:
    text = generate_secret()
    secret = Secret.parse(text)
    assert len(secret.key) == 32
    assert text not in repr(secret)
    assert str(secret) == text
