"""Key material and readiness checks of the sandbox."""

from __future__ import annotations

import socket
import stat
import threading
from pathlib import Path

import paramiko

from bgdeploy.fleet import sshkeys


def test_keypair_is_private_and_loadable(tmp_path: Path) -> None:
    public = sshkeys.generate_keypair(tmp_path / "id_ed25519", "test")
    assert public.startswith("ssh-ed25519 ") and public.endswith(" test")
    mode = stat.S_IMODE((tmp_path / "id_ed25519").stat().st_mode)
    assert mode == 0o600
    key = paramiko.Ed25519Key.from_private_key_file(str(tmp_path / "id_ed25519"))
    assert public.split()[1] == key.get_base64()


def test_known_hosts_line_brackets_non_default_ports() -> None:
    key = "ssh-ed25519 AAAAC3Nza root@web1"
    assert (
        sshkeys.known_hosts_line("127.0.0.1", 2222, key) == "[127.0.0.1]:2222 ssh-ed25519 AAAAC3Nza"
    )
    assert sshkeys.known_hosts_line("web1", 22, key) == "web1 ssh-ed25519 AAAAC3Nza"


def test_open_port_without_banner_is_not_ready() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def accept(banner: bytes) -> None:
        conn, _ = server.accept()
        conn.sendall(banner)
        conn.close()

    thread = threading.Thread(target=accept, args=(b"HTTP/1.1 400\r\n",))
    thread.start()
    assert not sshkeys.ssh_banner("127.0.0.1", port)
    thread.join()
    thread = threading.Thread(target=accept, args=(b"SSH-2.0-OpenSSH_9.2\r\n",))
    thread.start()
    assert sshkeys.ssh_banner("127.0.0.1", port)
    thread.join()
    server.close()
