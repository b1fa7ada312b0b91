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
    """Whether an address binds or connects on this machine only. ZeroMQ reads ``a;b`` as two
    endpoints (a source and a destination address), so every one of them must be loopback; a host
    name counts only if it is ``localhost`` (``127.0.0.1.example.com`` is a name, not 127.0.0.1)."""
    if address.startswith(("inproc://", "ipc://")):
        return True
    if not address.startswith("tcp://"):
        return False
    return all(_loopback_host(part) for part in address[len("tcp://"):].split(";"))


def _loopback_host(endpoint: str) -> bool:
    import ipaddress

    host = urlparse("tcp://" + endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name, an interface or "*"
        return False


def load_robot_keys(specs: list[str]) -> dict[bytes, str]:
    """The robots a gateway admits, as {Z85 public key: robot id}. Each spec is ``ID=FILE`` or a
    ``FILE`` written by ``vlac robot keys --name ID`` (the id is the file's stem): a key admits
    only the robot id it was issued to."""
    admitted: dict[bytes, str] = {}
    for spec in (s.strip() for s in specs):
        if not spec:
            continue
        robot, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        robot = robot or Path(path).stem
        key = CurveKeys.load(path).public
        if key in admitted and admitted[key] != robot:
            raise ValueError(f"robot key {path} is given for both {admitted[key]!r} and {robot!r}; issue each "
                             "robot its own key pair with `vlac robot keys --name ID`")
        admitted[key] = robot
    return admitted
