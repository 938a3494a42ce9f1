"""``sgalert keys status`` and ``sgalert keys sign --as EMAIL``: whether each group's public key
(and each person's) may be sealed to, and signing the keys a store had before group keys were
signed (see :mod:`sgalert.records.keytrust` and :mod:`sgalert.records.personkeys`)."""

from __future__ import annotations

from sgalert.cli.context import Context
from sgalert.cli.spec import AS_EMAIL, Command, Entry, Group
from sgalert.records.keytrust import GroupKeyStatus, KeyTrust, group_key_statuses, sign_group_keys
from sgalert.records.personkeys import untrusted_people_now
from sgalert.records.store import on_connection


def trust_line(status: GroupKeyStatus) -> str:
    """One group's key as ``keys status``, ``audit verify`` and ``doctor`` word it."""
    where = f"{status.group} key (version {status.version})"
    if status.trust is KeyTrust.SIGNED:
        return f"{where}: signed by a current member"
    if status.trust is KeyTrust.LEGACY:
        return (
            f"{where}: legacy, unsigned (from before keys were signed); a member of {status.group}"
            " should run `sgalert keys sign --as EMAIL`"
        )
    return f"{where}: NOT TRUSTED ({status.reason}); no new case is sealed to it"


async def keys_status(ctx: Context) -> int:
    async with await ctx.service() as service, service.store.read() as db:
        statuses = await group_key_statuses(db)
        untrusted = await on_connection(db, untrusted_people_now)
    for status in statuses:
        print(trust_line(status))
    if not statuses:
        print("no group has a key yet: add people with `sgalert user add`")
    for _, email in untrusted:
        print(
            f"{email}'s public key: NOT TRUSTED (not the one the audit log recorded); nothing is"
            " sealed to it"
        )
    if statuses and not untrusted:
        print("people's public keys: each is the one the audit log recorded")
    return 1 if untrusted or any(s.trust is KeyTrust.UNTRUSTED for s in statuses) else 0


async def keys_sign(ctx: Context) -> int:
    async with await ctx.service() as service:
        signer = await ctx.unlocked(service)
        signed, remaining = await sign_group_keys(service.store, signer)
    print(f"signed the keys of {', '.join(signed) or 'no group (nothing of yours needed it)'}")
    if remaining:
        print(f"still not signed: {', '.join(remaining)}; a member of each must run this too")
    return 0


COMMANDS: tuple[Entry, ...] = (
    Group(
        "keys",
        "group public keys and their signatures",
        (
            Command(
                "status",
                "show whether each group's public key is signed, and each person's recorded",
                keys_status,
            ),
            Command(
                "sign",
                "sign the unsigned keys of your groups (stores from before keys were signed)",
                keys_sign,
                (AS_EMAIL,),
            ),
        ),
    ),
)
