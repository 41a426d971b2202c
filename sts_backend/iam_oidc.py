"""IAM operations on OpenID Connect providers, which AssumeRoleWithWebIdentity trusts.

A provider is named by its URL: ``https://HOST[/PATH]``, at most 255 characters, no
query or fragment. IAM stores and returns it without the scheme (GetOpenIDConnectProvider's
``Url`` is ``HOST[/PATH]``) and the ARN is ``arn:aws:iam::ACCT:oidc-provider/HOST[/PATH]``;
the URL is not normalised, so ``https://h/`` and ``https://h`` are two providers, as in IAM.
This backend also accepts ``http://`` for a loopback host (127.0.0.0/8, ``::1``,
``localhost``), so tests can run an identity provider without TLS; nothing else.

Limits [IUG:reference_iam-quotas; moto 5.2.5 for the wording]: 100 providers per account
(``OpenIdConnectProvidersPerAccount``, a store quota), 100 client ids per provider
(LimitExceeded), 5 thumbprints (InvalidInput). Adding a client id that is there already,
or removing one that is not, changes nothing and is not an error (the API reference says
both operations are idempotent).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from sts_backend import iam_errors as err
from sts_backend.errors import ValidationError
from sts_backend.iam_records import OidcProvider
from sts_backend.iam_render import Ctx, Handler, page, tags_in, tags_out
from wire.listeners import is_loopback_host

MAX_CLIENT_IDS = 100
MAX_THUMBPRINTS = 5


def provider_arn(account_id: str, host_path: str) -> str:
    """The ARN of the provider whose URL without its scheme is ``host_path``."""
    return f"arn:aws:iam::{account_id}:oidc-provider/{host_path}"


def checked_url(url: str) -> tuple[str, str]:
    """``(url, host_path)`` for a provider URL: ``https://``, or ``http://`` on loopback.

    Raises:
        ValidationError: anything else.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        raise err.invalid_oidc_url() from None
    if (parts.scheme not in ("https", "http") or not host or parts.query or parts.fragment
            or "@" in parts.netloc or not url.startswith(f"{parts.scheme}://")):
        raise err.invalid_oidc_url()
    if parts.scheme == "http" and not is_loopback_host(host):
        raise err.invalid_oidc_url()
    return url, url[len(parts.scheme) + 3:]


def _checked_lists(client_ids: list[str], thumbprints: list[str]) -> None:
    if len(thumbprints) > MAX_THUMBPRINTS:
        raise err.too_many_thumbprints()
    if len(client_ids) > MAX_CLIENT_IDS:
        raise err.quota_exceeded("ClientIdsPerOpenIdConnectProvider", MAX_CLIENT_IDS)


def _unique(items) -> list[str]:
    return list(dict.fromkeys(items))


def create_oidc_provider(p: dict, ctx: Ctx) -> dict:
    """CreateOpenIDConnectProvider: the new provider's ARN (and its tags)."""
    url, host_path = checked_url(p["Url"])
    client_ids, thumbprints = _unique(p.get("ClientIDList") or []), _unique(p.get("ThumbprintList") or [])
    _checked_lists(client_ids, thumbprints)
    tags = tags_in(p)
    if len(tags) > ctx.store.quota("TagsPerEntity"):
        raise err.quota_exceeded("TagsPerEntity", ctx.store.quota("TagsPerEntity"))
    provider = ctx.store.create_oidc_provider(provider_arn(ctx.store.account_id(), host_path), url, client_ids,
                                              thumbprints, tags)
    out: dict = {"OpenIDConnectProviderArn": provider.arn}
    if provider.tags:
        out["Tags"] = tags_out(list(provider.tags))
    return out


def get_oidc_provider(p: dict, ctx: Ctx) -> dict:
    """GetOpenIDConnectProvider: ``Url`` without the scheme, as IAM returns it."""
    provider = ctx.store.get_oidc_provider(p["OpenIDConnectProviderArn"])
    out: dict = {"Url": provider.host_path, "ClientIDList": list(provider.client_ids),
                 "ThumbprintList": list(provider.thumbprints), "CreateDate": provider.create_date}
    if provider.tags:
        out["Tags"] = tags_out(list(provider.tags))
    return out


def list_oidc_providers(p: dict, ctx: Ctx) -> dict:
    return {"OpenIDConnectProviderList": [{"Arn": provider.arn} for provider in ctx.store.oidc_providers()]}


def delete_oidc_provider(p: dict, ctx: Ctx) -> None:
    ctx.store.delete_oidc_provider(p["OpenIDConnectProviderArn"])


def _change(ctx: Ctx, arn: str, change) -> None:
    ctx.store.update_oidc_provider(arn, change)


def add_client_id(p: dict, ctx: Ctx) -> None:
    def change(provider: OidcProvider):
        client_ids = _unique([*provider.client_ids, p["ClientID"]])
        _checked_lists(client_ids, list(provider.thumbprints))
        return client_ids, provider.thumbprints, provider.tags
    _change(ctx, p["OpenIDConnectProviderArn"], change)


def remove_client_id(p: dict, ctx: Ctx) -> None:
    def change(provider: OidcProvider):
        return [c for c in provider.client_ids if c != p["ClientID"]], provider.thumbprints, provider.tags
    _change(ctx, p["OpenIDConnectProviderArn"], change)


def update_thumbprint(p: dict, ctx: Ctx) -> None:
    def change(provider: OidcProvider):
        thumbprints = _unique(p.get("ThumbprintList") or [])
        _checked_lists(list(provider.client_ids), thumbprints)
        return provider.client_ids, thumbprints, provider.tags
    _change(ctx, p["OpenIDConnectProviderArn"], change)


def tag_oidc_provider(p: dict, ctx: Ctx) -> None:
    """TagOpenIDConnectProvider: new keys added, existing ones (case-insensitive) get the new value."""
    new = tags_in(p)
    limit = ctx.store.quota("TagsPerEntity")

    def change(provider: OidcProvider):
        merged = {k.casefold(): (k, v) for k, v in provider.tags}
        for k, v in new:
            old = merged.get(k.casefold())
            merged[k.casefold()] = (old[0] if old else k, v)
        if len(merged) > limit:
            raise err.quota_exceeded("TagsPerEntity", limit)
        return provider.client_ids, provider.thumbprints, list(merged.values())
    _change(ctx, p["OpenIDConnectProviderArn"], change)


def untag_oidc_provider(p: dict, ctx: Ctx) -> None:
    gone = {k.casefold() for k in p.get("TagKeys") or []}

    def change(provider: OidcProvider):
        return provider.client_ids, provider.thumbprints, [(k, v) for k, v in provider.tags if k.casefold() not in gone]
    _change(ctx, p["OpenIDConnectProviderArn"], change)


def list_oidc_provider_tags(p: dict, ctx: Ctx) -> dict:
    provider = ctx.store.get_oidc_provider(p["OpenIDConnectProviderArn"])
    return page(tags_out(list(provider.tags)), p, "Tags")


HANDLERS: dict[str, Handler] = {
    "CreateOpenIDConnectProvider": create_oidc_provider,
    "GetOpenIDConnectProvider": get_oidc_provider,
    "ListOpenIDConnectProviders": list_oidc_providers,
    "DeleteOpenIDConnectProvider": delete_oidc_provider,
    "AddClientIDToOpenIDConnectProvider": add_client_id,
    "RemoveClientIDFromOpenIDConnectProvider": remove_client_id,
    "UpdateOpenIDConnectProviderThumbprint": update_thumbprint,
    "TagOpenIDConnectProvider": tag_oidc_provider,
    "UntagOpenIDConnectProvider": untag_oidc_provider,
    "ListOpenIDConnectProviderTags": list_oidc_provider_tags,
}
OIDC_ACTIONS = frozenset(HANDLERS) - {"CreateOpenIDConnectProvider", "ListOpenIDConnectProviders"}


def resource_arn(action: str, params: dict, account_id: str) -> str:
    """The resource ``iam:<action>`` is authorised against: the provider's ARN (``*`` for the list)."""
    if action in OIDC_ACTIONS:
        return params.get("OpenIDConnectProviderArn", "*")
    if action == "CreateOpenIDConnectProvider":
        try:
            return provider_arn(account_id, checked_url(params.get("Url", ""))[1])
        except ValidationError:
            return "*"
    return "*"
