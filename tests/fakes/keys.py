"""Test credentials written to tmp_path: an APNs .p8 key, a service-account JSON, a TLS CA."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

APNS_KEY_ID = "ABC123DEFG"
APNS_TEAM_ID = "TEAM123456"
APNS_BUNDLE_ID = "com.example.calls"


@dataclass(frozen=True)
class ApnsKey:
    path: Path
    key_id: str
    team_id: str
    public_key: ec.EllipticCurvePublicKey


@dataclass(frozen=True)
class ServiceAccount:
    path: Path
    project_id: str
    client_email: str
    public_key: rsa.RSAPublicKey


def write_apns_key(directory: Path, name: str = "AuthKey.p8") -> ApnsKey:
    key = ec.generate_private_key(ec.SECP256R1())
    path = directory / name
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ApnsKey(path, APNS_KEY_ID, APNS_TEAM_ID, key.public_key())


def write_service_account(
    directory: Path, token_uri: str, project_id: str = "demo-project"
) -> ServiceAccount:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    email = f"push@{project_id}.iam.gserviceaccount.com"
    info = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": "0123456789abcdef",
        "private_key": pem,
        "client_email": email,
        "client_id": "1234567890",
        "token_uri": token_uri,
    }
    path = directory / "service-account.json"
    path.write_text(json.dumps(info))
    return ServiceAccount(path, project_id, email, key.public_key())


def write_tls(directory: Path) -> tuple[trustme.CA, trustme.LeafCert, Path]:
    """A private CA, a server certificate for 127.0.0.1/localhost, and the CA file to trust."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file = directory / "test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return ca, cert, ca_file
