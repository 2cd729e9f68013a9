"""HTTP and HTTPS checks: status, body, TLS verification, one fresh connection per probe."""

from __future__ import annotations

import ssl

import aiohttp

from geodns.checks.base import OK, ProbeResult, Target, excerpt, failed
from geodns.config.model import Check

MAX_BODY = 64 * 1024  # enough for any health page; a runaway body is not read further


def _status_text(ranges: tuple[tuple[int, int], ...]) -> str:
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


class HttpProbe:
    def __init__(self, check: Check) -> None:
        self.check = check
        self.scheme = "https" if check.type == "https" else "http"
        self._ssl: ssl.SSLContext | bool = False
        if self.scheme == "https":
            if check.tls_verify:
                self._ssl = ssl.create_default_context(cafile=str(check.ca_file) if check.ca_file else None)
            else:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                self._ssl = ctx
        self._session: aiohttp.ClientSession | None = None
        self._headers = dict(check.headers)
        if check.host is not None:
            self._headers.setdefault("Host", check.host)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # force_close: a fresh connection per probe. A pooled keep-alive connection
            # would keep "working" after the listener died, hiding the failure.
            connector = aiohttp.TCPConnector(force_close=True, limit=0, ssl=self._ssl, use_dns_cache=False)
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=True,
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def probe(self, target: Target) -> ProbeResult:
        check = self.check
        url = f"{self.scheme}://{target.url_host}:{target.port}{check.path}"
        server_hostname = check.host if self.scheme == "https" and check.host else None
        try:
            async with self._get_session().request(
                check.method,
                url,
                headers=self._headers,
                allow_redirects=False,
                server_hostname=server_hostname,
            ) as resp:
                body = await self._read_body(resp)
                status = resp.status
        except aiohttp.ClientConnectorCertificateError as exc:
            return failed("tls", f"TLS certificate not trusted: {exc.certificate_error}")
        except aiohttp.ClientSSLError as exc:
            return failed("tls", f"TLS error: {exc}")
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror or str(exc.os_error)
            kind = "refused" if isinstance(exc.os_error, ConnectionRefusedError) else "connect"
            return failed(kind, f"cannot connect to {target}: {reason.lower()}")
        except aiohttp.ServerDisconnectedError:
            return failed("disconnect", "server closed the connection without a response")
        except aiohttp.ClientResponseError as exc:
            return failed("protocol", f"bad HTTP response: {exc.message}")
        except aiohttp.ClientPayloadError as exc:
            return failed("protocol", f"broken response body: {exc}")
        if not any(lo <= status <= hi for lo, hi in check.expect_status):
            return failed("status", f"HTTP {status} (expected {_status_text(check.expect_status)})")
        if check.expect_body is not None:
            text = body.decode("utf-8", "replace")
            if not check.expect_body.matches(text):
                return failed(
                    "body", f"HTTP {status} body did not match {check.expect_body}: {excerpt(text, 80)!r}"
                )
        return OK

    @staticmethod
    async def _read_body(resp: aiohttp.ClientResponse) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while size < MAX_BODY:
            chunk = await resp.content.read(MAX_BODY - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
