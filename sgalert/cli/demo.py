"""``sgalert demo``: a whole school's night in a throwaway workspace, on this machine only.

It makes a workspace (a new temporary folder, or ``--workspace DIR`` if that is new or empty),
adds an invented safeguarding team whose passphrases it prints, starts a real SMTP server and a
Teams webhook stand-in on 127.0.0.1, runs the engine in this process, and drips invented
notices into the Maildir inbox of each source: Operation Encompass in three shapes, a
whistleblowing report, two ended lessons and one hostile message. Escalation takes seconds
(the demo config), so the pages that go unanswered move on to the deputy and the head while
you watch; the DSL acknowledges the first notice by replying to its page, as they would from
their phone. Then the desk (the terminal UI) opens as the DSL.

Without a terminal (CI, a pipe) or with ``--no-tui`` it runs for ``--for`` seconds and ends
with a summary: cases per source, pages per channel, escalations, acknowledgements and the
head's daily digest. It exits 0 only when all of that happened. What it prints is what the
pages say, which is never case content.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sgalert.cli.context import Context
from sgalert.cli.demo_servers import MailServer, TeamsSink
from sgalert.cli.demo_world import (
    DRIP,
    DSL,
    INBOXES,
    PEOPLE,
    REPLIES,
    TEAMS_URL_FILE,
    ZONE,
    demo_config,
    reply_by,
)
from sgalert.cli.spec import Argument, Command, Entry
from sgalert.clock import utcnow
from sgalert.desk.service import CaseService
from sgalert.errors import SgalertError, WorkspaceError
from sgalert.model import Source
from sgalert.records.crypto import KdfParams
from sgalert.text import printable
from sgalert.workspace import CONFIG_NAME, STORE_NAME, Workspace, make_private

if TYPE_CHECKING:
    from sgalert.engine.serve import Engine

DEFAULT_SECONDS = 20.0
TUI_AFTER_SECONDS = 16.0  # the drip, the reply and the first escalations, before the desk opens
POLL_SECONDS = 0.3
SENT_EMAIL = "sent/email"  # the pages the SMTP server took, as a Maildir
SENT_TEAMS = "sent/teams"  # the cards the Teams sink took, one JSON file each
DEMO_KDF = KdfParams(memory_kib=19_456, iterations=2, lanes=1)
"""OWASP's floor for Argon2id, not sgalert's default: the demo's passphrases are printed, so a
costlier derivation would protect nothing and only slow the setup and each unlock."""

log = logging.getLogger("sgalert.demo")


@dataclass
class Summary:
    """What happened, from the store's metadata and what the two servers were handed."""

    seconds: float
    cases: dict[str, int]
    delivered: dict[str, int]
    emails_received: int
    cards_received: int
    escalations: int
    acknowledgements: dict[str, int]
    digest: str
    workspace: Path

    def shortfall(self) -> str | None:
        """Why the demo did not show everything, in one line; None when it did."""
        missing = [s.value for s in Source if not self.cases.get(s.value)]
        if missing:
            return f"no case from {', '.join(missing)} within {self.seconds:.0f} s"
        quiet = [c for c in ("email", "teams") if not self.delivered.get(c)]
        if quiet:
            return f"nothing delivered on {', '.join(quiet)} within {self.seconds:.0f} s"
        if not self.escalations:
            return f"no escalation fired within {self.seconds:.0f} s; try --for 30"
        if not self.acknowledgements.get("reply"):
            return f"no acknowledgement by email reply within {self.seconds:.0f} s; try --for 30"
        return None

    def lines(self) -> list[str]:
        def counts(values: dict[str, int]) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(values.items())) or "none"

        acks = self.acknowledgements
        root = self.workspace
        return [
            f"== After {self.seconds:.0f} s ==",
            f"cases:            {counts(self.cases)}",
            f"notifications:    email {self.delivered.get('email', 0)} delivered (the SMTP server"
            f" took {self.emails_received}), teams {self.delivered.get('teams', 0)} delivered"
            f" (the Teams sink took {self.cards_received})",
            f"escalations:      {self.escalations} fired (pages past the first: deputy, head,"
            " team)",
            f"acknowledgements: {acks.get('reply', 0)} by email reply,"
            f" {sum(v for k, v in acks.items() if k != 'reply')} at the desk",
            f"workspace:        {root}",
            f"  the pages sent: {root / SENT_EMAIL}/new and {root / SENT_TEAMS}",
            f"  look around:    sgalert --workspace {root} cases list",
            "",
            "== The head's next daily digest (metadata only), as it will be emailed ==",
            *self.digest.rstrip("\n").splitlines(),
        ]


@dataclass
class Demo:
    """One run: the servers, the workspace, the engine, the drip and the narration."""

    workspace: Workspace
    out: Callable[[str], None] = print
    quiet: bool = False
    drip_done: threading.Event = field(default_factory=threading.Event)
    _started: float = 0.0
    _loop: asyncio.AbstractEventLoop | None = None
    _stopping: asyncio.Event | None = None
    _stop_asked: bool = False

    def say(self, line: str) -> None:
        if not self.quiet:
            self.out(f"{time.monotonic() - self._started:5.1f}s {line}")

    async def run(self, seconds: float | None) -> Summary:
        """Set everything up and run until ``seconds`` have passed or :attr:`stop` is set."""
        from sgalert.engine.serve import Engine

        self._started = time.monotonic()
        mail = MailServer(self.say)
        teams = TeamsSink(self.say)
        await mail.start()
        teams.start()
        handler = self._log_to_file()
        try:
            await self._make_workspace(mail.port, teams.url)
            mail.keep_in = self.workspace.root / SENT_EMAIL
            teams.keep_in = self.workspace.root / SENT_TEAMS
            async with await CaseService.open(self.workspace) as service:
                engine = Engine(service, self.workspace.root)
                self._started = time.monotonic()
                self.out("== The engine is running; notices start to arrive ==")
                await self._run_tasks(engine, service, mail, seconds)
                elapsed = time.monotonic() - self._started
                return await _summarise(service, mail, teams, elapsed, self.workspace.root)
        finally:
            await mail.stop()
            teams.stop()
            logging.getLogger("sgalert").removeHandler(handler)
            handler.close()

    async def _run_tasks(
        self, engine: Engine, service: CaseService, mail: MailServer, seconds: float | None
    ) -> None:
        """The engine, the drip, the reply and the narrator, until the time is up. A task that
        fails on purpose (an :class:`SgalertError`) ends the demo with its one line."""
        try:
            async with asyncio.TaskGroup() as group:
                running = [
                    group.create_task(engine.run(), name="engine"),
                    group.create_task(self._drip(), name="drip"),
                    group.create_task(self._reply(mail), name="reply"),
                    group.create_task(self._narrate(service), name="narrate"),
                ]
                await self._wait(seconds)
                for task in running:
                    task.cancel()
        except ExceptionGroup as failed:
            known = [e for e in failed.exceptions if isinstance(e, SgalertError)]
            if known:
                raise known[0] from None
            raise

    def _log_to_file(self) -> logging.Handler:
        """The engine's structured log goes to a file in the workspace, not over the story."""
        from sgalert.logs import JsonLines

        self.workspace.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        handler = logging.FileHandler(self.workspace.root / "engine.log", encoding="utf-8")
        handler.setFormatter(JsonLines())
        root = logging.getLogger("sgalert")
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False
        return handler

    def request_stop(self) -> None:
        """From any thread: end the run (the desk was closed)."""
        self._stop_asked = True
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)

    async def _wait(self, seconds: float | None) -> None:
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        if self._stop_asked:
            return
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            pass

    async def _make_workspace(self, smtp_port: int, teams_url: str) -> None:
        """As ``sgalert init`` and ``user add`` would, but with the demo's config and people
        (added through the keyring directly: the first-person rules of ``user add`` are for
        real schools)."""
        from sgalert.config import load_config
        from sgalert.records import audit
        from sgalert.records.keyring import add_first_person, add_person, unlock
        from sgalert.records.store import Store

        ws = self.workspace
        root = ws.root
        today = utcnow().astimezone(ZONE).date()
        ws.config_path.write_text(demo_config(smtp_port, today), encoding="utf-8")
        url_file = root / TEAMS_URL_FILE
        fd = os.open(url_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(teams_url + "\n")
        load_config(ws.config_path)  # the demo config must always be valid
        for folder in (*INBOXES.values(), REPLIES):
            for sub in ("cur", "new", "tmp"):
                (root / folder / sub).mkdir(parents=True, exist_ok=True)
        store = await Store.open(ws.store_path, create=True)
        async with store:
            async with store.write() as db:
                await audit.append(db, [audit.AuditEvent(audit.SYSTEM, "store-created")])
            self.out(f"== A demo school in {root}; its team (invented people) ==")
            first = PEOPLE[0]  # the DSL starts the school, as `user add --first` does
            await add_first_person(
                store,
                name=first.name,
                email=first.email,
                role=first.role,
                passphrase=first.passphrase,
                kdf=DEMO_KDF,
            )
            by = await unlock(store, first.email, first.passphrase)
            for person in PEOPLE:
                if person is not first:
                    await add_person(
                        store,
                        by=by,
                        name=person.name,
                        email=person.email,
                        role=person.role,
                        passphrase=person.passphrase,
                        kdf=DEMO_KDF,
                    )
                self.out(
                    f"  {person.role.value:18} {person.name:12} {person.email:20}"
                    f" passphrase: {person.passphrase}"
                )
        make_private(ws)
        self.out(
            f"== Mail goes to a real SMTP server on 127.0.0.1:{smtp_port}; Teams cards to a"
            " loopback webhook =="
        )

    async def _drip(self) -> None:
        """Each invented notice into its source's Maildir, as a mail server delivers: written
        in ``tmp/``, then moved into ``new/``."""
        host = socket.gethostname().replace("/", "_").replace(":", "_")
        for number, notice in enumerate(DRIP, start=1):
            await asyncio.sleep(max(0.0, self._started + notice.at - time.monotonic()))
            folder = self.workspace.root / INBOXES[notice.source]
            name = f"{int(time.time())}.demo{number}.{host}"
            (folder / "tmp" / name).write_bytes(notice.build(utcnow()))
            os.replace(folder / "tmp" / name, folder / "new" / name)
            self.say(f"inbox  {notice.source.value:9} <- {notice.what}")

    async def _reply(self, mail: MailServer) -> None:
        """The DSL reads the first Encompass page on their phone and replies to it."""
        while True:
            pages = [p for p in mail.pages_to(DSL.email) if "Operation Encompass" in p.subject]
            if pages:
                break
            await asyncio.sleep(POLL_SECONDS)
        await asyncio.sleep(1.5)  # reading it
        folder = self.workspace.root / REPLIES
        name = f"{int(time.time())}.reply.demo"
        (folder / "tmp" / name).write_bytes(reply_by(DSL, pages[0].subject, utcnow()))
        os.replace(folder / "tmp" / name, folder / "new" / name)
        ref = pages[0].subject.split()[-2] if "[ACK-" in pages[0].subject else "the case"
        self.say(f"reply  {DSL.email} answers the page for {ref} from their mail client")
        await asyncio.sleep(max(0.0, self._started + TUI_AFTER_SECONDS - time.monotonic()))
        self.drip_done.set()

    async def _narrate(self, service: CaseService) -> None:
        """What the store says happened: new cases, escalations, acknowledgements."""
        last_case, last_seq = 0, 0
        while True:
            cases = await service.store.fetchall(
                "SELECT rowid, ref, source, flags FROM cases WHERE rowid > ? ORDER BY rowid",
                (last_case,),
            )
            for rowid, ref, source, flags in cases:
                last_case = int(rowid)
                marks = ", ".join(json.loads(flags))
                self.say(f"case   {ref} opened ({source}{'; flags: ' + marks if marks else ''})")
            events = await service.store.fetchall(
                "SELECT a.seq, a.actor, a.action, a.detail, c.ref FROM audit a"
                " LEFT JOIN cases c ON c.id = a.case_id WHERE a.seq > ? AND a.action IN"
                " ('escalation-step', 'acknowledged', 'ack-reply-refused') ORDER BY a.seq",
                (last_seq,),
            )
            for seq, actor, action, detail_json, ref in events:
                last_seq = int(seq)
                detail = json.loads(detail_json)
                if action == "acknowledged":
                    self.say(f"ack    {ref} acknowledged by {actor} (by {detail.get('via')})")
                elif action == "ack-reply-refused":
                    self.say(f"ack    a reply was refused: {detail.get('reason')}")
                elif _is_escalation(detail):
                    self.say(f"escal  {ref} still unacknowledged: paging {detail.get('target')}")
            await asyncio.sleep(POLL_SECONDS)


def _is_escalation(detail: dict[str, object]) -> bool:
    """An escalation step past the first page: a later step, a repeat or a clock warning."""
    return detail.get("kind") != "step" or int(str(detail.get("step", 0))) > 0


async def _summarise(
    service: CaseService, mail: MailServer, teams: TeamsSink, seconds: float, root: Path
) -> Summary:
    from sgalert.records.store import on_connection
    from sgalert.routing.digest import Viewer, build_digest, slot
    from sgalert.routing.digest_render import render_text

    store = service.store
    cases = {
        str(s): int(n)
        for s, n in await store.fetchall("SELECT source, count(*) FROM cases GROUP BY source")
    }
    delivered = {
        str(c): int(n)
        for c, n in await store.fetchall(
            "SELECT channel, count(*) FROM outbox WHERE state = 'delivered' GROUP BY channel"
        )
    }
    steps = await store.fetchall("SELECT detail FROM audit WHERE action = 'escalation-step'")
    escalations = sum(1 for (detail,) in steps if _is_escalation(json.loads(detail)))
    acks: dict[str, int] = {}
    for (detail,) in await store.fetchall("SELECT detail FROM audit WHERE action = 'acknowledged'"):
        via = str(json.loads(detail).get("via", "direct"))
        acks[via] = acks.get(via, 0) + 1
    assert service.config is not None
    config = service.config
    now = utcnow()
    day = config.calendar.local(now).date()
    if now >= slot(config.calendar, config.digest, day):
        day += timedelta(days=1)  # the next one to go out: it covers the demo's cases
    async with store.read() as db:
        digest = await on_connection(db, lambda conn: build_digest(conn, config, day, now))
    return Summary(
        seconds=seconds,
        cases=cases,
        delivered=delivered,
        emails_received=len(mail.pages),
        cards_received=len(teams.cards),
        escalations=escalations,
        acknowledgements=acks,
        digest=render_text(digest, Viewer("head")),
        workspace=root,
    )


def _workspace(ctx: Context) -> Workspace:
    """``--workspace DIR`` (new or empty), else a new temporary folder. Never the workspace
    that ``SGALERT_WORKSPACE`` or the platform names: that one may be a school's real store."""
    chosen = ctx.args.demo_workspace or ctx.args.workspace
    if chosen:
        root = Path(chosen).expanduser().absolute()
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise WorkspaceError(
                f"{root} is not an empty folder; the demo makes its own workspace: give a new"
                " or empty folder, or no --workspace for a temporary one"
            )
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="sgalert-demo-"))
    return Workspace(config_path=root / CONFIG_NAME, store_path=root / STORE_NAME)


def _finish(summary: Summary) -> int:
    print()
    for line in summary.lines():
        print(printable(line))
    problem = summary.shortfall()
    if problem is not None:
        print(f"sgalert demo: incomplete: {problem}", file=sys.stderr)
        return 1
    return 0


def demo(ctx: Context) -> int:
    """Headless for ``--no-tui`` or without a terminal; else the desk opens as the DSL once the
    first notices are in. Not a coroutine: the desk runs its own event loop in this thread."""
    seconds = float(ctx.args.seconds)
    if not seconds > 0:  # nan too
        raise WorkspaceError(f"--for {ctx.args.seconds}: give a number of seconds, e.g. --for 20")
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    workspace = _workspace(ctx)
    run = Demo(workspace, out=lambda line: print(line, flush=True))
    if ctx.args.no_tui or not interactive:
        return _finish(asyncio.run(run.run(seconds)))
    return _with_desk(run, workspace)


def _with_desk(run: Demo, workspace: Workspace) -> int:
    """The engine and the drip in a thread of their own; the desk in this one."""
    from importlib.metadata import entry_points

    found = [e for e in entry_points(group="sgalert.apps") if e.name == "tui"]
    if not found:
        raise WorkspaceError("the terminal UI is not installed; try `sgalert demo --no-tui`")
    desk: Callable[[Workspace, str | None], int] = found[0].load()
    outcome: list[Summary | BaseException] = []

    def background() -> None:
        try:
            outcome.append(asyncio.run(run.run(None)))
        except BaseException as exc:  # handed to the main thread
            outcome.append(exc)
        finally:
            run.drip_done.set()

    thread = threading.Thread(target=background, name="demo-engine", daemon=True)
    thread.start()
    run.drip_done.wait()
    if not outcome:
        print(
            f"== Opening the desk as {DSL.name} ({DSL.email}); passphrase: {DSL.passphrase} ==",
            flush=True,
        )
        time.sleep(2.0)
        run.quiet = True
        try:
            desk(workspace, DSL.email)
        finally:
            run.request_stop()
            thread.join()
    thread.join()
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return _finish(result)


COMMANDS: tuple[Entry, ...] = (
    Command(
        "demo",
        "a throwaway school on this machine: invented notices, real loopback mail and Teams"
        " servers, escalation in seconds, then the desk",
        demo,
        (
            Argument(
                "--no-tui",
                flag=True,
                help="run without the desk and end with a summary (also without a terminal)",
            ),
            Argument(
                "--for",
                dest="seconds",
                type=float,
                default=DEFAULT_SECONDS,
                metavar="SECONDS",
                help=f"how long a run without the desk lasts (default {DEFAULT_SECONDS:g})",
            ),
            Argument(
                "--workspace",
                dest="demo_workspace",
                metavar="DIR",
                help="a new or empty folder for the demo (default: a new temporary folder)",
            ),
        ),
    ),
)
