"""The ``sgalert`` command.

Every error the core raises on purpose prints as one line on stderr and exits non-zero (2 when
the person is not entitled); ``--debug`` adds the traceback. Output shown to a terminal passes
through :func:`sgalert.text.printable`, so hostile text in a case cannot drive the terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import inspect
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

from sgalert import __version__
from sgalert.clock import iso, parse_iso
from sgalert.config import load_config, render_template
from sgalert.desk.service import CaseService, CaseView
from sgalert.errors import InvalidInput, SgalertError, StoreError, WorkspaceError
from sgalert.model import CaseState, CaseSummary, Role, Source
from sgalert.records import audit
from sgalert.records.keyring import Identity, add_person, approve_member, remove_person
from sgalert.records.store import Store
from sgalert.text import printable
from sgalert.workspace import Workspace, resolve_workspace

ENV_PASSPHRASE = "SGALERT_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)


def _read_passphrase(prompt: str, *, confirm: bool = False) -> str:
    """The passphrase from SGALERT_PASSPHRASE, else from the terminal (never from a pipe).

    Passphrases are UTF-8 text: bytes that are not (a Latin-1 terminal, a mangled variable) are
    refused in one line that never echoes them.
    """
    from_env = os.environ.get(ENV_PASSPHRASE)
    if from_env is not None:
        try:
            from_env.encode("utf-8")  # undecodable bytes arrive as lone surrogates
        except UnicodeEncodeError:
            raise InvalidInput(
                f"the passphrase in {ENV_PASSPHRASE} is not UTF-8 text; set it again as UTF-8"
            ) from None
        return from_env
    if not sys.stdin.isatty():
        raise InvalidInput(f"no terminal to ask for the passphrase; set {ENV_PASSPHRASE}")
    try:
        first = getpass.getpass(prompt)
        if confirm and getpass.getpass("Repeat the passphrase: ") != first:
            raise InvalidInput("the two passphrases differ; nothing was changed")
    except UnicodeDecodeError:
        raise InvalidInput(
            "the passphrase typed is not UTF-8 text; set the terminal to UTF-8 and try again"
        ) from None
    return first


TIME_FORMAT = "2026-11-23T08:30 (the school's local time) or 2026-11-23T08:30+00:00"


def parse_school_time(text: str, zone: tzinfo, option: str) -> datetime:
    """A time given on the command line, in UTC. One without an offset is the school's local
    time whatever the host's zone: a server often runs in UTC, a laptop abroad in another."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"{option} {text!r} is not an ISO 8601 date and time; write it as {TIME_FORMAT}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def _when(moment: datetime | None) -> str | None:
    return iso(moment) if moment else None


def _summary_json(summary: CaseSummary) -> dict[str, Any]:
    return {
        "id": summary.id,
        "ref": summary.ref,
        "source": summary.source.value,
        "state": summary.state.value,
        "received_at": iso(summary.received_at),
        "updated_at": iso(summary.updated_at),
        "flags": list(summary.flags),
        "assignee": summary.assignee,
        "acknowledged_at": _when(summary.acknowledged_at),
        "acknowledged_by": summary.acknowledged_by,
        "closed_at": _when(summary.closed_at),
        "next_deadline": _when(summary.next_deadline),
    }


def _view_json(view: CaseView) -> dict[str, Any]:
    data = _summary_json(view.summary)
    data.update(
        {
            "fields": view.facts,
            "subject": view.subject,
            "sender": view.sender,
            "notes": view.notes,
            "body_text": view.body_text,
            "attachments": [
                {"filename": a.filename, "content_type": a.content_type, "size": a.size}
                for a in view.attachments
            ],
            "chronology": [
                {
                    "id": entry.id,
                    "at": iso(entry.at),
                    "author": entry.author.email,
                    "kind": entry.kind.value,
                    "text": entry.text,
                    "reason": entry.reason,
                    "corrects": entry.corrects,
                    "signature_valid": entry.signature_valid,
                }
                for entry in view.chronology
            ],
            "clocks": [
                {"kind": c.kind, "due_at": iso(c.due_at), "met_at": _when(c.met_at)}
                for c in view.clocks
            ],
        }
    )
    if view.reporter is not None:
        data["reporter"] = view.reporter
    return data


def _print_view(view: CaseView) -> None:
    s = view.summary
    lines = [
        f"{s.ref}  {s.source.value}  {s.state.value}  received {iso(s.received_at)}",
        f"flags: {', '.join(s.flags) or '-'}   assignee: {s.assignee or '-'}",
    ]
    if view.subject:
        lines.append(f"subject: {view.subject}")
    if view.sender:
        lines.append(f"from: {view.sender.get('display_name', '')} <{view.sender.get('address')}>")
    for heading, key in (
        ("Why it needs triage", "triage"),
        ("Sender checks", "sender"),
        ("Problems reading the message", "problems"),
    ):
        if view.notes.get(key):
            lines += ["", f"{heading}:"] + [f"  - {item}" for item in view.notes[key]]
    lines += ["", "Facts:"]
    lines += [f"  {key}: {value}" for key, value in view.facts.items()] or ["  (none extracted)"]
    if view.reporter is not None:
        lines += ["", "Reporter (confidential):"]
        lines += [f"  {key}: {value}" for key, value in view.reporter.items()]
    lines += ["", "Message:", view.body_text or "(empty)", ""]
    if view.attachments:
        lines.append("Attachments:")
        lines += [
            f"  {number}. {a.filename} ({a.content_type}, {a.size} bytes)"
            for number, a in enumerate(view.attachments, start=1)
        ]
        lines.append("  (save one with `sgalert case attachment REF NUMBER --out PATH`)")
        lines.append("")
    lines.append("Chronology:")
    for entry in view.chronology:
        mark = "signed" if entry.signature_valid else "SIGNATURE INVALID"
        lines.append(f"  {iso(entry.at)}  {entry.author.email}  {entry.kind.value}  [{mark}]")
        lines.append(f"    {entry.text}")
        if entry.reason:
            lines.append(f"    reason: {entry.reason}")
    if not view.chronology:
        lines.append("  (no entries)")
    print(printable("\n".join(lines)))


class Runner:
    """Holds the parsed arguments and the workspace for one command."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workspace: Workspace = resolve_workspace(args.workspace)

    async def service(self) -> CaseService:
        if not self.workspace.config_path.is_file():
            raise WorkspaceError(
                f"no workspace at {self.workspace.root}; run `sgalert init` "
                "(or pass --workspace / set SGALERT_WORKSPACE)"
            )
        return await CaseService.open(self.workspace)

    def school_time(self, text: str, option: str) -> datetime:
        """``--at`` and the like: see :func:`parse_school_time`; the zone is the config's."""
        return parse_school_time(text, load_config(self.workspace.config_path).timezone, option)

    async def unlocked(self, service: CaseService) -> Identity:
        passphrase = _read_passphrase(f"Passphrase for {self.args.as_email}: ")
        return await service.unlock(self.args.as_email, passphrase)

    # ----- commands -----------------------------------------------------------------------

    async def init(self) -> int:
        ws = self.workspace
        if ws.config_path.exists() or ws.store_path.exists():
            raise WorkspaceError(f"{ws.root} already holds an sgalert workspace; nothing changed")
        ws.config_path.parent.mkdir(parents=True, exist_ok=True)
        ws.store_path.parent.mkdir(parents=True, exist_ok=True)
        ws.config_path.write_text(render_template(self.args.school_name), encoding="utf-8")
        load_config(ws.config_path)  # the template must always be valid
        for sub in ("cur", "new", "tmp"):
            (ws.root / "inbox" / "encompass" / sub).mkdir(parents=True, exist_ok=True)
        store = await Store.open(ws.store_path, create=True)
        async with store, store.write() as db:
            await audit.append(db, [audit.AuditEvent(audit.SYSTEM, "store-created")])
        os.chmod(ws.store_path, 0o600)
        print(f"Created workspace: config {ws.config_path}, store {ws.store_path}")
        print("Next: add people with `sgalert user add --name NAME --email EMAIL --role dsl`")
        return 0

    async def config_check(self) -> int:
        from sgalert.cli import config_check
        from sgalert.clock import utcnow

        config = load_config(self.workspace.config_path)
        async with await Store.open(self.workspace.store_path) as store:
            found = await config_check.check_workspace(config, self.workspace.root, store, utcnow())
        for line in [p.line(config.path) for p in found]:
            print(printable(line, keep_newlines=False))
        print(config_check.summary(found, config.path, len(config.sources)))
        return 1 if any(p.severity is config_check.Severity.ERROR for p in found) else 0

    async def user_add(self) -> int:
        role = Role(self.args.role)
        passphrase = _read_passphrase(f"New passphrase for {self.args.email}: ", confirm=True)
        async with await self.service() as service:
            person, groups = await add_person(
                service.store,
                name=self.args.name,
                email=self.args.email,
                role=role,
                passphrase=passphrase,
            )
        print(f"Added {printable(person.name)} <{person.email}> as {role.value}")
        pending = [group for group, state in groups.items() if state == "pending"]
        if pending:
            print(
                f"Access to {', '.join(pending)} is pending: a current member must run "
                f"`sgalert user approve {person.email} --as THEIR_EMAIL`"
            )
        return 0

    async def user_list(self) -> int:
        async with await self.service() as service:
            people = await service.people()
        if self.args.json:
            print(
                json.dumps(
                    [
                        {
                            "id": p.id,
                            "name": p.name,
                            "email": p.email,
                            "role": p.role.value,
                            "groups": groups,
                            "removed": p.removed,
                        }
                        for p, groups in people
                    ],
                    indent=2,
                )
            )
            return 0
        if not people:
            print("No people yet: add one with `sgalert user add`.")
        for p, groups in people:
            access = ", ".join(
                f"{g}" + ("" if s == "active" else " (pending)") for g, s in sorted(groups.items())
            )
            gone = "  [removed]" if p.removed else ""
            print(printable(f"{p.email:32}  {p.role.value:18}  {p.name}  [{access}]{gone}"))
        return 0

    async def user_approve(self) -> int:
        async with await self.service() as service:
            approver = await self.unlocked(service)
            groups = await approve_member(service.store, approver, self.args.email)
        print(f"{self.args.email} now holds the keys of {', '.join(groups)}")
        return 0

    async def user_remove(self) -> int:
        async with await self.service() as service:
            remover = await self.unlocked(service)
            rotated = await remove_person(service.store, remover, self.args.email)
        print(f"Removed {self.args.email}; rotated keys of {', '.join(rotated) or 'no group'}")
        return 0

    async def cases_list(self) -> int:
        state = CaseState(self.args.state) if self.args.state else None
        source = Source(self.args.source) if self.args.source else None
        async with await self.service() as service:
            cases = await service.list_cases(state=state, source=source)
        if self.args.json:
            print(json.dumps([_summary_json(c) for c in cases], indent=2))
            return 0
        if not cases:
            print("No cases.")
        for c in cases:
            flags = ",".join(c.flags) or "-"
            print(
                f"{c.ref:14} {c.source.value:10} {c.state.value:13} {iso(c.received_at)}  "
                f"{c.assignee or '-':24} {flags}"
            )
        return 0

    async def case_show(self) -> int:
        async with await self.service() as service:
            identity = await self.unlocked(service)
            view = await service.open_case(identity, self.args.ref)
        if self.args.json:
            print(json.dumps(_view_json(view), indent=2, ensure_ascii=False))
        else:
            _print_view(view)
        return 0

    async def case_attachment(self) -> int:
        """Write a decrypted copy of one attachment: only where asked, mode 0600, audited."""
        from pathlib import Path

        from sgalert.desk.export import proposed_name

        number = self.args.number
        if number < 1:
            raise InvalidInput("attachments are numbered from 1, as `sgalert case show` lists them")
        out = Path(self.args.out).expanduser()
        async with await self.service() as service:
            identity = await self.unlocked(service)
            if os.path.isdir(out):  # False, not an OSError naming the path, for a bad one
                view = await service.open_case(identity, self.args.ref)
                if number > len(view.attachments):
                    raise InvalidInput(f"case {view.summary.ref} has no attachment {number}")
                name = view.attachments[number - 1].filename
                out = out / proposed_name(view.summary.ref, number - 1, name)
            saved = await service.save_attachment(
                identity, self.args.ref, number - 1, out, overwrite=self.args.overwrite
            )
        print(
            printable(
                f"Wrote a decrypted copy ({saved.size} bytes) to {saved.path}", keep_newlines=False
            )
        )
        print(
            f"WARNING: this copy of confidential safeguarding material is outside the encrypted"
            f" store. {identity.email} is responsible for it: keep it on an encrypted device,"
            " share it only with those who need to know, and delete it when done. The export is"
            " recorded in the audit log.",
            file=sys.stderr,
        )
        return 0

    async def case_new(self) -> int:
        facts: dict[str, str] = {}
        for item in self.args.field or []:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise InvalidInput(f"--field {item!r}: write it as NAME=VALUE")
            facts[key.strip()] = value
        reporter = None
        if self.args.reporter_name or self.args.reporter_contact:
            reporter = {
                "name": self.args.reporter_name or "",
                "contact": self.args.reporter_contact or "",
            }
        received = (
            self.school_time(self.args.received_at, "--received-at")
            if self.args.received_at
            else None
        )
        async with await self.service() as service:
            identity = await self.unlocked(service)
            stored = await service.record_manual_case(
                identity,
                Source(self.args.source),
                facts=facts,
                body_text=self.args.text or "",
                caller=self.args.caller,
                received_at=received,
                reporter=reporter,
            )
        print(f"Recorded {stored.ref}")
        return 0

    async def ack(self) -> int:
        async with await self.service() as service:
            identity = await self.unlocked(service)
            summary = await service.acknowledge(identity, self.args.ref)
        print(f"{summary.ref} acknowledged by {identity.email}")
        return 0

    async def note(self) -> int:
        async with await self.service() as service:
            identity = await self.unlocked(service)
            entry = await service.add_note(
                identity, self.args.ref, self.args.text, corrects=self.args.corrects
            )
        print(f"Note {entry} added to {self.args.ref}")
        return 0

    async def decide(self) -> int:
        async with await self.service() as service:
            identity = await self.unlocked(service)
            entry = await service.record_decision(
                identity, self.args.ref, self.args.decision, self.args.reason
            )
        print(f"Decision {entry} recorded on {self.args.ref}")
        return 0

    async def assign(self) -> int:
        async with await self.service() as service:
            identity = await self.unlocked(service)
            summary = await service.assign(identity, self.args.ref, self.args.to)
        print(f"{summary.ref} assigned to {summary.assignee}")
        return 0

    async def grant(self) -> int:
        async with await self.service() as service:
            identity = await self.unlocked(service)
            await service.grant(identity, self.args.ref, self.args.to)
        print(f"{self.args.to} may now read {self.args.ref}")
        return 0

    async def close(self) -> int:
        async with await self.service() as service:
            identity = await self.unlocked(service)
            summary = await service.close_case(
                identity, self.args.ref, self.args.outcome, self.args.reason
            )
        print(f"{summary.ref} closed")
        return 0

    async def ingest(self) -> int:
        from pathlib import Path

        from sgalert.intake.ingest import Ingestor, SourceRules
        from sgalert.ports import Inbound

        path = Path(self.args.file)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"{path}: cannot be read ({exc.strerror})") from None
        source = Source(self.args.source)
        async with await self.service() as service:
            assert service.config is not None
            ingestor = Ingestor(service, service.config)
            configured = [s for s in service.config.sources if s.type is source]
            rules = (
                SourceRules.from_config(configured[0])
                if len(configured) == 1
                else SourceRules(name="file", type=source)
            )
            (outcome,) = await ingestor.ingest([Inbound(raw=raw)], rules)
        if outcome.held:
            raise StoreError(
                f"{path.name} could be neither read nor quarantined, so nothing was stored;"
                " record it by hand with `sgalert case new`"
            )
        if self.args.json:
            print(
                json.dumps(
                    {
                        "id": outcome.case_id,
                        "ref": outcome.ref,
                        "source": outcome.source.value,
                        "flags": list(outcome.flags),
                        "created": outcome.created,
                        "duplicate_of": outcome.duplicate_of,
                    },
                    indent=2,
                )
            )
            return 0
        flags = ", ".join(outcome.flags) or "none"
        if outcome.created:
            print(f"{outcome.ref} created from {path.name} (flags: {flags})")
            if outcome.duplicate_of:
                print(f"  same Message-ID as {outcome.duplicate_of}: flagged possible-duplicate")
        else:
            print(f"{path.name} is already case {outcome.ref}; nothing new created")
        return 0

    async def serve(self) -> int:
        import signal

        from sgalert import logs
        from sgalert.cli import config_check
        from sgalert.engine.serve import Engine

        logs.configure()
        log = logging.getLogger("sgalert.serve")
        async with await self.service() as service:
            assert service.config is not None
            # Options an adapter refuses are one line now, not a traceback from inside serving.
            config_check.refuse_to_serve(
                await config_check.adapter_problems(service.config, self.workspace.root),
                service.config.path,
            )
            engine = Engine(service, self.workspace.root)
            main = asyncio.current_task()
            assert main is not None
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, main.cancel)
            log.info(
                "serving %d source(s) and %d channel(s) from %s",
                len(service.config.sources),
                len(engine.notifiers),
                self.workspace.root,
            )
            try:
                await engine.run()
            except asyncio.CancelledError:
                log.info("stopping: signal received")
        return 0

    async def rota_who(self) -> int:
        from sgalert.clock import utcnow
        from sgalert.routing.duty import load_rota

        at = self.school_time(self.args.at, "--at") if self.args.at else utcnow()
        async with await self.service() as service:
            view = await load_rota(service, since=at)
        duty = view.who(at)
        person = view.people.get(duty.who or "")
        if self.args.json:
            print(
                json.dumps(
                    {
                        "at": iso(at),
                        "who": duty.who,
                        "name": person.name if person else None,
                        "role": person.role.value if person else None,
                        "rule": duty.rule,
                        "fallback": duty.fallback,
                    },
                    indent=2,
                )
            )
            return 0
        local = view.rota.calendar.local(at)
        name = f"{printable(person.name)} <{duty.who}>" if person else "nobody"
        print(f"{local:%a %d %b %Y %H:%M %Z}: {name} ({duty.rule})")
        return 0

    async def rota_check(self) -> int:
        from sgalert.clock import utcnow
        from sgalert.routing.duty import load_rota

        if self.args.days < 1:
            raise InvalidInput(f"--days {self.args.days}: check at least 1 day")
        now = utcnow()
        async with await self.service() as service:
            view = await load_rota(service, since=now)
        gaps = view.gaps(now, self.args.days)
        unknown = view.unknown_people()
        zone = view.rota.calendar
        if self.args.json:
            print(
                json.dumps(
                    {
                        "gaps": [
                            {"from": iso(g.start), "to": iso(g.end), "fallback": g.covered_by}
                            for g in gaps
                        ],
                        "unknown_people": unknown,
                    },
                    indent=2,
                )
            )
        else:
            for email in unknown:
                print(f"warning: the rota names {email}, who is not a current person")
            for gap in gaps:
                print(
                    f"warning: gap {zone.local(gap.start):%a %d %b %H:%M} to "
                    f"{zone.local(gap.end):%a %d %b %H:%M}: no shift or cover; "
                    f"fallback {gap.covered_by or 'NOBODY'}"
                )
            if not gaps and not unknown:
                print(f"rota covers every minute of the next {self.args.days} days")
        return 1 if gaps or unknown else 0

    async def rota_cover(self) -> int:
        from sgalert.routing.duty import add_cover

        starts = self.school_time(self.args.start, "--from")
        ends = self.school_time(self.args.end, "--to")
        async with await self.service() as service:
            identity = await self.unlocked(service)
            cover = await add_cover(service, identity, self.args.who, starts, ends)
        print(f"cover {cover.id}: {cover.who} from {iso(cover.starts_at)} to {iso(cover.ends_at)}")
        return 0

    def tui(self) -> int:
        """The terminal UI, found through an entry point so the core never imports it.

        Not a coroutine: Textual runs its own event loop in the main thread.
        """
        from importlib.metadata import entry_points

        if not self.workspace.config_path.is_file():
            raise WorkspaceError(f"no workspace at {self.workspace.root}; run `sgalert init`")
        found = [e for e in entry_points(group="sgalert.apps") if e.name == "tui"]
        if not found:
            raise WorkspaceError("the terminal UI is not installed; reinstall sgalert")
        run: Callable[[Workspace, str | None], int] = found[0].load()
        return run(self.workspace, self.args.as_email)

    async def refer(self) -> int:
        async with await self.service() as service:
            identity = await self.unlocked(service)
            await service.refer(identity, self.args.ref, self.args.to, self.args.text or "")
        print(f"{self.args.ref} referred to {self.args.to}")
        return 0

    async def clock_start(self) -> int:
        async with await self.service() as service:
            identity = await self.unlocked(service)
            due = await service.start_clock(identity, self.args.ref, self.args.kind)
        print(f"{self.args.ref}: {self.args.kind} due {iso(due)}")
        return 0

    async def clock_met(self) -> int:
        async with await self.service() as service:
            identity = await self.unlocked(service)
            await service.meet_clock(identity, self.args.ref, self.args.kind)
        print(f"{self.args.ref}: {self.args.kind} met")
        return 0

    async def status(self) -> int:
        """The engine, open system alerts, failing channels and unacknowledged cases: one glance.

        The engine is judged against its lease (as the desk's banner is); a channel is failing
        as :func:`sgalert.desk.views.failing_channels` says. Either, or an open alert, exits 1.
        """
        from sgalert.clock import utcnow
        from sgalert.intake.ingest import held_messages

        async with await self.service() as service:
            lease = await service.engine_lease()
            alerts = await service.open_alerts()
            channels = await service.failing_channels()
            waiting = await service.list_cases(state=CaseState.NEW)
            held = await held_messages(service.store)
        now = utcnow()
        report: dict[str, Any] = {
            "engine": None,
            "alerts": alerts,
            "failing_channels": [
                {"channel": c.channel, "undelivered": c.undelivered, "since": iso(c.since)}
                for c in channels
            ],
            "unacknowledged": [c.ref for c in waiting],
            "held_messages": [
                {"key": h.key, "source": h.source_name, "error": h.error, "held_at": iso(h.held_at)}
                for h in held
            ],
        }
        if lease is not None:
            report["engine"] = {
                "holder": lease.holder,
                "heartbeat_at": iso(lease.heartbeat_at),
                "lease_expires_at": iso(lease.expires_at),
                "stale": lease.lapsed(now),
            }
        if self.args.json:
            print(json.dumps(report, indent=2))
        else:
            engine = report["engine"]
            if engine is None:
                print("engine: NOT RUNNING (start `sgalert serve`)")
            else:
                age = int((now - parse_iso(engine["heartbeat_at"])).total_seconds())
                state = "STALE" if engine["stale"] else "running"
                print(f"engine: {state} ({engine['holder']}, heartbeat {age}s ago)")
            for alert in alerts:
                if alert["kind"] == "rota-gap":  # raised now; its first gap is usually ahead
                    first = alert.get("first_gap_from")
                    gap = f"; first gap {first} to {alert['first_gap_to']}" if first else ""
                    print(f"ALERT rota-gap: raised {alert['raised_at']}{gap}")
                    continue
                since = alert.get("since") or alert["raised_at"]
                print(f"ALERT {alert['kind']}: {alert['source']} since {since}")
            for message in held:
                print(
                    f"HELD unread in {message.source_name} since {iso(message.held_at)}"
                    f" ({message.error}): {message.key}"
                )
            if held:
                print(
                    "  (deal with each in the mailbox, then `sgalert held release KEY --as EMAIL`)"
                )
            print(
                f"unacknowledged cases: {len(waiting)}"
                + (f" ({', '.join(c.ref for c in waiting[:10])})" if waiting else "")
            )
            for channel in channels:
                print(
                    f"CHANNEL FAILING {channel.channel}: {channel.undelivered} page(s) not"
                    f" delivered, the oldest queued {iso(channel.since)}"
                )
        healthy = lease is not None and not lease.lapsed(now) and not alerts and not channels
        return 0 if healthy and not held else 1

    async def held_release(self) -> int:
        """Forget a held message once someone has dealt with it, so its mailbox may offer it
        again (it is then tried afresh); the source's alert is cleared when none is left."""
        from sgalert.intake.ingest import release_held

        async with await self.service() as service:
            identity = await self.unlocked(service)
            released = await release_held(service.store, self.args.key, identity.email)
        print(f"released {released.key} ({released.source_name}); it will be tried again")
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sgalert", description="Safeguarding alert router for schools."
    )
    parser.add_argument("--version", action="version", version=f"sgalert {__version__}")
    parser.add_argument(
        "--workspace",
        metavar="DIR",
        help="workspace directory (default: $SGALERT_WORKSPACE, "
        "else the platform's config and data directories)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        group: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        handler: Callable[[Runner], Coroutine[Any, Any, int] | int],
        help_text: str,
    ) -> argparse.ArgumentParser:
        sub = group.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    def as_email(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--as",
            dest="as_email",
            required=True,
            metavar="EMAIL",
            help="who you are; the passphrase comes from $SGALERT_PASSPHRASE or the terminal",
        )

    init = command(commands, "init", Runner.init, "create a workspace: config and store")
    init.add_argument("--school-name", default="Example School", help="the school's name")

    config = commands.add_parser("config", help="check the configuration")
    config_cmds = config.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    command(config_cmds, "check", Runner.config_check, "validate sgalert.toml")

    user = commands.add_parser("user", help="people and their keys")
    user_cmds = user.add_subparsers(dest="user_command", required=True, metavar="COMMAND")
    add = command(user_cmds, "add", Runner.user_add, "add a person with new keys")
    add.add_argument("--name", required=True)
    add.add_argument("--email", required=True)
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    listing = command(user_cmds, "list", Runner.user_list, "list people and their access")
    listing.add_argument("--json", action="store_true")
    approve = command(
        user_cmds,
        "approve",
        Runner.user_approve,
        "seal your group keys to a person whose access is pending",
    )
    approve.add_argument("email")
    as_email(approve)
    remove = command(
        user_cmds, "remove", Runner.user_remove, "remove a person and rotate their groups' keys"
    )
    remove.add_argument("email")
    as_email(remove)

    cases = commands.add_parser("cases", help="list cases (metadata only)")
    cases_cmds = cases.add_subparsers(dest="cases_command", required=True, metavar="COMMAND")
    cases_list = command(cases_cmds, "list", Runner.cases_list, "list cases, newest first")
    cases_list.add_argument("--json", action="store_true")
    cases_list.add_argument("--state", choices=[s.value for s in CaseState])
    cases_list.add_argument("--source", choices=[s.value for s in Source])

    case = commands.add_parser("case", help="one case")
    case_cmds = case.add_subparsers(dest="case_command", required=True, metavar="COMMAND")
    show = command(case_cmds, "show", Runner.case_show, "decrypt and show a case")
    show.add_argument("ref", help="case id or reference such as SG-2026-0042")
    show.add_argument("--json", action="store_true")
    as_email(show)
    attachment = command(
        case_cmds,
        "attachment",
        Runner.case_attachment,
        "write a decrypted copy of one attachment (mode 0600; the export is audited)",
    )
    attachment.add_argument("ref", help="case id or reference")
    attachment.add_argument(
        "number", type=int, help="the attachment's number, from 1, as `case show` lists them"
    )
    attachment.add_argument(
        "--out",
        required=True,
        metavar="PATH",
        help="the file to write, or a folder to write it into under a safe name",
    )
    attachment.add_argument(
        "--overwrite", action="store_true", help="replace a file already at PATH"
    )
    as_email(attachment)
    new = command(case_cmds, "new", Runner.case_new, "record a notification received by phone")
    new.add_argument("--source", required=True, choices=[s.value for s in Source])
    new.add_argument("--caller", required=True, help="who phoned, e.g. 'PC 1234, Example Police'")
    new.add_argument(
        "--field",
        action="append",
        metavar="NAME=VALUE",
        help="an extracted fact, e.g. child_name=Ada Example (repeatable)",
    )
    new.add_argument("--text", help="what was said, verbatim where possible")
    new.add_argument(
        "--received-at",
        help="when the call came, ISO 8601, the school's local time unless it has an offset"
        " (default: now)",
    )
    new.add_argument("--reporter-name", help="whistleblowing: the reporter (sealed apart)")
    new.add_argument("--reporter-contact", help="whistleblowing: their preferred contact")
    as_email(new)

    ack = command(commands, "ack", Runner.ack, "acknowledge a case")
    ack.add_argument("ref")
    as_email(ack)
    note = command(commands, "note", Runner.note, "add a signed note to a case's record")
    note.add_argument("ref")
    note.add_argument("--text", required=True)
    note.add_argument("--corrects", metavar="ENTRY", help="the id of the entry this corrects")
    as_email(note)
    decide = command(commands, "decide", Runner.decide, "record a decision and its reason")
    decide.add_argument("ref")
    decide.add_argument("--decision", required=True)
    decide.add_argument("--reason", required=True)
    as_email(decide)
    assign = command(commands, "assign", Runner.assign, "assign a case to an entitled person")
    assign.add_argument("ref")
    assign.add_argument("--to", required=True, metavar="EMAIL")
    as_email(assign)
    grant = command(commands, "grant", Runner.grant, "let one more person read a case")
    grant.add_argument("ref")
    grant.add_argument("--to", required=True, metavar="EMAIL")
    as_email(grant)
    close = command(commands, "close", Runner.close, "close a case with its outcome")
    close.add_argument("ref")
    close.add_argument("--outcome", required=True)
    close.add_argument("--reason", required=True)
    as_email(close)

    tui = command(commands, "tui", Runner.tui, "the on-call DSL's desk in the terminal")
    tui.add_argument("--as", dest="as_email", metavar="EMAIL", help="who you are (asked if not)")

    from sgalert.desk.service import REFERRALS
    from sgalert.routing.escalation import ACTION_CLOCKS

    refer = command(
        commands,
        "refer",
        Runner.refer,
        "record a referral (a LADO referral starts its 1-working-day clock)",
    )
    refer.add_argument("ref")
    refer.add_argument("--to", required=True, choices=list(REFERRALS))
    refer.add_argument("--text", help="what was referred and how (recorded, signed)")
    as_email(refer)
    clock = commands.add_parser("clock", help="statutory clocks")
    clock_cmds = clock.add_subparsers(dest="clock_command", required=True, metavar="COMMAND")
    for name, handler, text in (
        ("start", Runner.clock_start, "start a statutory clock"),
        ("met", Runner.clock_met, "record a deadline as met"),
    ):
        sub = command(clock_cmds, name, handler, text)
        sub.add_argument("ref")
        sub.add_argument("--kind", required=True, choices=list(ACTION_CLOCKS))
        as_email(sub)

    status = command(
        commands,
        "status",
        Runner.status,
        "engine, open alerts, failing channels, unacknowledged cases (exit 1 if unhealthy)",
    )
    status.add_argument("--json", action="store_true")
    command(
        commands,
        "serve",
        Runner.serve,
        "watch the configured mailboxes and turn each notification into a case",
    )
    held = commands.add_parser(
        "held", help="messages left unread because they could not even be quarantined"
    )
    held_cmds = held.add_subparsers(dest="held_command", required=True, metavar="COMMAND")
    release = command(
        held_cmds,
        "release",
        Runner.held_release,
        "forget a held message (listed by `sgalert status`) so it is tried again",
    )
    release.add_argument("key", help="the message's mailbox key, as `sgalert status` shows it")
    as_email(release)
    ingest = command(commands, "ingest", Runner.ingest, "turn one message file into a case")
    ingest.add_argument("file", help="an RFC 822 message, e.g. saved from a mail client as .eml")
    ingest.add_argument("--source", required=True, choices=[s.value for s in Source])
    ingest.add_argument("--json", action="store_true")

    rota = commands.add_parser("rota", help="who is on duty")
    rota_cmds = rota.add_subparsers(dest="rota_command", required=True, metavar="COMMAND")
    who = command(rota_cmds, "who", Runner.rota_who, "who is on duty, and the rule that chose them")
    who.add_argument(
        "--at",
        help="an ISO 8601 time, the school's local time unless it has an offset (default: now)",
    )
    who.add_argument("--json", action="store_true")
    check = command(rota_cmds, "check", Runner.rota_check, "report gaps in cover (exit 1 if any)")
    check.add_argument("--days", type=int, default=14)
    check.add_argument("--json", action="store_true")
    cover = command(rota_cmds, "cover", Runner.rota_cover, "add a dated cover")
    cover.add_argument("--who", required=True, metavar="EMAIL")
    cover.add_argument("--from", dest="start", required=True, metavar="ISO")
    cover.add_argument("--to", dest="end", required=True, metavar="ISO")
    as_email(cover)

    audit_cmd = commands.add_parser("audit", help="the audit log")
    audit_cmds = audit_cmd.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    from sgalert.cli import digest as digest_cli  # audit head/verify --anchor, digest

    digest_cli.add_commands(commands, audit_cmds, command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        runner = Runner(args)
        handler: Callable[[Runner], Coroutine[Any, Any, int] | int] = args.handler
        outcome = handler(runner)
        if inspect.iscoroutine(outcome):
            outcome = int(asyncio.run(outcome))
        assert isinstance(outcome, int)
        sys.stdout.flush()  # a reader that has gone shows here, not as an error at exit
        return outcome
    except BrokenPipeError:
        if not _stdout_gone():
            raise
        return 128 + 13  # as if SIGPIPE had ended us, like `yes | head`
    except SgalertError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"sgalert: {printable(str(exc), keep_newlines=False)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("sgalert: interrupted", file=sys.stderr)
        return 130


def _stdout_gone() -> bool:
    """True when standard output is a pipe whose reader has left (`sgalert cases list | head`).

    Then say nothing, as well-behaved tools do, and point stdout at /dev/null so Python's own
    flush at exit meets no broken pipe either. A broken pipe anywhere else is a real error.
    """
    import select
    import stat

    try:
        fd = sys.stdout.fileno()
        if not stat.S_ISFIFO(os.fstat(fd).st_mode) or not hasattr(select, "poll"):
            return False
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        if not any(events & select.POLLERR for _, events in poller.poll(0)):
            return False  # the pipe still has a reader: the broken pipe was elsewhere
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (OSError, ValueError):
        return False
    return True
