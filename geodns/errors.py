"""Error types. Every error a user can cause says where, in their words."""

from __future__ import annotations

from dataclasses import dataclass


class GeoDnsError(Exception):
    """Root of every error geodns raises on purpose.

    `exit_code` is what the CLI exits with: 2 when what the user gave is wrong
    (a config, a target, a token), 1 when something outside failed (a port in use,
    the daemon unreachable, the AWS API).
    """

    exit_code = 2


@dataclass(frozen=True, order=True)
class Location:
    file: str
    line: int  # 1-based
    col: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, order=True)
class Issue:
    where: Location
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class ConfigError(GeoDnsError):
    """A configuration with one or more problems; lists every one of them."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = sorted(set(issues))
        super().__init__("\n".join(str(i) for i in self.issues))


class ListenError(OSError):
    """A listener that could not be opened, with the cause in words."""

    def __str__(self) -> str:
        return str(self.strerror)  # the words alone, without "[Errno 98]"


def listen_failure(exc: OSError, host: str, port: int, proto: str) -> ListenError:
    """'cannot listen on [::1]:5300 (UDP): this host has no IPv6 on loopback', never a bare errno."""
    import errno  # noqa: PLC0415 - only on this path

    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    v6 = ":" in host
    if exc.errno == errno.EADDRINUSE:
        why = f"address in use by another process (`ss -lnp 'sport = :{port}'` shows which)"
    elif exc.errno in (errno.EACCES, errno.EPERM) and 0 < port < 1024:
        why = f"port {port} needs root or CAP_NET_BIND_SERVICE (e.g. AmbientCapabilities= in a systemd unit)"
    elif exc.errno == errno.EAFNOSUPPORT:
        why = "this host has no IPv6" if v6 else "this address family is not supported here"
    elif exc.errno == errno.EADDRNOTAVAIL:
        loopback = host in ("::1", "0:0:0:0:0:0:0:1")
        why = "this host has no IPv6 on loopback" if loopback else f"no interface of this host has {host}"
    else:
        why = exc.strerror or str(exc)
    return ListenError(exc.errno or 0, f"cannot listen on {where} ({proto}): {why}")
