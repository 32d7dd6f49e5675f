"""Which addresses a process tree listens on, read from /proc: the stack's loopback-only promise.

A script started with `start_new_session` (serve.sh, run-chat.sh) and every service it
starts share its session id, so the session finds them all, restarted ones included.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

TCP_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
TCP_LISTEN = "0A"  # the st column of a listening socket


def session_pids(session_id: int) -> list[int]:
    """The live processes whose session is `session_id`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="utf-8")
        except OSError:
            continue  # it exited meanwhile
        # Fields after the parenthesised name: state, ppid, pgrp, session, ...
        if int(stat.rsplit(")", 1)[1].split()[3]) == session_id:
            pids.append(int(entry.name))
    return pids


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    except OSError:
        pass  # it exited meanwhile
    return inodes


def _address(hex_address: str) -> str:
    """/proc/net/tcp's HOSTHEX:PORTHEX (each 32-bit word little-endian) as host:port."""
    host_hex, port_hex = hex_address.split(":")
    raw = bytes.fromhex(host_hex)
    host = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return f"{ipaddress.ip_address(host)}:{int(port_hex, 16)}"


def listening_addresses(session_id: int) -> dict[int, list[str]]:
    """pid -> the host:port each process of the session listens on (TCP, IPv4 and IPv6)."""
    listening: dict[str, str] = {}  # socket inode -> address
    for table in TCP_TABLES:
        for line in table.read_text(encoding="utf-8").splitlines()[1:]:
            fields = line.split()
            if fields[3] == TCP_LISTEN:
                listening[fields[9]] = _address(fields[1])
    found = {}
    for pid in session_pids(session_id):
        if addresses := sorted(listening[inode] for inode in _socket_inodes(pid) if inode in listening):
            found[pid] = addresses
    return found


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8 and ::1, also written as IPv4 in IPv6 (::ffff:127.0.0.1)."""
    host = ipaddress.ip_address(address.rsplit(":", 1)[0])
    mapped = getattr(host, "ipv4_mapped", None)
    return (mapped or host).is_loopback
