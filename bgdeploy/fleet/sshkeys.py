"""SSH key material for the sandbox: the operator key pair and the known_hosts file.

Keys are made with ``cryptography`` (already a dependency of paramiko), so no ``ssh-keygen``
is needed on the operator's machine. Private keys are written with mode 0600.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bgdeploy.core.files import write_atomic


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only (0600), atomically."""
    write_atomic(path, data, mode=0o600)


def generate_keypair(private_path: Path, comment: str) -> str:
    """Make an ed25519 key pair in OpenSSH format; returns the public key line."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    line = f"{public.decode()} {comment}"
    write_private(private_path, private)
    write_atomic(private_path.with_name(private_path.name + ".pub"), line + "\n", mode=0o644)
    return line


def known_hosts_line(host: str, port: int, public_key: str) -> str:
    """A known_hosts line; a non-default port is written ``[host]:port`` as OpenSSH does."""
    key_type, key_b64 = public_key.split()[:2]
    name = host if port == 22 else f"[{host}]:{port}"
    return f"{name} {key_type} {key_b64}"


def ssh_banner(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether an SSH server answers with its banner (an open port alone is not enough:
    Docker's proxy accepts connections before sshd runs)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(16).startswith(b"SSH-")
    except OSError:
        return False


def wait_for_banner(host: str, port: int, deadline: float) -> bool:
    """Poll for the SSH banner until ``deadline`` (a ``time.monotonic()`` value)."""
    while time.monotonic() < deadline:
        if ssh_banner(host, port):
            return True
        time.sleep(0.2)
    return False
