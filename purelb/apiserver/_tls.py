"""A self-signed CA and a server certificate for HTTPS off loopback.

Go (kubectl) ignores the CN, so the server certificate carries the listen address as an
IP SAN (plus 127.0.0.1 and localhost) (kubectl.md §10).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_VALIDITY = dt.timedelta(days=365)
"""Self-signed certificates last a year; restart with new ones after that."""


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


TOKEN_BYTES = 32
"""Random bytes in a generated bearer token (256 bits)."""


def load_or_make_token(path: Path) -> str:
    """The bearer token kept in ``path`` (0600), generated on first start, so a restart
    keeps earlier kubeconfigs working."""
    try:
        token = path.read_text().strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(TOKEN_BYTES)
    _write_private(path, (token + "\n").encode())
    return token


def load_or_make_self_signed(out_dir: Path, host: str) -> tuple[Path, Path, bytes]:
    """Reuse ca.crt/server.crt/server.key in ``out_dir`` when they are still valid for
    ``host`` (so clients keep trusting the server across restarts); else make new ones."""
    ca_path, cert_path = out_dir / "ca.crt", out_dir / "server.crt"
    key_path = out_dir / "server.key"
    if ca_path.exists() and cert_path.exists() and key_path.exists():
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            ips = {str(i) for i in sans.get_values_for_type(x509.IPAddress)}
            fresh = cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
            addr = ipaddress.ip_address(host)
            if fresh and (addr.is_unspecified or str(addr) in ips):
                return cert_path, key_path, ca_path.read_bytes()
        except (ValueError, x509.ExtensionNotFound):
            pass  # unreadable or foreign files: replace them below
    return make_self_signed(out_dir, host)


def make_self_signed(out_dir: Path, host: str) -> tuple[Path, Path, bytes]:
    """Write ca.crt, server.crt, server.key into ``out_dir``; return cert, key, CA PEM."""
    out_dir.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "purelb-apiserver-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName("localhost"),
                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    addr = ipaddress.ip_address(host)
    if not addr.is_unspecified and str(addr) != "127.0.0.1":
        sans.append(x509.IPAddress(addr))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "purelb-apiserver")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    (out_dir / "ca.crt").write_bytes(ca_pem)
    cert_path, key_path = out_dir / "server.crt", out_dir / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + ca_pem)
    _write_private(key_path, key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return cert_path, key_path, ca_pem
