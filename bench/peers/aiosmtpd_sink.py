"""aiosmtpd with its ``Sink`` handler: accepts every message and stores nothing (the Python ceiling).

Run as its own process by the benchmarks::

    python bench/peers/aiosmtpd_sink.py --listen 127.0.0.1:2700 [--cert C --key K --user U --password P]

With ``--cert``/``--key`` it offers STARTTLS; with ``--user``/``--password`` it offers AUTH (inside
TLS only) and checks the password with a constant-time compare. Stock asyncio event loop, as
aiosmtpd ships.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import signal
import ssl
import sys
from typing import Any

from aiosmtpd.handlers import Sink
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def _authenticator(user: str, password: str) -> Any:
    def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = (isinstance(data, LoginPassword) and hmac.compare_digest(data.login, user.encode())
              and hmac.compare_digest(data.password, password.encode()))
        return AuthResult(success=ok, handled=False)
    return check


async def _serve(args: argparse.Namespace) -> None:
    tls = None
    if args.cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.cert, args.key)
    auth = _authenticator(args.user, args.password) if args.user else None
    host, _, port = args.listen.rpartition(":")
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Sink(), hostname="aiosmtpd.bench.invalid", tls_context=tls, authenticator=auth,
                     auth_require_tls=True),
        host, int(port), backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"aiosmtpd Sink listening on {args.listen}", file=sys.stderr, flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT on loopback")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--user", default="")
    parser.add_argument("--password", default="")
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
