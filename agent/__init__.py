"""The host daemon: config, credential sources, STS client, rotation.

Modules: ``errors`` (the exception tree), ``config`` (the TOML file),
``sources`` (the agent's own identity), ``sts_client`` (STS over httpx), and
the rotation, daemon, control-socket and sd_notify modules beside them.
Import what you use from its module: this package re-exports nothing, so
``import agent.control`` stays cheap for the CLI.
"""
