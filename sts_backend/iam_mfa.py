"""IAM operations on virtual MFA devices.

CreateVirtualMFADevice returns the seed and a QR code once (as bytes; the XML
renderer base64-encodes blobs, so ``Base32StringSeed`` arrives as base64 of the
base32 text, as from AWS). Enable and resync take two consecutive codes
(``sts_backend.mfa`` documents the windows); a wrong pair is
InvalidAuthenticationCode (403) "Authentication code for device is not valid.".
Codes and seeds never appear in a message.
"""

from __future__ import annotations

from sts_backend import iam_errors as err
from sts_backend import mfa
from sts_backend.iam_render import Ctx, Handler, mfa_out, page, target_user, user_out


def create_virtual_mfa_device(p: dict, ctx: Ctx) -> dict:
    """CreateVirtualMFADevice: a new unassigned device, its seed and QR code.

    The QR code's account part is the account id (no user is known yet).
    """
    name, seed = p["VirtualMFADeviceName"], mfa.new_seed()
    device = ctx.store.create_virtual_mfa_device(name, seed, p.get("Path") or "/")
    png = mfa.qr_png(mfa.otpauth_uri(name, ctx.store.account_id(), seed))
    return {"VirtualMFADevice": {"SerialNumber": device.serial_number,
                                 "Base32StringSeed": seed.encode("ascii"), "QRCodePNG": png}}


def enable_mfa_device(p: dict, ctx: Ctx) -> None:
    """EnableMFADevice: assign the device after two consecutive valid codes."""
    ctx.store.get_user(p["UserName"])
    device = ctx.store.get_mfa_device(p["SerialNumber"])
    if device.user_name is not None:
        raise err.mfa_in_use()
    step = mfa.verify_enable_codes(device.seed_base32, p["AuthenticationCode1"], p["AuthenticationCode2"],
                                   ctx.clock.now(), device.last_timecode)
    if step is None:
        raise err.invalid_authentication_code()
    ctx.store.enable_mfa_device(device.serial_number, p["UserName"], step)


def resync_mfa_device(p: dict, ctx: Ctx) -> None:
    """ResyncMFADevice: two consecutive codes within ±10 steps; moves last_timecode on."""
    ctx.store.get_user(p["UserName"])
    device = ctx.store.get_mfa_device(p["SerialNumber"])
    if device.user_name is None or device.user_name.lower() != p["UserName"].lower():
        raise err.no_such_mfa_device(p["SerialNumber"])
    step = mfa.verify_resync_codes(device.seed_base32, p["AuthenticationCode1"], p["AuthenticationCode2"],
                                   ctx.clock.now(), device.last_timecode)
    if step is None or not ctx.store.resync_mfa_device(device.serial_number, p["UserName"], step):
        raise err.invalid_authentication_code()


def deactivate_mfa_device(p: dict, ctx: Ctx) -> None:
    """DeactivateMFADevice: unassign (UserName optional; the device knows its user)."""
    ctx.store.deactivate_mfa_device(p["SerialNumber"], p.get("UserName"))


def list_mfa_devices(p: dict, ctx: Ctx) -> dict:
    """ListMFADevices of ``UserName`` or the calling user (root: none)."""
    if not p.get("UserName") and ctx.caller.kind == "root":
        return page([], p, "MFADevices")
    return page(ctx.store.mfa_devices_of(target_user(p, ctx)), p, "MFADevices", mfa_out)


def list_virtual_mfa_devices(p: dict, ctx: Ctx) -> dict:
    """ListVirtualMFADevices filtered by AssignmentStatus (default Any)."""
    devices = ctx.store.virtual_mfa_devices(p.get("AssignmentStatus") or "Any")

    def render(device) -> dict:
        out: dict = {"SerialNumber": device.serial_number}
        if device.user_name is not None:
            out["User"] = user_out(ctx.store.get_user(device.user_name))
            out["EnableDate"] = device.enable_date
        return out
    return page(devices, p, "VirtualMFADevices", render)


def delete_virtual_mfa_device(p: dict, ctx: Ctx) -> None:
    ctx.store.delete_virtual_mfa_device(p["SerialNumber"])


HANDLERS: dict[str, Handler] = {
    "CreateVirtualMFADevice": create_virtual_mfa_device,
    "EnableMFADevice": enable_mfa_device,
    "ResyncMFADevice": resync_mfa_device,
    "DeactivateMFADevice": deactivate_mfa_device,
    "ListMFADevices": list_mfa_devices,
    "ListVirtualMFADevices": list_virtual_mfa_devices,
    "DeleteVirtualMFADevice": delete_virtual_mfa_device,
}
