"""The node's token signing key, and the public keys of the nodes whose tokens it accepts.

Tokens are signed with ES256 (ECDSA on P-256): asymmetric, so the JWKS can be published and any node or
service can verify a token without being able to mint one, and supported by every JOSE library. The private
key lives in one JWK file that only the node's user can read; its `kid` is the RFC 7638 thumbprint, so the
same key always has the same id on every node.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeyParameters

from mom.errors import InvalidInput, StorageError

ALGORITHM = "ES256"
KEY_FILE = "token-signing-key.jwk.json"


class SigningKeys:
    """The private key this node signs with, and the public keys (its own included) it verifies with."""

    def __init__(self, private_key: ECKey) -> None:
        if not private_key.is_private:
            raise ValueError("a signing key must be a private key")
        kid, public = _public_key(private_key.as_dict(private=False))
        self.kid: str = kid
        self.alg: str = ALGORITHM
        self._private = ECKey.import_key(private_key.as_dict(private=True), _params(kid))
        self._public: dict[str, ECKey] = {kid: public}

    @classmethod
    def generate(cls) -> SigningKeys:
        return cls(ECKey.generate_key("P-256", private=True))

    @classmethod
    def load_or_create(cls, directory: Path) -> SigningKeys:
        """Load the key from `directory`, creating both (directory 0700, file 0600) on first start.

        The file is written under a temporary name opened 0600 and then hard-linked into place, so it is
        never readable by others, never seen half-written, and when two processes race, both end up with
        the one key that won.
        """
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = directory / KEY_FILE
        if not path.exists():
            _write_new_key(path)
        try:
            data = json.loads(path.read_text())
            key = ECKey.import_key(data)
        except (OSError, ValueError, TypeError, JoseError) as exc:
            raise StorageError(f"cannot read the token signing key {path}: {exc}") from exc
        if not key.is_private:
            raise StorageError(f"the token signing key {path} holds no private key")
        return cls(key)

    @property
    def signing_key(self) -> ECKey:
        return self._private

    def verification_key(self, kid: str) -> ECKey | None:
        return self._public.get(kid)

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set, as served at /.well-known/jwks.json: this node's own key only. The peers' keys it
        trusts are not its to publish: a peer would learn them from it too, and still trust them once their node
        was removed or stopped serving them (each node keeping the others' in turn)."""
        return {"keys": [self._public[self.kid].as_dict(private=False)]}

    def add_trusted(self, public_jwk: dict[str, Any]) -> None:
        """Accept tokens signed by another node's key (a public P-256 JWK, as found in its JWKS).

        The key's `kid` is recomputed from its thumbprint; a JWK that states a different `kid`, carries a
        private part, or is not a P-256 key is refused with InvalidInput.
        """
        if "d" in public_jwk:
            raise InvalidInput("a trusted key must be a public JWK, this one holds a private part")
        if public_jwk.get("kty") != "EC" or public_jwk.get("crv") != "P-256":
            raise InvalidInput("a trusted key must be an EC P-256 JWK (ES256)")
        try:
            kid, key = _public_key(public_jwk)
        except (KeyError, ValueError, TypeError, JoseError) as exc:
            raise InvalidInput(f"invalid public JWK: {exc}") from exc
        stated = public_jwk.get("kid")
        if stated is not None and stated != kid:
            raise InvalidInput(f"JWK kid {stated!r} is not its RFC 7638 thumbprint {kid!r}")
        self._public[kid] = key

    def untrust(self, kid: str) -> None:
        """Stop accepting tokens signed by another node's key `kid` (its node no longer serves it)."""
        if kid != self.kid:
            self._public.pop(kid, None)


def _params(kid: str) -> KeyParameters:
    return {"kid": kid, "use": "sig", "alg": ALGORITHM}


def _public_key(jwk: dict[str, Any]) -> tuple[str, ECKey]:
    """The public key of `jwk` (private and extra members dropped) with its kid, use and alg set."""
    public: dict[str, Any] = {k: jwk[k] for k in ("kty", "crv", "x", "y") if k in jwk}
    kid = ECKey.import_key(public).thumbprint()
    return kid, ECKey.import_key(public, _params(kid))


def _write_new_key(path: Path) -> None:
    key = ECKey.generate_key("P-256", private=True)
    data = json.dumps(key.as_dict(private=True, **_params(key.thumbprint())), indent=2).encode()
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
