"""Cryptographic building blocks, all from ``cryptography``; nothing here is home-made.

- Passphrase wrapping: Argon2id derives a key-encryption key; AES-256-GCM wraps private keys.
- Wrapping to a public key: HPKE (RFC 9180) base mode, DHKEM(X25519) + HKDF-SHA256 + AES-256-GCM.
- Sealing a field: AES-256-GCM under a case's random data key, with associated data that binds the
  case id and field name, so a blob cannot be replayed in another case or field.
- Signing record entries: Ed25519.

Every HPKE ``info`` and AEAD associated-data string starts with a purpose label, so a ciphertext
made for one purpose never decrypts for another.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from sgalert.errors import IntegrityError

_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_NONCE_BYTES = 12
DATA_KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id cost parameters, stored beside each wrapped key so they can be raised later.

    The default costs about 0.3 s on the project's 2-core reference machine: slow enough to make
    guessing passphrases expensive, quick enough for a DSL unlocking at 22:00.
    """

    memory_kib: int = 196_608
    iterations: int = 3
    lanes: int = 4

    def to_json(self, salt: bytes) -> str:
        return json.dumps(
            {
                "alg": "argon2id",
                "m": self.memory_kib,
                "t": self.iterations,
                "p": self.lanes,
                "salt": base64.b64encode(salt).decode(),
            },
            sort_keys=True,
        )

    @staticmethod
    def from_json(text: str) -> tuple[KdfParams, bytes]:
        data: dict[str, Any] = json.loads(text)
        if data.get("alg") != "argon2id":
            raise IntegrityError(f"unknown key-derivation algorithm {data.get('alg')!r}")
        params = KdfParams(memory_kib=data["m"], iterations=data["t"], lanes=data["p"])
        return params, base64.b64decode(data["salt"])


# Cheap parameters for unit tests that create many people; never used by the CLI.
TEST_KDF = KdfParams(memory_kib=8, iterations=1, lanes=1)


def derive_passphrase_key(passphrase: str, salt: bytes, params: KdfParams) -> bytes:
    """Stretch a passphrase into a 256-bit key-encryption key with Argon2id."""
    kdf = Argon2id(
        salt=salt,
        length=32,
        iterations=params.iterations,
        lanes=params.lanes,
        memory_cost=params.memory_kib,
    )
    # A terminal in another encoding can hand over undecodable bytes (kept by Python as
    # surrogates): they are stretched as those same bytes, so nothing raises on them and the
    # same keys typed the same way always unlock.
    return kdf.derive(passphrase.encode("utf-8", "surrogateescape"))


def new_salt() -> bytes:
    return os.urandom(16)


def aead_seal(key: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """AES-256-GCM with a fresh random nonce; returns nonce || ciphertext || tag."""
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated_data)


def aead_open(key: bytes, blob: bytes, associated_data: bytes) -> bytes:
    """Reverse :func:`aead_seal`; raises ``InvalidTag`` when the blob or its binding is wrong."""
    if len(blob) < _NONCE_BYTES + 16:
        raise InvalidTag
    return AESGCM(key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], associated_data)


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def wrap_to_public_key(secret: bytes, recipient: X25519PublicKey, info: bytes) -> bytes:
    """Encrypt ``secret`` so only the holder of the matching X25519 private key can read it."""
    return _SUITE.encrypt(secret, recipient, info=info)


def unwrap_with_private_key(wrapped: bytes, private_key: X25519PrivateKey, info: bytes) -> bytes:
    """Reverse :func:`wrap_to_public_key`; raises ``InvalidTag`` on any mismatch."""
    return _SUITE.decrypt(wrapped, private_key, info=info)


def raw_public_bytes(key: X25519PublicKey | Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def raw_private_bytes(key: X25519PrivateKey | Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )


def load_x25519_public(raw: bytes) -> X25519PublicKey:
    return X25519PublicKey.from_public_bytes(raw)


def load_x25519_private(raw: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(raw)


def load_ed25519_public(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw)


def load_ed25519_private(raw: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(raw)


def verify_signature(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def canonical_json(value: object) -> bytes:
    """One byte string per value (sorted keys, no spaces, ASCII): for hashing and signing."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def label(*parts: str | int) -> bytes:
    """Build a purpose-bound HPKE info or AEAD associated-data string."""
    return "|".join(str(part) for part in parts).encode("utf-8")
