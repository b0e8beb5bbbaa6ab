"""Lab server kinds as plug-ins: one module per kind of server, found here at import time.

A lab kind says how to install, start, wait for, configure, seed, version and probe one kind of
real server. The six kinds of the first slice live in lab.py itself; a new protocol's server is a
module in this folder with a `@register`-ed subclass of `Kind`, so adding one does not touch
every branch of lab.py. Each hook receives `lab` (the lab.py module: `spawn`, `STATE`, `CACHE`,
`run`, `log`, `check_loopback`, `venv_python`, `gen`, `finish`, ...) instead of importing it,
which keeps this package free of an import loop.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

KINDS: dict[str, "Kind"] = {}


class Kind:
    """One kind of lab server. Override what the server needs; the defaults do nothing."""

    #: `Service.kind` in lab.py's SERVICES.
    name: str = ""
    #: the leakscope protocol id a correct scan reports (`leakscope protocols`).
    protocol: str = ""
    #: the product name the manifest states.
    product: str = ""
    #: Debian packages, each with a path that exists once it is installed.
    apt: dict[str, str] = {}

    def install(self, lab) -> None:
        """Anything beyond `apt` (Go modules, jars, a venv package); idempotent."""

    def start(self, lab, svc, d: Path, state: dict) -> None:
        """Start the server in the background with `lab.spawn` (state dir `d`, loopback only)."""
        raise NotImplementedError(f"lab kind {self.name} cannot start a server")

    def ready(self, lab, svc) -> bool:
        """After its port accepts connections: does the server answer its own protocol yet?"""
        return True

    def configure(self, lab, svc) -> None:
        """Accounts and passwords, before anything is loaded."""

    def seed(self, lab, svc, truth: dict, ga: list[str]) -> None:
        """Load the dataset (`truth` is the generator's truth of this service's dataset, `ga`
        the generator's arguments) through the server's own write path."""

    def containers(self, lab, svc, truth: dict) -> list[dict]:
        """The manifest's truth of what a scan must list in this server: by default the
        generator's layout for this protocol (`leakscope-labgen truth`)."""
        return truth["layouts"].get(self.protocol, [])

    def count(self, lab, svc, container: dict) -> int:
        """The record count the server itself reports for a manifest container (test_lab.py)."""
        raise NotImplementedError(f"lab kind {self.name} cannot count {container['name']}")

    def version(self, lab, svc) -> str | None:
        """The server's version as it reports it (informative, for the manifest)."""
        return None

    def probe(self, lab, svc) -> str:
        """A short protocol-level answer, for `lab/status`; raise when it does not answer."""
        return "?"


def register(cls: type[Kind]) -> type[Kind]:
    """Class decorator: make a kind known to lab.py under `cls.name`."""
    kind = cls()
    if not kind.name or kind.name in KINDS:
        raise SystemExit(f"lab: kind {cls.__name__} has no name or a name already taken: {kind.name!r}")
    KINDS[kind.name] = kind
    return cls


for _mod in pkgutil.iter_modules([str(Path(__file__).parent)]):
    importlib.import_module(f"{__name__}.{_mod.name}")
