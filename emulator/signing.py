"""The RS256 signing key shared by the dashboard IdP and the DATEV IdP (JWKS + ID tokens)."""

from __future__ import annotations

import secrets

from joserfc import jwt
from joserfc.jwk import KeyParameters, RSAKey


def generate_key_dict() -> dict:
    params: KeyParameters = {"use": "sig", "alg": "RS256", "kid": secrets.token_hex(8)}
    return RSAKey.generate_key(2048, parameters=params, private=True).as_dict(private=True)


def load_key(key_dict: dict) -> RSAKey:
    return RSAKey.import_key(key_dict)


def public_jwks(key_dict: dict) -> dict:
    return {"keys": [load_key(key_dict).as_dict(private=False)]}


def sign_id_token(key_dict: dict, claims: dict) -> str:
    key = load_key(key_dict)
    return jwt.encode({"alg": "RS256", "kid": key_dict["kid"], "typ": "JWT"}, claims, key)
