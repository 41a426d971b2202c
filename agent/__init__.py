"""The host daemon: config, credential sources, STS client, rotation."""
