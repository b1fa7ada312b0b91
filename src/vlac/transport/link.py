"""Socket options shared by both ends of a robot link: CURVE keys and the loopback rule.

numpy, pyzmq and msgpack only (a robot driver imports this)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import zmq


@dataclass
class CurveKeys:
    """Z85 CURVE keys. The gateway needs its secret key (and the robots' public keys to admit);
    a robot needs the gateway's public key and its own key pair."""

    public: bytes
    secret: bytes

    @classmethod
    def generate(cls) -> "CurveKeys":
        public, secret = zmq.curve_keypair()
        return cls(public, secret)

    @classmethod
    def load(cls, path: str | Path) -> "CurveKeys":
        """A key file written by ``save``: two lines, public then secret (Z85)."""
        p = Path(path)
        try:
            lines = p.read_text().split()
        except OSError as e:
            raise ValueError(f"cannot read CURVE key file {p} ({e}); create one with `vlac robot keys --out DIR`") from None
        if len(lines) < 1 or any(len(x) != 40 for x in lines[:2]):
            raise ValueError(f"{p} is not a CURVE key file (two 40-character Z85 keys: public, secret)")
        return cls(lines[0].encode(), lines[1].encode() if len(lines) > 1 else b"")

    def save(self, path: str | Path, public_only: bool = False) -> None:
        Path(path).write_text(self.public.decode() + ("" if public_only else "\n" + self.secret.decode()) + "\n")


def is_loopback(address: str) -> bool:
    """Whether a tcp:// address binds or connects on this machine only."""
    if address.startswith(("inproc://", "ipc://")):
        return True
    host = urlparse(address).hostname or ""
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")
