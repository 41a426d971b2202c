"""The IMDS and container-credentials handlers, served by the layer in ``wire``.

The metadata server knows nothing of the agent: it serves whatever a
``CredentialHolder`` hands it. Handlers are pure (``HttpRequest`` ->
``HttpResponse``); ``serve_metadata``/``serve_container`` put them on listeners.
"""

from metadata_server.callers import CallerMatch, CallerRule, select
from metadata_server.config import ContainerConfig, MetadataConfig
from metadata_server.container import ContainerHandler, new_container_token, write_token_file
from metadata_server.credentials import CredentialHolder, RoleCredentials
from metadata_server.imds import ImdsHandler
from metadata_server.peers import PeerPolicy
from metadata_server.server import container_uri, serve_container, serve_metadata
from metadata_server.tokens import TokenSealer

__all__ = [
    "CallerMatch",
    "CallerRule",
    "ContainerConfig",
    "ContainerHandler",
    "CredentialHolder",
    "ImdsHandler",
    "MetadataConfig",
    "PeerPolicy",
    "RoleCredentials",
    "TokenSealer",
    "container_uri",
    "new_container_token",
    "select",
    "serve_container",
    "serve_metadata",
    "write_token_file",
]
