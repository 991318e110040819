"""The lab's signing key: Ed25519 (through ``cryptography``), so that a run's head cannot be forged.

``athanor keys init`` makes the key pair under ``$ATHANOR_HOME/keys/``: ``signing_key.pem`` (the
private key, PKCS#8, readable by its owner only) and ``signing_key.pub.pem`` (the public key, to give
to auditors). Every head recorded once the key exists is signed with it (see :mod:`runs.seal`).
Rewriting a run's whole chain, its manifest and the run index then still fails the audit, unless the
forger also holds the private key.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from athanor.errors import AthanorError

__all__ = [
    "KEY_DIR",
    "PRIVATE_KEY_FILE",
    "PUBLIC_KEY_FILE",
    "create_signing_key",
    "fingerprint",
    "lab_public_key",
    "lab_signing_key",
    "public_key_from_pem",
    "public_key_pem",
    "sign",
    "verify",
]

#: Folder of the lab's keys under ``$ATHANOR_HOME``.
KEY_DIR = "keys"
#: The private key, PKCS#8 PEM, mode 0600.
PRIVATE_KEY_FILE = "signing_key.pem"
#: The public key, SubjectPublicKeyInfo PEM.
PUBLIC_KEY_FILE = "signing_key.pub.pem"


def _paths(home: Path) -> tuple[Path, Path]:
    folder = Path(home) / KEY_DIR
    return folder / PRIVATE_KEY_FILE, folder / PUBLIC_KEY_FILE


def create_signing_key(home: Path) -> Path:
    """Make the lab's key pair under ``home/keys``.

    Returns:
        The public key's file.

    Raises:
        AthanorError: The lab has a key already (a new one would leave its signed runs unverifiable).
    """
    private_path, public_path = _paths(home)
    if private_path.exists() or public_path.exists():
        raise AthanorError(
            f"this lab already has a signing key ({private_path.parent}); its runs are signed with it."
            " Show its public key with `athanor keys show`; to start over, move that folder away first"
            " (runs signed with the old key then need its public key to be audited)"
        )
    key = Ed25519PrivateKey.generate()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(private_path.parent, 0o700)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    public_path.write_bytes(public_key_pem(key.public_key()))
    return public_path


def lab_signing_key(home: Path) -> Ed25519PrivateKey | None:
    """The lab's private key, or None when it has none.

    Raises:
        AthanorError: The key file exists but is not an Ed25519 private key.
    """
    private_path, _ = _paths(home)
    if not private_path.exists():
        return None
    try:
        key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    except (ValueError, TypeError) as error:
        raise AthanorError(f"{private_path} is not a readable private key ({error})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AthanorError(f"{private_path} is not an Ed25519 key; make one with `athanor keys init`")
    return key


def lab_public_key(home: Path) -> Ed25519PublicKey | None:
    """The lab's public key, or None when it has none."""
    _, public_path = _paths(home)
    return public_key_from_pem(public_path.read_bytes(), str(public_path)) if public_path.exists() else None


def public_key_from_pem(pem: bytes, where: str) -> Ed25519PublicKey:
    """An Ed25519 public key from its PEM text.

    Raises:
        AthanorError: The text is not an Ed25519 public key; the message names ``where``.
    """
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as error:
        raise AthanorError(f"{where} is not a PEM public key ({error})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AthanorError(f"{where} is not an Ed25519 public key (athanor signs with Ed25519)")
    return key


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    """The PEM text of a public key."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint(key: Ed25519PublicKey) -> str:
    """The key's fingerprint: ``SHA256:`` and the hex SHA-256 of its 32 raw bytes."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + hashlib.sha256(raw).hexdigest()


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    """The hex Ed25519 signature of ``data``."""
    return key.sign(data).hex()


def verify(key: Ed25519PublicKey, data: bytes, signature: str) -> bool:
    """Whether ``signature`` (hex) is ``key``'s signature of ``data``."""
    try:
        key.verify(bytes.fromhex(signature), data)
    except (InvalidSignature, ValueError):
        return False
    return True
