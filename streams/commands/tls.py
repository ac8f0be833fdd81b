"""SASL/SCRAM over TLS for the embedded broker (``MAILROOM_BROKER_SECURITY=SASL_SSL``).

Made once per data directory, in ``<data_dir>/tls/`` (owner-only): a certificate authority
of its own, the broker's keystore (its certificate for 127.0.0.1 and localhost, signed by
that authority), ``ca.pem`` for clients to trust (used by every client of this data dir
unless ``MAILROOM_SSL_CAFILE`` names another), and the brokers' own SCRAM password. With
Java's ``keytool``, so nothing beyond the JDK Kafka needs anyway.

The client's user is the one of ``MAILROOM_SASL_USERNAME`` / ``MAILROOM_SASL_PASSWORD``,
written into the node's storage when it is formatted (first start), for SCRAM-SHA-256 and
SCRAM-SHA-512. Passwords go to owner-only files and the storage tool's arguments, never
to a log line.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from streams.errors import BrokerError
from streams.settings import Settings

BROKER_USER = "mailroom-broker"
MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
NAMES = "SAN=ip:127.0.0.1,dns:localhost"


@dataclass(frozen=True)
class Tls:
    folder: Path
    keystore: Path
    ca_pem: Path
    store_password: str
    broker_password: str


def tls_folder(settings: Settings) -> Path:
    return (settings.data_dir / "tls").resolve()


def ensure_tls(settings: Settings) -> Tls:
    """The data dir's authority, keystore and passwords; made the first time."""
    folder = tls_folder(settings)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    store_password = _secret(folder / "store-password")
    broker_password = _secret(folder / "broker-password")
    keystore, ca_pem = folder / "broker.p12", folder / "ca.pem"
    if not (keystore.exists() and ca_pem.exists()):
        _make(folder, store_password)
    return Tls(folder, keystore, ca_pem, store_password, broker_password)


def _secret(path: Path) -> str:
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(24))
    return path.read_text().strip()


def _keytool() -> str:
    java_home = os.environ.get("JAVA_HOME")
    found = str(Path(java_home) / "bin" / "keytool") if java_home else shutil.which("keytool")
    if not found or not Path(found).exists():
        raise BrokerError("keytool (from the JDK) is not on PATH; it makes the TLS certificates")
    return found


def _make(folder: Path, password: str) -> None:
    keytool = _keytool()
    ca, broker = folder / "ca.p12", folder / "broker.p12"
    for stale in (ca, broker, folder / "ca.pem", folder / "broker.csr", folder / "broker.crt"):
        stale.unlink(missing_ok=True)
    store = ["-storetype", "PKCS12", "-storepass", password]
    steps = [
        ["-genkeypair", "-alias", "ca", "-keyalg", "RSA", "-keysize", "2048", "-validity",
         "3650", "-dname", "CN=mailroom local CA", "-ext", "bc:c", "-keystore", str(ca), *store],
        ["-exportcert", "-rfc", "-alias", "ca", "-keystore", str(ca), *store,
         "-file", str(folder / "ca.pem")],
        ["-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048", "-validity",
         "3650", "-dname", "CN=localhost", "-ext", NAMES, "-keystore", str(broker), *store],
        ["-certreq", "-alias", "broker", "-keystore", str(broker), *store,
         "-file", str(folder / "broker.csr")],
        ["-gencert", "-alias", "ca", "-keystore", str(ca), *store, "-rfc", "-validity", "3650",
         "-infile", str(folder / "broker.csr"), "-outfile", str(folder / "broker.crt"),
         "-ext", NAMES, "-ext", "ku:c=digitalSignature,keyEncipherment"],
        ["-importcert", "-noprompt", "-alias", "ca", "-file", str(folder / "ca.pem"),
         "-keystore", str(broker), *store],
        ["-importcert", "-noprompt", "-alias", "broker", "-file", str(folder / "broker.crt"),
         "-keystore", str(broker), *store],
    ]  # fmt: skip
    for step in steps:
        proc = subprocess.run([keytool, *step], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise BrokerError(f"keytool {step[0]} failed: {(proc.stdout + proc.stderr)[-500:]}")
    for path in folder.iterdir():
        path.chmod(0o600)


def broker_properties(tls: Tls) -> str:
    """The security part of a node's server.properties (the file is owner-only)."""
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{BROKER_USER}" password="{tls.broker_password}";'
    )
    return "\n".join(
        [
            f"sasl.enabled.mechanisms={','.join(MECHANISMS)}",
            "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
            f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}",
            f"listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={jaas}",
            "ssl.keystore.type=PKCS12",
            f"ssl.keystore.location={tls.keystore}",
            f"ssl.keystore.password={tls.store_password}",
            f"ssl.key.password={tls.store_password}",
            "ssl.truststore.type=PKCS12",
            f"ssl.truststore.location={tls.keystore}",
            f"ssl.truststore.password={tls.store_password}",
            "ssl.client.auth=none",
            "",
        ]
    )


def scram_arguments(settings: Settings, tls: Tls) -> list[str]:
    """``--add-scram`` arguments for the storage tool: the brokers' user and the client's."""
    if not settings.sasl_username or settings.sasl_password is None:
        raise BrokerError(
            "MAILROOM_BROKER_SECURITY=SASL_SSL needs the client's user: set "
            "MAILROOM_SASL_USERNAME and MAILROOM_SASL_PASSWORD before the first start"
        )
    client = settings.sasl_password.get_secret_value()
    if '"' in client or '"' in settings.sasl_username:
        raise BrokerError('the SASL user name and password may not contain a double quote (")')
    users = [(BROKER_USER, tls.broker_password), (settings.sasl_username, client)]
    arguments = []
    for mechanism in MECHANISMS:
        for name, password in users:
            arguments += ["--add-scram", f'{mechanism}=[name="{name}",password="{password}"]']
    return arguments
