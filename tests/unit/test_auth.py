"""Gateway API key checks in ext_proc (extproc.auth)."""

from __future__ import annotations

import hashlib

import pytest

from extproc.auth import INFERENCE_SCOPE, KeyIndex, KeySetInvalid, Principal, authorize
from extproc.errors import AuthenticationFailed, GatewayError, PermissionDenied
from weir.config.v1 import keys_pb2

NOW_S = 1_750_000_000.0
NOW_MS = int(NOW_S * 1000)

GOOD = "wk_demo_" + "A1b2C3d4E5" * 4 + "xyz"
MANAGER = "wk_demo_" + "Z9y8X7w6V5" * 4 + "abc"
OTHER_PROJECT = "wk_team-2_" + "q" * 43
REVOKED = "wk_demo_" + "R" * 43
EXPIRING = "wk_demo_" + "E" * 43
REVOKED_AND_EXPIRED = "wk_demo_" + "B" * 43
UNKNOWN = "wk_demo_" + "U" * 43


def sha(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def api_key(
    key: str,
    key_id: str,
    project: str = "demo",
    scopes: tuple[str, ...] = ("inference",),
    expires_at_ms: int = 0,
    revoked_at_ms: int = 0,
) -> keys_pb2.ApiKey:
    return keys_pb2.ApiKey(
        id=key_id,
        project=project,
        sha256=sha(key),
        scopes=scopes,
        expires_at_ms=expires_at_ms,
        revoked_at_ms=revoked_at_ms,
    )


def key_set() -> keys_pb2.ApiKeySet:
    return keys_pb2.ApiKeySet(
        revision="rev-1",
        keys=[
            api_key(GOOD, "key_good"),
            api_key(MANAGER, "key_manager", scopes=("inference", "management")),
            api_key(OTHER_PROJECT, "key_other", project="team-2"),
            api_key(REVOKED, "key_revoked", revoked_at_ms=NOW_MS - 1000),
            api_key(EXPIRING, "key_expiring", expires_at_ms=NOW_MS + 60_000),
            api_key(
                REVOKED_AND_EXPIRED,
                "key_both",
                revoked_at_ms=NOW_MS - 1000,
                expires_at_ms=NOW_MS - 500,
            ),
        ],
    )


@pytest.fixture
def index() -> KeyIndex:
    return KeyIndex.compile(key_set())


def bearer(key: str, scheme: str = "Bearer") -> bytes:
    return f"{scheme} {key}".encode()


def failure(index: KeyIndex, authorization: bytes, now: float = NOW_S) -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as caught:
        index.authenticate(authorization, now=now)
    error = caught.value
    assert error.status == 401
    assert error.error_type == "authentication_error"
    return error


def assert_key_not_echoed(error: GatewayError, key: str) -> None:
    assert key not in error.message
    assert key not in str(error)
    assert key.encode() not in error.body()
    secret = key.rpartition("_")[2]
    if len(secret) >= 8:
        assert secret not in error.message
        assert secret.encode() not in error.body()


# --- compile ------------------------------------------------------------------------------


def test_compile(index: KeyIndex) -> None:
    assert index.revision == "rev-1"
    assert len(index.by_hash) == 6
    principal = index.by_hash[sha(MANAGER)]
    assert principal == Principal(
        key_id="key_manager",
        project="demo",
        scopes=frozenset({"inference", "management"}),
        expires_at=0.0,
        revoked=False,
    )
    assert index.by_hash[sha(REVOKED)].revoked
    assert index.by_hash[sha(EXPIRING)].expires_at == NOW_S + 60


def test_compile_empty_set() -> None:
    index = KeyIndex.compile(keys_pb2.ApiKeySet())
    assert index.revision == ""
    assert len(index.by_hash) == 0
    assert failure(index, bearer(GOOD)).code == "invalid_api_key"


def test_index_cannot_be_changed(index: KeyIndex) -> None:
    with pytest.raises(TypeError):
        index.by_hash[b"x" * 32] = index.by_hash[sha(GOOD)]  # type: ignore[index]


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_compile_rejects_bad_hash_length(length: int) -> None:
    bad = keys_pb2.ApiKeySet(
        keys=[
            api_key(GOOD, "key_good"),
            keys_pb2.ApiKey(id="key_bad", project="demo", sha256=b"h" * length),
        ]
    )
    with pytest.raises(KeySetInvalid, match="key_bad"):
        KeyIndex.compile(bad)


def test_compile_rejects_duplicate_hash() -> None:
    duplicate = keys_pb2.ApiKeySet(
        keys=[api_key(GOOD, "key_one"), api_key(GOOD, "key_two", project="other")]
    )
    with pytest.raises(KeySetInvalid, match="shares its hash"):
        KeyIndex.compile(duplicate)


@pytest.mark.parametrize(("key_id", "project"), [("", "demo"), ("key_x", "")])
def test_compile_rejects_missing_id_or_project(key_id: str, project: str) -> None:
    with pytest.raises(KeySetInvalid):
        KeyIndex.compile(keys_pb2.ApiKeySet(keys=[api_key(GOOD, key_id, project=project)]))


# --- authenticate: success ----------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_good_key(index: KeyIndex, scheme: str) -> None:
    principal = index.authenticate(bearer(GOOD, scheme), now=NOW_S)
    assert principal.key_id == "key_good"
    assert principal.project == "demo"
    assert principal.scopes == frozenset({"inference"})
    assert not principal.revoked


def test_surrounding_whitespace_is_ignored(index: KeyIndex) -> None:
    assert index.authenticate(b"Bearer  " + GOOD.encode() + b" ", now=NOW_S).key_id == "key_good"


def test_default_clock(index: KeyIndex) -> None:
    assert index.authenticate(bearer(GOOD)).key_id == "key_good"


def test_key_of_another_project_authenticates(index: KeyIndex) -> None:
    principal = index.authenticate(bearer(OTHER_PROJECT), now=NOW_S)
    assert (principal.key_id, principal.project) == ("key_other", "team-2")


def test_expiring_key_is_good_until_it_expires(index: KeyIndex) -> None:
    assert index.authenticate(bearer(EXPIRING), now=NOW_S).key_id == "key_expiring"
    assert index.authenticate(bearer(EXPIRING), now=NOW_S + 59.999).key_id == "key_expiring"


def test_principal_is_safe_to_log(index: KeyIndex) -> None:
    principal = index.authenticate(bearer(GOOD), now=NOW_S)
    assert GOOD not in repr(principal)
    assert sha(GOOD).hex() not in repr(principal)


# --- authenticate: failures ---------------------------------------------------------------


def test_missing_key(index: KeyIndex) -> None:
    error = failure(index, b"")
    assert error.code == "missing_api_key"
    assert "Authorization" in error.message


@pytest.mark.parametrize(
    "authorization",
    [
        GOOD.encode(),  # no scheme
        b"Basic " + GOOD.encode(),
        b"Token " + GOOD.encode(),
        b"Bearer" + GOOD.encode(),  # no space
        b"Bearer",
    ],
)
def test_not_bearer_is_malformed(index: KeyIndex, authorization: bytes) -> None:
    error = failure(index, authorization)
    assert error.code == "malformed_api_key"
    assert "Bearer" in error.message
    assert_key_not_echoed(error, GOOD)


@pytest.mark.parametrize(
    "key",
    [
        "",  # `Bearer ` and nothing
        "sk-" + "a" * 48,  # an OpenAI key
        "wk_demo_" + "A" * 42,  # secret one short
        "wk_demo_" + "A" * 44,  # secret one long
        "wk_my_proj_" + "A" * 43,  # underscore in project
        "wk_Demo_" + "A" * 43,  # upper-case project
        "wk_-demo_" + "A" * 43,  # project starts with '-'
        "wk__" + "A" * 43,  # no project
        "wk_demo_" + "A" * 42 + "-",  # not base62
        "xk_demo_" + "A" * 43,  # wrong prefix
        "wk_demo_" + "A" * 20 + " " + "A" * 22,
        "wk_demo_" + "A" * 43 + "\n" + "x",
    ],
)
def test_wrong_shape_is_malformed(index: KeyIndex, key: str) -> None:
    error = failure(index, bearer(key))
    assert error.code == "malformed_api_key"
    assert "wk_<project>_" in error.message
    if key:
        assert_key_not_echoed(error, key)


def test_non_utf8_is_malformed(index: KeyIndex) -> None:
    assert failure(index, b"Bearer wk_demo_\xff\xfe" + b"A" * 41).code == "malformed_api_key"


def test_well_formed_unknown_key(index: KeyIndex) -> None:
    error = failure(index, bearer(UNKNOWN))
    assert error.code == "invalid_api_key"
    assert "Incorrect API key" in error.message
    assert_key_not_echoed(error, UNKNOWN)


def test_revoked_key(index: KeyIndex) -> None:
    error = failure(index, bearer(REVOKED))
    assert error.code == "revoked_api_key"
    assert "key_revoked" in error.message  # the public id, never the key
    assert_key_not_echoed(error, REVOKED)


def test_expired_key(index: KeyIndex) -> None:
    error = failure(index, bearer(EXPIRING), now=NOW_S + 60)
    assert error.code == "expired_api_key"
    assert "key_expiring" in error.message
    assert_key_not_echoed(error, EXPIRING)
    assert failure(index, bearer(EXPIRING), now=NOW_S + 3600).code == "expired_api_key"


def test_revoked_wins_over_expired(index: KeyIndex) -> None:
    assert failure(index, bearer(REVOKED_AND_EXPIRED)).code == "revoked_api_key"


def test_failure_envelope(index: KeyIndex) -> None:
    error = failure(index, bearer(REVOKED))
    envelope = error.envelope()["error"]
    assert envelope["type"] == "authentication_error"
    assert envelope["code"] == "revoked_api_key"
    assert envelope["param"] is None


def test_codes_are_distinct(index: KeyIndex) -> None:
    codes = {
        failure(index, b"").code,
        failure(index, GOOD.encode()).code,
        failure(index, bearer(UNKNOWN)).code,
        failure(index, bearer(REVOKED)).code,
        failure(index, bearer(EXPIRING), now=NOW_S + 61).code,
    }
    assert codes == {
        "missing_api_key",
        "malformed_api_key",
        "invalid_api_key",
        "revoked_api_key",
        "expired_api_key",
    }


# --- authorize ----------------------------------------------------------------------------


def test_authorize_own_project_and_scope(index: KeyIndex) -> None:
    authorize(index.authenticate(bearer(GOOD), now=NOW_S), "demo", INFERENCE_SCOPE)
    manager = index.authenticate(bearer(MANAGER), now=NOW_S)
    authorize(manager, "demo", "inference")
    authorize(manager, "demo", "management")


def test_authorize_other_project(index: KeyIndex) -> None:
    principal = index.authenticate(bearer(GOOD), now=NOW_S)
    with pytest.raises(PermissionDenied) as caught:
        authorize(principal, "team-2", INFERENCE_SCOPE)
    error = caught.value
    assert error.status == 403
    assert error.code == "wrong_project"
    assert error.error_type == "permission_error"
    assert "key_good" in error.message
    assert "'demo'" in error.message and "'team-2'" in error.message
    assert_key_not_echoed(error, GOOD)


def test_authorize_missing_scope(index: KeyIndex) -> None:
    principal = index.authenticate(bearer(GOOD), now=NOW_S)
    with pytest.raises(PermissionDenied) as caught:
        authorize(principal, "demo", "management")
    error = caught.value
    assert error.status == 403
    assert error.code == "scope_insufficient"
    assert "'management'" in error.message
    assert_key_not_echoed(error, GOOD)


def test_wrong_project_is_checked_before_scope(index: KeyIndex) -> None:
    principal = index.authenticate(bearer(GOOD), now=NOW_S)
    with pytest.raises(PermissionDenied) as caught:
        authorize(principal, "team-2", "management")
    assert caught.value.code == "wrong_project"
