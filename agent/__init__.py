"""The host daemon: config, credential sources, STS client, rotation.

Modules: ``errors`` (the exception tree), ``config`` (the TOML file),
``sources`` (the agent's own identity), ``sts_client`` (STS over httpx), and
the rotation, daemon, control-socket and sd_notify modules beside them.

The names below are re-exported lazily (PEP 562), so ``import agent.control``
stays cheap for the CLI and nothing here imports httpx until it is used.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AgentError": "agent.errors", "ConfigError": "agent.errors", "SourceError": "agent.errors",
    "StsError": "agent.errors", "StsFailure": "agent.errors", "StsUnavailable": "agent.errors",
    "AgentConfig": "agent.config", "load_config": "agent.config", "parse_config": "agent.config",
    "CredentialSource": "agent.sources", "WebIdentitySource": "agent.sources",
    "fetch_role_credentials": "agent.sources", "source_from_config": "agent.sources",
    "StsClient": "agent.sts_client", "StsCredentials": "agent.sts_client",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agent' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
