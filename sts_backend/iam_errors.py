"""IAM error responses, worded as AWS words them where that is known.

Sources (public threads quoting real AWS responses; moto 5.2.5's ``iam/models.py``
where it mirrors AWS). Entries marked UNVERIFIED follow AWS's patterns but no
quoted AWS response was found.

- "The user with name X cannot be found." — moto; many AWS CLI transcripts.
- "User with name X already exists." — ucopacme/aws-orgs#12.
- "The role with name X cannot be found." — jarpy/lambkin#3, aws/amazon-sagemaker-examples#2300.
- "Role with name X already exists." — garnaat/kappa#17, terraform-aws-modules/terraform-aws-ecs#363.
- "The group with name X cannot be found." — moto.
- "The Access Key with id X cannot be found." — moto; paws docs for DeleteAccessKey.
- "Cannot exceed quota for AccessKeysPerUser: 2" — sts-iam.md §7 (several issues).
- "Cannot exceed quota for RolesPerAccount: N" — terraform CI logs (1000, 1500).
- "Cannot exceed quota for PoliciesPerRole: 10" — aws/eks-hybrid#741, LBHackney-IT/Data-Platform#1882.
- "Maximum policy size of 2048 bytes exceeded for user X" — ministryofjustice/cloud-platform-environments#5302;
  "… 5120 bytes exceeded for group X" — HumanCellAtlas/data-store#1963;
  "… 10240 bytes exceeded for role X" — aws-amplify/amplify-backend#2615.
- "Cannot exceed quota for PolicySize: 5120" — docker/docs#4685.
- "Cannot exceed quota for ACLSizePerRole: 2048" (trust policy) — quoted by an IAM emulator's tests.
- "Cannot delete entity, must delete access keys first." — aws-controllers-k8s/community#2229;
  "… must delete MFA device first." — rebuy-de/aws-nuke#281;
  "… must remove users from group first." — mozilla-services/userplex#17;
  "… must delete policies first." — awslabs/aws-orbit-workbench#633;
  "… must detach all policies first." — moto.
- "Cannot delete a policy attached to entities." — serverless/components#312.
- "This policy has more than one version. …" and "Cannot delete the default version of a policy."
  — redradrat/aws-iam-operator#13.
- "Policy ARN does not exist or is not attachable." — getmoto/moto#6482 (quotes AWS).
- "The role policy with name X cannot be found." — aws/aws-cli#6139.
- "Authentication code for device is not valid." (InvalidAuthenticationCode, 403) — quoted
  verbatim in AWS users' MFA set-up notes and an AWS-compatible IAM's tests.
- "MFA Device is already in use." — the same AWS-compatible IAM's tests.
- "Must specify userName when calling with non-User credentials" — AWS CLI transcripts.
- Permissions boundaries: a policy used as a boundary cannot be deleted either, DeleteConflict
  "Cannot delete a policy attached to entities." — gruntwork-io/cloud-nuke#972 (real AWS, 2025).
  Deleting a user or role that has a boundary is not refused: the DeleteConflicts seen were
  about policies (rebuy-de/aws-nuke#819, closed as "caused by the inline policy not
  boundary"), and the DeleteUser/DeleteRole API pages do not list the boundary among what
  must be removed first. An unknown boundary policy is NoSuchEntity in AttachRolePolicy's words
  (UNVERIFIED for boundaries); an ARN that is not a managed policy's is InvalidInput (the code
  the model lists; the wording is moto's, where it is InvalidParameterValue: UNVERIFIED).
- "Provider with url https://X already exists." (EntityAlreadyExists, 409) — unfunco/terraform-aws-oidc-github#23,
  DrFaust92/terraform-kubernetes-ebs-csi-driver#107.
- "OpenIDConnect Provider not found for arn X", "Thumbprint list must contain fewer than 5 entries.",
  "Cannot exceed quota for ClientIdsPerOpenIdConnectProvider: 100", "Invalid Open ID Connect Provider URL"
  — moto 5.2.5 ``iam/models.py`` (UNVERIFIED against AWS).
"""

from __future__ import annotations

from sts_backend.errors import (
    DeleteConflict,
    EntityAlreadyExists,
    LimitExceeded,
    NoSuchEntity,
    SenderError,
    ValidationError,
)

_ENTITY_NAMES = {"user": "user", "group": "group", "role": "role"}


def no_such_entity(kind: str, name: str) -> NoSuchEntity:
    """``The user|group|role with name X cannot be found.``"""
    return NoSuchEntity(f"The {_ENTITY_NAMES[kind]} with name {name} cannot be found.")


def entity_exists(kind: str, name: str) -> EntityAlreadyExists:
    """``User|Group|Role with name X already exists.`` (Group: UNVERIFIED wording)."""
    return EntityAlreadyExists(f"{_ENTITY_NAMES[kind].capitalize()} with name {name} already exists.")


def no_such_access_key(access_key_id: str) -> NoSuchEntity:
    return NoSuchEntity(f"The Access Key with id {access_key_id} cannot be found.")


def quota_exceeded(quota: str, limit: int) -> LimitExceeded:
    """``Cannot exceed quota for QUOTA: N`` (AWS's form for every count quota)."""
    return LimitExceeded(f"Cannot exceed quota for {quota}: {limit}")


def inline_size_exceeded(kind: str, name: str, limit: int) -> LimitExceeded:
    return LimitExceeded(f"Maximum policy size of {limit} bytes exceeded for {kind} {name}")


def delete_conflict(what: str) -> DeleteConflict:
    """``Cannot delete entity, must WHAT first.``"""
    return DeleteConflict(f"Cannot delete entity, must {what} first.")


def no_such_inline_policy(kind: str, policy_name: str) -> NoSuchEntity:
    return NoSuchEntity(f"The {kind} policy with name {policy_name} cannot be found.")


def policy_not_attachable(arn: str) -> NoSuchEntity:
    return NoSuchEntity(f"Policy {arn} does not exist or is not attachable.")


def invalid_boundary(arn: str) -> SenderError:
    """InvalidInput for a ``PermissionsBoundary`` that is not a managed policy's ARN."""
    return SenderError("InvalidInput", f"Value ({arn}) for parameter PermissionsBoundary is invalid.")


def no_such_policy(arn: str) -> NoSuchEntity:
    return NoSuchEntity(f"Policy {arn} was not found.")


def no_such_policy_version(arn: str, version_id: str) -> NoSuchEntity:
    # UNVERIFIED wording.
    return NoSuchEntity(f"Policy {arn} version {version_id} does not exist or is not attachable.")


def policy_exists(name: str) -> EntityAlreadyExists:
    return EntityAlreadyExists(f"A policy called {name} already exists. Duplicate names are not allowed.")


def policy_attached() -> DeleteConflict:
    return DeleteConflict("Cannot delete a policy attached to entities.")


def policy_has_versions() -> DeleteConflict:
    return DeleteConflict("This policy has more than one version. Before you delete a policy, you must "
                          "delete the policy's versions. The default version is deleted with the policy.")


def default_version_delete() -> DeleteConflict:
    return DeleteConflict("Cannot delete the default version of a policy.")


def too_many_versions(limit: int) -> LimitExceeded:
    return LimitExceeded(f"A managed policy can have up to {limit} versions. Before you create a new "
                         "version, you must delete an existing version.")


def invalid_authentication_code() -> SenderError:
    return SenderError("InvalidAuthenticationCode", "Authentication code for device is not valid.", 403)


def mfa_in_use() -> EntityAlreadyExists:
    return EntityAlreadyExists("MFA Device is already in use.")


def mfa_still_assigned() -> DeleteConflict:
    # UNVERIFIED wording.
    return DeleteConflict("Cannot delete entity, must deactivate MFA device first.")


def no_such_mfa_device(serial: str) -> NoSuchEntity:
    # moto's wording; UNVERIFIED against AWS.
    return NoSuchEntity(f"VirtualMFADevice with serial number {serial} doesn't exist.")


def mfa_exists() -> EntityAlreadyExists:
    return EntityAlreadyExists("MFADevice entity at the same path and name already exists.")


def need_user_name() -> ValidationError:
    return ValidationError("Must specify userName when calling with non-User credentials")


def no_such_alias(alias: str) -> NoSuchEntity:
    # UNVERIFIED wording.
    return NoSuchEntity(f"The account alias {alias} cannot be found.")


def oidc_provider_exists(url: str) -> EntityAlreadyExists:
    return EntityAlreadyExists(f"Provider with url {url} already exists.")


def no_such_oidc_provider(arn: str) -> NoSuchEntity:
    return NoSuchEntity(f"OpenIDConnect Provider not found for arn {arn}")


def invalid_oidc_url() -> ValidationError:
    return ValidationError("Invalid Open ID Connect Provider URL")


def too_many_thumbprints() -> SenderError:
    return SenderError("InvalidInput", "Thumbprint list must contain fewer than 5 entries.")
