"""TLS for connections with EncryptNetworkData 1: one narrow cipher policy for
both ends, and a self-signed certificate a target makes for itself."""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl

# -- TLS --------------------------------------------------------------------
_CIPHERS = "ECDHE+AESGCM:!AES128:!aNULL"


def is_tls(sock: object) -> bool:
    """Whether ``sock`` is a TLS socket.  ssl is loaded only where TLS is
    used (it costs every command several milliseconds otherwise), and no
    TLS socket can exist before it is."""
    loaded = sys.modules.get("ssl")
    return loaded is not None and isinstance(sock, loaded.SSLSocket)


def server_tls(certfile: str, keyfile: str) -> ssl.SSLContext:
    """TLS for a target (EncryptNetworkData 1): TLS 1.2 with AES-256-GCM only,
    so the handshake can bind to tls-unique."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(_CIPHERS)
    ctx.load_cert_chain(certfile, keyfile)
    return ctx


def client_tls() -> ssl.SSLContext:
    """TLS for a source.  The certificate is not checked against a CA: the
    peer is authenticated by the shared secret, bound to this TLS session."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(_CIPHERS)
    return ctx


def self_signed(directory: str) -> tuple[str, str]:
    """Create (or reuse) a self-signed certificate and key for a target."""
    cert, key = os.path.join(directory, "target.crt"), os.path.join(directory, "target.key")
    if os.path.exists(cert) and os.path.exists(key):
        return cert, key
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    pkey = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dtcore target")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(pkey.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=3650))
                   .sign(pkey, hashes.SHA256()))
    os.makedirs(directory, exist_ok=True)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pkey.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    with open(cert, "wb") as f:
        f.write(certificate.public_bytes(serialization.Encoding.PEM))
    return cert, key
