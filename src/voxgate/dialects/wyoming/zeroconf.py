"""mDNS advertisement of the Wyoming port as `_wyoming._tcp.local.`, which Home Assistant discovers.

Multicast DNS only reaches the local network from the host's own interfaces: in a container it needs host
networking (docs/wyoming.md).
"""

from __future__ import annotations

import socket
from typing import Any

SERVICE = "_wyoming._tcp.local."
MDNS_GROUP = "224.0.0.251"
WILDCARDS = {"", "0.0.0.0", "::"}  # any-address binds: advertise a real one


def _address(host: str) -> str:
    """The IPv4 address to advertise: --host itself, or the one this machine reaches the LAN from."""
    if host not in WILDCARDS and host != "localhost":
        return socket.gethostbyname(host)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.setblocking(False)
        probe.connect((MDNS_GROUP, 1))  # no packet is sent: this only picks the outgoing interface
        return str(probe.getsockname()[0])
    finally:
        probe.close()


class Advertisement:
    """A registered `_wyoming._tcp.local.` service; `stop()` withdraws it."""

    def __init__(self, zc: Any, info: Any) -> None:
        self._zc = zc
        self._info = info

    @classmethod
    async def start(cls, host: str, port: int, name: str | None = None,
                    interfaces: list[str] | None = None) -> Advertisement:
        """Register voxgate-<hostname> on `port` (on every interface, or only `interfaces`)."""
        from zeroconf import InterfaceChoice, IPVersion
        from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

        label = name or f"voxgate-{socket.gethostname().split('.')[0]}"
        info = AsyncServiceInfo(SERVICE, f"{label}.{SERVICE}", addresses=[socket.inet_aton(_address(host))],
                                port=port, properties={"program": "voxgate"})
        zc = AsyncZeroconf(interfaces=interfaces or InterfaceChoice.All, ip_version=IPVersion.V4Only)
        try:
            await zc.async_register_service(info)
        except BaseException:
            await zc.async_close()
            raise
        return cls(zc, info)

    async def stop(self) -> None:
        """Withdraw the service and close the mDNS sockets."""
        try:
            await self._zc.async_unregister_service(self._info)
        finally:
            await self._zc.async_close()
