"""pytest fixtures for the provider simulator (providers/simulator).

Enable with ``pytest_plugins = ["tests.simulator_plugin"]`` (or ``-p tests.simulator_plugin``).

- ``simulator_server`` (session): one SimulatorServer on a free loopback port for the whole session.
- ``simulator`` (function): faults and recorded requests reset before each test; returns a
  ``SimulatorControl`` with ``.url``, ``.anthropic_base_url``, ``.openai_base_url``,
  ``.openrouter_base_url``, ``.add_fault(**rule) -> id``, ``.clear_faults()``, ``.faults()``,
  ``.reset()``, ``.requests() -> list[dict]`` (provider, method, path, headers, body) and
  ``.clear_requests()``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from providers.simulator.server import SimulatorServer


class SimulatorControl:
    """Talks to a running simulator over its /_control HTTP API (works for any simulator URL)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    @property
    def anthropic_base_url(self) -> str:
        return f"{self.url}/anthropic"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/openai/v1"

    @property
    def openrouter_base_url(self) -> str:
        return f"{self.url}/openrouter/api/v1"

    def _call(self, method: str, path: str, body: object = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"simulator {method} {path} -> {exc.code}: {exc.read().decode()}") from None

    def add_fault(self, **rule) -> int:
        """e.g. add_fault(provider="anthropic", fault="overloaded", count=1, retry_after=2)."""
        return self._call("POST", "/_control/faults", rule)["id"]

    def faults(self) -> list[dict]:
        return self._call("GET", "/_control/faults")["faults"]

    def clear_faults(self) -> None:
        self._call("DELETE", "/_control/faults")

    def requests(self) -> list[dict]:
        return self._call("GET", "/_control/requests")["requests"]

    def clear_requests(self) -> None:
        self._call("DELETE", "/_control/requests")

    def reset(self) -> None:
        self._call("POST", "/_control/reset")


@pytest.fixture(scope="session")
def simulator_server():
    server = SimulatorServer(host="127.0.0.1", port=0).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def simulator(simulator_server) -> SimulatorControl:
    control = SimulatorControl(simulator_server.url)
    control.reset()
    return control
