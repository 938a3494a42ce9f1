"""Never silent (issue 12): a stateful test drives the real engine, store and outbox.

Hypothesis interleaves what happens to a school's sgalert on a virtual clock: notices arrive on
each source (by mail through the real ingest path, or by phone), time passes (seconds to hours,
sometimes to the start of the next school day), people acknowledge in the terminal or by replying
to a page, statutory clocks start and are met, channels go down and come back, the rota changes,
people are removed, the engine is restarted on the same store file (cleanly, or killed after it
claimed pages and before it recorded them), and the calendar runs out. The engine runs as
``sgalert serve`` would: the harness calls ``tick_timers``, ``run_daily_jobs``, ``tick_alerts``
and ``send_due`` at every moment something falls due (instead of ``run()``), holding the lease.

After every step the invariants check what a DSL relies on. Timing is judged against the
engine's own ticks: a page is on time if it went out at the first tick (that did not crash) at or
after the moment its policy makes it due; that is the one tick of lateness the engine is allowed.

CI runs the small "default" profile (tests/conftest.py). A soak run:
``pytest tests/test_invariants.py --hypothesis-profile=long``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
from collections import Counter
from collections.abc import Coroutine, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from sgalert.clock import parse_iso
from sgalert.config import Config, SourceConfig, load_config
from sgalert.desk.service import CaseService
from sgalert.desk.views import UPKEEP
from sgalert.engine.replies import process_reply
from sgalert.engine.serve import DAILY_AT, Engine, next_due
from sgalert.engine.watch import SourceMonitor, make_deliver
from sgalert.errors import SgalertError
from sgalert.intake.ingest import Ingestor
from sgalert.intake.prepare import SourceRules
from sgalert.model import Flag, Source, readers_for
from sgalert.ports import Inbound
from sgalert.records.keyring import groups_for_role, remove_person
from sgalert.records.store import Store, on_connection
from sgalert.routing.duty import add_cover, load_rota
from sgalert.routing.escalation import Plan

from .engine_helpers import VirtualClock
from .invariants_support import (
    ALERT_GRACE,
    ARRIVALS,
    EMAIL,
    EVERYONE,
    NOT_ABOUT_PAGING,
    START,
    TEAM_ROLES,
    TEAMS,
    Ack,
    ActionClock,
    CaseModel,
    Delivery,
    Escalation,
    FakeChannel,
    Ledger,
    PersonModel,
    Round,
    Setup,
    ShiftSpec,
    SimulatedCrash,
    build_team,
    config_text,
    next_local_time,
    notice,
    reply,
    setups,
)

T = TypeVar("T")

# Rounds of send_due in one tick (the outbox loop goes again at once while it sent anything),
# ticks at one instant (a step due "now" after another fires on the next tick), and ticks in one
# passage of time (beyond it the harness jumps to the end: a bound on CPU, not on correctness).
SEND_ROUNDS = 8
SAME_INSTANT_TICKS = 6
TICKS_PER_PASSAGE = 60
# Process ids no process can have (above Linux's pid_max): each engine incarnation's lease
# holder, so a restarted engine sees its predecessor is dead, as after a real kill -9.
DEAD_PIDS = 4_194_304 * 2

DURATIONS = st.one_of(
    st.integers(1, 90),  # seconds
    st.integers(1, 90).map(lambda m: m * 60),  # minutes
    st.integers(1, 16).map(lambda h: h * 3600),  # hours
)
CASE_PICKS = st.integers(0, 7)  # which case a rule acts on: the n-th stored, counting round
OUTAGES = st.sampled_from([(EMAIL,), (TEAMS,), (EMAIL, TEAMS)])
ACTION_CLOCKS = ("lado", "suspension-confirmation-1-working-day", "file-transfer-5-school-days")


def fast_tmp() -> str | None:
    """A RAM-backed directory where there is one: the store syncs every commit."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


class NeverSilent(RuleBasedStateMachine):
    """One school's sgalert, driven through the engine's public seams."""

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.root = Path(tempfile.mkdtemp(prefix="sgalert-invariants-", dir=fast_tmp()))
        self.clock = VirtualClock(START)
        self.ledger = Ledger(self.clock)
        self.setup = Setup()
        self.shifts: tuple[ShiftSpec, ...] = ()
        self.terms_end: datetime | None = None
        self.calendar_ran_out: datetime | None = None
        self.channels: dict[str, FakeChannel] = {}
        self.outages: dict[str, list[list[datetime | None]]] = {}
        self.people: dict[str, PersonModel] = {}
        self.by_id: dict[str, PersonModel] = {}
        self.model: dict[str, CaseModel] = {}
        self.rounds: list[Round] = []
        self.last_good: datetime | None = None
        self.alert_snapshots: list[tuple[datetime, frozenset[str]]] = []
        self.resend_allowance: Counter[tuple[str, str]] = Counter()
        self.mailbox: list[tuple[str, Inbound, datetime]] = []  # (source, message, arrived)
        self.numbers = iter(range(1, 1_000_000))
        self.incarnation = 0
        self.desk: CaseService | None = None
        self.engine: Engine | None = None
        self.ingestor: Ingestor | None = None
        self.monitors: dict[str, SourceMonitor] = {}

    # ----- plumbing -------------------------------------------------------------------------

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(work)

    @property
    def config_path(self) -> Path:
        return self.root / "sgalert.toml"

    @property
    def store_path(self) -> Path:
        return self.root / "sgalert.db"

    @property
    def plan(self) -> Plan:
        assert self.engine is not None and self.engine.service.plan is not None
        return self.engine.service.plan

    @property
    def config(self) -> Config:
        assert self.engine is not None
        return self.engine.config

    def now(self) -> datetime:
        return self.clock()

    def set_time(self, moment: datetime) -> None:
        self.clock.offset = moment - self.clock.start

    def write_config(self) -> Config:
        terms_end = self.terms_end.date() if self.terms_end else None
        self.config_path.write_text(
            config_text(self.setup, shifts=self.shifts, terms_end=terms_end), encoding="utf-8"
        )
        return load_config(self.config_path)

    def teardown(self) -> None:
        try:
            self.run(self._close())
        finally:
            self.runner.close()
            shutil.rmtree(self.root, ignore_errors=True)

    async def _close(self) -> None:
        await self._stop_engine(clean=True)
        if self.desk is not None:
            await self.desk.close()

    async def _start_engine(self) -> None:
        config = self.write_config()
        store = await Store.open(self.store_path)
        service = CaseService(store, config, self.clock)
        self.incarnation += 1
        engine = Engine(
            service,
            self.root,
            notifiers={c.name: self.channels[c.name] for c in config.channels},
            clock=self.clock,
            holder=f"{socket.gethostname()}:{DEAD_PIDS + self.incarnation}",
            watch=False,
        )
        assert await engine.try_lease(), "a new engine could not take over from a dead one"
        self.engine = engine
        self.ingestor = Ingestor(service.new_cases, config, workers=1)
        self.monitors = {
            s.name: SourceMonitor(store, s, clock=self.clock)
            for s in config.sources
            if s.purpose == "cases"
        }
        if self.desk is not None:  # the terminal reads the config afresh for each command
            self.desk = CaseService(self.desk.store, config, self.clock)

    async def _stop_engine(self, *, clean: bool) -> None:
        engine, self.engine = self.engine, None
        if engine is None:
            return
        if clean:
            await engine.release_lease()
        if self.ingestor is not None:
            self.ingestor.close()
        await engine.service.close()  # after a kill, closing rolls back what was in flight

    # ----- the engine's ticks -----------------------------------------------------------------

    async def _tick_once(self, crash: str | None = None) -> bool:
        """One pass of the engine's loops at this instant. False if the engine died in it."""
        engine = self.engine
        assert engine is not None
        now = self.now()
        seq = self.ledger.next_seq()
        assert await engine.try_lease(), "the engine lost the lease of its own store"
        await engine.tick_timers()
        await self._note_fired(now, seq)
        await engine.run_daily_jobs()
        await engine.tick_alerts()
        await self._watch_mailboxes()
        first_delivery = len(self.ledger.deliveries)
        self.ledger.crash = crash
        good = True
        try:
            for _ in range(SEND_ROUNDS):
                if not await engine.sender.send_due():
                    break
        except SimulatedCrash:
            good = False
        except BaseExceptionGroup as group:
            _crash, other = group.split(SimulatedCrash)
            if other is not None:
                raise
            good = False
        finally:
            self.ledger.crash = None
        if good:
            self._note_deadlines(now, seq)
            self.last_good = now
        else:
            await self._reap_the_dead_engine()
            await self._allow_resends(self.ledger.deliveries[first_delivery:])
        self.rounds.append(Round(now, seq, good))
        await self._snapshot_alerts(now)
        return good

    async def _tick(self) -> None:
        """Tick at this instant until nothing more is due now, as the engine's loops would."""
        for _ in range(SAME_INSTANT_TICKS):
            await self._tick_once()
            if not await self._work_due_now():
                return

    async def _work_due_now(self) -> bool:
        now = self.now()
        if any(e <= now for e in self._model_due_times()):
            return True
        upcoming = [await self._engine_next_timer(), await self._engine_next_attempt()]
        return any(t is not None and t <= now for t in upcoming)

    async def _engine_next_timer(self) -> datetime | None:
        assert self.engine is not None
        async with self.engine.service.store.read() as db:
            return await on_connection(db, next_due)

    async def _engine_next_attempt(self) -> datetime | None:
        assert self.engine is not None
        return await self.engine.sender.next_attempt()

    def _model_due_times(self) -> Iterable[datetime]:
        for case in self.model.values():
            if case.ack is None:
                for event in case.events:
                    if event.fired is None:
                        yield event.due

    async def _next_moment(self, after: datetime) -> datetime | None:
        """The next moment the engine (or the harness's idea of the policy) has work."""
        candidates = [await self._engine_next_timer(), await self._engine_next_attempt()]
        candidates += list(self._model_due_times())
        for case in self.model.values():
            for event in case.events:
                if event.deadline is not None:
                    candidates.append(event.deadline + ALERT_GRACE)
        for monitor in self.monitors.values():  # a watcher checks its source every 15 s
            if monitor.failing_since is not None and not monitor.alerted:
                candidates.append(monitor.failing_since + monitor.down_after)
        rows = await self._fetch("SELECT due_at FROM clocks WHERE met_at IS NULL")
        candidates += [parse_iso(r[0]) for r in rows]
        calendar = self.plan.calendar
        candidates.append(next_local_time(calendar.local(after), DAILY_AT))
        later = [c for c in candidates if c is not None and c > after]
        return min(later) if later else None

    async def _pass_time_until(self, target: datetime) -> None:
        await self._tick()
        for _ in range(TICKS_PER_PASSAGE):
            moment = await self._next_moment(self.now())
            if moment is None or moment >= target:
                break
            self.set_time(moment)
            await self._tick()
        if target > self.now():
            self.set_time(target)
            await self._tick()

    async def _run_until_the_engine_sends(self) -> None:
        """Time passes (within a day) to the next moment the engine has a page to send."""
        limit = self.now() + timedelta(days=1)
        for _ in range(TICKS_PER_PASSAGE):
            engine_work = [await self._engine_next_timer(), await self._engine_next_attempt()]
            sends = min((t for t in engine_work if t is not None), default=None)
            moment = await self._next_moment(self.now())
            if sends is None or sends > limit or moment is None:
                return
            if moment < sends:
                self.set_time(moment)
                await self._tick()
                continue
            self.set_time(max(sends, self.now()))
            return

    async def _note_fired(self, now: datetime, seq: int) -> None:
        """Model: every expected page due by now was decided at this tick; schedule the next."""
        due: list[tuple[CaseModel, Escalation]] = [
            (case, event)
            for case in self.model.values()
            if case.ack is None
            for event in case.events
            if event.fired is None and event.due <= now
        ]
        if not due:
            return
        assert self.engine is not None
        view = await load_rota(self.engine.service, since=now)
        on_duty = view.who(now).who
        for case, event in due:
            event.fired, event.fired_seq, event.on_duty = now, seq, on_duty
            event.target_people = self._target_people(case, event.target, on_duty, seq)
            following = case.escalation(event.index + 1, now + case.delay(event.index + 1))
            case.events.append(following)

    def _note_deadlines(self, now: datetime, seq: int) -> None:
        for case in self.model.values():
            for event in case.events:
                if event.fired is not None and event.deadline is None:
                    event.deadline, event.deadline_seq = now, seq

    async def _reap_the_dead_engine(self) -> None:
        """A kill stops every task of the engine, not just the one that died: cancel whatever
        it left running (a channel's round still sending) and wait until all has settled.
        Until then the channels refuse the dead engine's sends."""
        here = asyncio.current_task()
        left = [t for t in asyncio.all_tasks() if t is not here and not t.done()]
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        self.ledger.dead = False

    async def _allow_resends(self, deliveries: list[Delivery]) -> None:
        """Delivered but never recorded (the engine died first): at-least-once allows one more."""
        for delivery in deliveries:
            rows = await self._fetch(
                "SELECT state FROM outbox WHERE idempotency_key = ?", (delivery.key,)
            )
            if not rows or rows[0][0] != "delivered":
                self.resend_allowance[(delivery.key, delivery.address)] += 1

    async def _snapshot_alerts(self, now: datetime) -> None:
        rows = await self._fetch("SELECT kind FROM system_alerts WHERE cleared_at IS NULL")
        self.alert_snapshots.append((now, frozenset(str(r[0]) for r in rows)))

    async def _fetch(self, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        """Read the store as an observer, on the terminal's own connection."""
        assert self.desk is not None
        return await self.desk.store.fetchall(sql, params)

    # ----- the watcher: mail is stored from the mailbox, or stays there --------------------

    async def _watch_mailboxes(self) -> None:
        """As each source's watcher would: store what waits; a failure keeps it and is noted
        by the source's monitor, which opens a source-down alert if it goes on."""
        assert self.ingestor is not None and self.engine is not None
        waiting, self.mailbox = self.mailbox, []
        for name, message, arrived in waiting:
            monitor = self.monitors[name]
            deliver = make_deliver(self.ingestor, SourceRules.from_config(self.config.source(name)))
            try:
                outcomes = await deliver([message])
            except Exception as failure:
                self.mailbox.append((name, message, arrived))
                await monitor.failing(f"store failed: {type(failure).__name__}")
                continue
            await monitor.ok()
            for outcome in outcomes:
                if outcome.created:
                    self._register(outcome.case_id, outcome.ref, outcome.source, outcome.flags)
        for monitor in self.monitors.values():
            await monitor.check()

    def _register(self, case_id: str, ref: str, source: Source, flags: Iterable[str]) -> None:
        flag_set = frozenset(flags)
        assert self.desk is not None and self.desk.config is not None
        groups = set(readers_for(source, flag_set, self.desk.config.readers.get(source)).content)
        seq = self.ledger.next_seq()
        entitled = frozenset(
            p.id
            for p in self.people.values()
            if p.current_at(seq) and groups & set(groups_for_role(p.role))
        )
        now = self.now()
        case = CaseModel(
            id=case_id,
            ref=ref,
            source=source,
            flags=flag_set,
            policy=self.plan.policy(source, sorted(flag_set)),
            created=now,
            created_seq=seq,
            entitled=entitled,
        )
        case.events.append(case.escalation(0, now + case.delay(0)))
        self.model[ref] = case

    # ----- what the invariants ask of the model ------------------------------------------

    def _target_people(
        self, case: CaseModel, target: str, on_duty: str | None, seq: int
    ) -> frozenset[str] | None:
        """Current people entitled to the case that the target names (policy.py's meanings)."""
        current = {pid for pid in case.entitled if self.by_id[pid].current_at(seq)}
        if target == "on-duty":
            person = self.people.get(on_duty or "")
            return frozenset({person.id}) if person and person.id in current else None
        if target == "team":
            team = {pid for pid in current if self.by_id[pid].role in TEAM_ROLES}
            return frozenset(team) or None
        if "@" in target:
            person = self.people.get(target.lower())
            return frozenset({person.id}) if person and person.id in current else frozenset()
        return frozenset(pid for pid in current if self.by_id[pid].role == target)

    def _current(self, person_id: str | None, seq: int) -> bool:
        return (
            person_id is not None
            and person_id in self.by_id
            and self.by_id[person_id].current_at(seq)
        )

    def _paged(
        self, case: CaseModel, low: datetime, high: datetime, *, upto: bool = True
    ) -> set[str]:
        """Current, entitled people paged about the case between ``low`` and ``high``."""
        return {
            d.person_id
            for d in self.ledger.by_ref.get(case.ref, ())
            if d.person_id is not None
            and low <= d.at
            and (d.at <= high if upto else d.at < high)
            and d.person_id in case.entitled
            and self._current(d.person_id, d.seq)
        }

    def _reached(self, case: CaseModel, low: datetime, high: datetime) -> bool:
        """Someone entitled learnt of the case in the window (a shared channel counts where the
        case may be shown there)."""
        if self._paged(case, low, high):
            return True
        return case.shared_allowed() and any(
            d.shared and low <= d.at <= high for d in self.ledger.by_ref.get(case.ref, ())
        )

    def _all_up(self, low: datetime, high: datetime) -> bool:
        """No configured channel was down at any moment of the window (ends included)."""
        for name in self.plan.channels:
            for start, end in self.outages.get(name, []):
                assert start is not None
                if start <= high and (end is None or end >= low):
                    return False
        return True

    def _deliverable(self, case: CaseModel, event: Escalation) -> bool:
        """The policy names a configured channel that can carry this page to someone."""
        plan = self.plan
        for name in event.channels:
            if name not in plan.channels:
                continue
            if name in plan.per_person_channels:
                if event.target_people is None or event.target_people:
                    return True
            elif case.shared_allowed():
                return True
        return False

    def _alerted(self, low: datetime, high: datetime, ignore: frozenset[str]) -> bool:
        """A system alert (not about something else) was open at some tick in the window."""
        return any(low <= at <= high and kinds - ignore for at, kinds in self.alert_snapshots)

    def _first_good_tick(self, at_or_after: datetime) -> Round | None:
        return next((r for r in self.rounds if r.good and r.at >= at_or_after), None)

    def _judged(self) -> Iterable[tuple[CaseModel, Escalation]]:
        """Pages the engine has had its tick for, on cases nobody had acknowledged by then."""
        for case in self.model.values():
            for event in case.events:
                if event.deadline_seq is not None and case.unacknowledged_at(event.deadline_seq):
                    yield case, event

    # ----- setting up -------------------------------------------------------------------------

    @initialize(setup=setups())
    def set_up(self, setup: Setup) -> None:
        """A school: its team, channels and policies; the engine starts on a new store."""
        self.setup = setup
        self.run(self._set_up())

    async def _set_up(self) -> None:
        config = self.write_config()
        store = await Store.open(self.store_path, create=True)
        self.desk = CaseService(store, config, self.clock)
        identities = await build_team(store, self.setup.members())
        for email, identity in identities.items():
            person = PersonModel(identity.id, email, identity.person.role, identity)
            self.people[email] = person
            self.by_id[person.id] = person
        for channel in config.channels:
            self.channels[channel.name] = FakeChannel(channel.name, channel.per_person, self.ledger)
            self.outages[channel.name] = []
        await self._start_engine()
        await self._tick()

    # ----- rules: what happens ----------------------------------------------------------------

    @rule(kind=st.sampled_from(ARRIVALS))
    def notice_arrives_by_mail(self, kind: str) -> None:
        """A notice lands in its source's mailbox; the watcher stores it and wakes the engine."""
        self.run(self._arrive_by_mail(kind))

    async def _arrive_by_mail(self, kind: str) -> None:
        number = next(self.numbers)
        source = "whistle" if kind.startswith("whistle") else kind
        message = Inbound(notice(kind, number), key=f"{source}:1:{number}", received_at=self.now())
        self.mailbox.append((source, message, self.now()))
        await self._tick()

    @rule(kind=st.sampled_from(ARRIVALS))
    def notice_taken_by_phone(self, kind: str) -> None:
        """A DSL (or, for whistleblowing, the monitoring officer) records a phoned notice; the
        engine notices it at its next tick."""
        self.run(self._arrive_by_phone(kind))

    async def _arrive_by_phone(self, kind: str) -> None:
        assert self.desk is not None
        source = Source.WHISTLE if kind.startswith("whistle") else Source(kind)
        recorder = self.people["mo@example.org" if source is Source.WHISTLE else "dsl@example.org"]
        if not recorder.current_at(self.ledger.next_seq()):
            return
        flags = frozenset({Flag.ABOUT_HEAD.value}) if kind == "whistle-about-head" else frozenset()
        stored = await self.desk.record_manual_case(
            recorder.identity,
            source,
            facts={"note": f"phoned notice {next(self.numbers)}"},
            body_text="Invented notice taken by phone.",
            caller="PC Invented Example",
            received_at=self.now(),
            flags=flags,
        )
        summary = await self.desk.summary(stored.ref, viewer=UPKEEP)
        self._register(summary.id, summary.ref, summary.source, summary.flags)

    @rule(seconds=DURATIONS)
    def time_passes(self, seconds: int) -> None:
        """Time passes with the engine running: it ticks whenever something falls due."""
        self.run(self._pass_time_until(self.now() + timedelta(seconds=seconds)))

    @rule(minutes=st.integers(-45, 45))
    def time_passes_to_the_next_school_day(self, minutes: int) -> None:
        """Time passes to around the start of the next school day (the Encompass deadline)."""
        calendar = self.plan.calendar
        try:
            start = calendar.next_school_day_start(self.now())
        except ValueError:  # the calendar has run out: a day will do
            start = self.now() + timedelta(days=1)
        target = max(start + timedelta(minutes=minutes), self.now() + timedelta(minutes=1))
        self.run(self._pass_time_until(target))

    def _case(self, pick: int) -> CaseModel | None:
        """The ``pick``-th case stored so far (counting round), if any."""
        refs = list(self.model)
        return self.model[refs[pick % len(refs)]] if refs else None

    @rule(case=CASE_PICKS, who=st.sampled_from(EVERYONE))
    def acknowledged_in_the_terminal(self, case: int, who: str) -> None:
        """Someone runs ``sgalert ack``; the service refuses anyone who may not read the case."""
        model = self._case(case)
        person = self.people.get(who)
        if person is None or model is None:
            return
        assert self.desk is not None
        try:
            self.run(self.desk.acknowledge(person.identity, model.ref))
        except SgalertError:
            return
        model.ack = Ack(person.id, self.ledger.next_seq(), self.now(), "terminal")

    @rule(pick=st.integers(0, 1000))
    def acknowledged_by_reply(self, pick: int) -> None:
        """Someone replies to a page they received, token in the subject (a person removed
        since then may still have the email)."""
        pages = [d for d in self.ledger.deliveries if d.ack_token and d.case_ref in self.model]
        if not pages:
            return
        page = pages[pick % len(pages)]
        assert page.ack_token is not None and self.engine is not None
        source: SourceConfig = self.config.source("replies")
        raw = reply(page.address, page.ack_token, next(self.numbers))
        outcome = self.run(process_reply(self.engine.service, raw, source, self.clock))
        if outcome.accepted and outcome.reason == "acknowledged":
            assert page.person_id is not None
            self.model[page.case_ref].ack = Ack(
                page.person_id, self.ledger.next_seq(), self.now(), "reply"
            )

    @rule(case=CASE_PICKS, clock=st.sampled_from(ACTION_CLOCKS))
    def statutory_clock_starts(self, case: int, clock: str) -> None:
        """A DSL refers to the LADO, or records a suspension or a file moving school."""
        model = self._case(case)
        person = self._first_entitled(model) if model else None
        if model is None or person is None:
            return
        assert self.desk is not None
        try:
            if clock == "lado":
                self.run(self.desk.refer(person.identity, model.ref, "lado", "Called the LADO."))
                kind = "lado-1-working-day"
            else:
                self.run(self.desk.start_clock(person.identity, model.ref, clock))
                kind = clock
        except SgalertError:
            return
        seq = self.ledger.next_seq()
        if model.ack is None:  # working on a new case acknowledges it first (issue 16)
            model.ack = Ack(person.id, seq, self.now(), "working")
        model.action_clocks.setdefault(kind, ActionClock(kind, seq))

    @rule(case=CASE_PICKS)
    def statutory_clock_is_met(self, case: int) -> None:
        """A DSL records that a statutory deadline was met."""
        model = self._case(case)
        if model is None:
            return
        open_clocks = [c for c in model.action_clocks.values() if c.met_seq is None]
        person = self._first_entitled(model)
        if not open_clocks or person is None:
            return
        assert self.desk is not None
        try:
            self.run(self.desk.meet_clock(person.identity, model.ref, open_clocks[0].kind))
        except SgalertError:
            return
        open_clocks[0].met_seq = self.ledger.next_seq()

    def _first_entitled(self, case: CaseModel) -> PersonModel | None:
        seq = self.ledger.next_seq()
        return next(
            (
                self.by_id[pid]
                for pid in sorted(case.entitled, key=lambda p: self.by_id[p].email)
                if self.by_id[pid].current_at(seq)
            ),
            None,
        )

    @rule(channels=OUTAGES)
    def channels_go_down(self, channels: tuple[str, ...]) -> None:
        """Channels fail every delivery (a retryable error) until they come back."""
        for name in channels:
            fake = self.channels.get(name)
            if fake is not None and fake.up:
                fake.up = False
                self.outages[name].append([self.now(), None])

    @rule(channels=OUTAGES)
    def channels_come_back(self, channels: tuple[str, ...]) -> None:
        for name in channels:
            fake = self.channels.get(name)
            if fake is not None and not fake.up:
                fake.up = True
                self.outages[name][-1][1] = self.now()

    @rule(
        who=st.sampled_from(EVERYONE),
        starts_in=st.sampled_from([0, 30, 120]),
        hours=st.sampled_from([1, 4, 24]),
    )
    def cover_is_arranged(self, who: str, starts_in: int, hours: int) -> None:
        """A dated cover: ``who`` is on duty for a while (even someone who cannot read cases)."""
        if who not in self.people:
            return
        actor = next(p for p in self.people.values() if p.current_at(self.ledger.next_seq()))
        starts = self.now() + timedelta(minutes=starts_in)
        assert self.desk is not None
        try:
            self.run(
                add_cover(
                    self.desk,
                    actor.identity,
                    who,
                    starts,
                    starts + timedelta(hours=hours),
                    now=self.now(),
                )
            )
        except SgalertError:
            return

    @rule(
        who=st.sampled_from(EVERYONE),
        hours=st.sampled_from([("00:00", "00:00"), ("07:00", "19:00"), ("19:00", "07:00")]),
        when=st.sampled_from(["always", "term", "holiday"]),
    )
    def weekly_rota_changes(self, who: str, hours: tuple[str, str], when: str) -> None:
        """The weekly rota in sgalert.toml changes; the engine is restarted to read it."""
        self.shifts = (ShiftSpec(who, hours[0], hours[1], when),)
        self.run(self._restart(crash=None, downtime=0))

    @rule(who=st.sampled_from(EVERYONE))
    def person_is_removed(self, who: str) -> None:
        """Someone leaves: a fellow member of their role removes them (refused for the last)."""
        person = self.people.get(who)
        seq = self.ledger.next_seq()
        if person is None or not person.current_at(seq):
            return
        remover = next(
            (
                p
                for p in self.people.values()
                if p.id != person.id and p.role is person.role and p.current_at(seq)
            ),
            None,
        )
        if remover is None:
            return
        assert self.desk is not None
        try:
            self.run(remove_person(self.desk.store, remover.identity, who))
        except SgalertError:
            return
        person.removed_at, person.removed_seq = self.now(), self.ledger.next_seq()

    @rule(
        crash=st.sampled_from([None, "before-send", "after-send"]),
        downtime=st.sampled_from([0, 3, 20, 120]),
    )
    def engine_restarts(self, crash: str | None, downtime: int) -> None:
        """The engine is restarted on the same store: stopped cleanly now, or killed mid-send
        the next time it sends a page (after it claimed the pages due, before it recorded
        them); ``downtime`` seconds pass with no engine."""
        self.run(self._restart(crash=crash, downtime=downtime))

    async def _restart(self, *, crash: str | None, downtime: int) -> None:
        if crash is not None:
            await self._run_until_the_engine_sends()
            await self._tick_once(crash=crash)
        await self._stop_engine(clean=crash is None)
        self.set_time(self.now() + timedelta(seconds=downtime))
        await self._start_engine()
        await self._tick()

    @precondition(lambda self: self.calendar_ran_out is None)
    @rule()
    def calendar_runs_out(self) -> None:
        """Nobody typed in next year's terms: the configured ones ended yesterday."""
        self.terms_end = self.now() - timedelta(days=1)
        self.calendar_ran_out = self.now()
        self.run(self._restart(crash=None, downtime=0))

    # ----- invariants ----------------------------------------------------------------------

    @invariant()
    def unacknowledged_cases_are_paged_on_time(self) -> None:
        """Every page the policy makes due on an unacknowledged case reaches someone entitled by
        the engine's next tick, when nothing stops it (every channel up, a configured channel
        named, someone to page). A DSL's whole trust rests on this: silence means nothing new."""
        assert self.last_good is not None
        for case, event in self._judged():
            assert event.deadline is not None
            if not self._deliverable(case, event) or not self._all_up(event.due, event.deadline):
                continue
            assert self._reached(case, event.due, event.deadline), (
                f"case {case.ref} ({case.id}): {event.label()} reached nobody entitled by the"
                f" engine's tick at {event.deadline:%a %H:%M:%S}, with every channel up"
            )

    @invariant()
    def each_step_pages_its_target(self) -> None:
        """Each step pages everyone its target names (current and entitled), as the policy
        says; a repeat pages them again. Otherwise the person the school put on duty, or the
        deputies it escalates to, never hear of the case."""
        per_person = self.plan.per_person_channels
        for case, event in self._judged():
            assert event.deadline is not None and event.deadline_seq is not None
            if not event.target_people or not any(c in per_person for c in event.channels):
                continue
            if not self._all_up(event.due, event.deadline):
                continue
            since = case.created if event.is_step else event.due
            paged = self._paged(case, since, event.deadline)
            missing = {
                p for p in event.target_people if self.by_id[p].current_at(event.deadline_seq)
            } - paged
            assert not missing, (
                f"case {case.ref} ({case.id}): {event.label()} did not page"
                f" {sorted(missing)} by the engine's tick at {event.deadline:%a %H:%M:%S}"
            )

    @invariant()
    def escalation_reaches_someone_new(self) -> None:
        """A step whose target the policy has not named before reaches someone not paged
        before, while the remaining steps still name such a person: escalating means widening
        the circle, not paging the same person again (who may be asleep, off sick, or the one
        who cannot act). A policy that names the same target twice asks for a re-page."""
        per_person = self.plan.per_person_channels
        for case, event in self._judged():
            assert event.deadline is not None and event.fired_seq is not None
            if not event.is_step or event.index == 0:
                continue
            if event.target in {s.target for s in case.policy.steps[: event.index]}:
                continue
            if not any(c in per_person for c in event.channels):
                continue
            if not self._all_up(event.due, event.deadline):
                continue
            later: set[str] = set()
            for step in case.policy.steps[event.index :]:
                named = self._target_people(case, step.target, event.on_duty, event.fired_seq)
                later |= named or set()
            earlier = self._paged(case, case.created, event.due, upto=False)
            if not later - earlier:
                continue
            fresh = self._paged(case, event.due, event.deadline) - earlier
            assert fresh, (
                f"case {case.ref} ({case.id}): {event.label()} paged nobody new (paged before:"
                f" {sorted(earlier)}) while {sorted(later - earlier)} were still to be reached"
            )

    @invariant()
    def nothing_paged_after_acknowledgement(self) -> None:
        """Once someone acknowledged a case, nobody is paged about it again, except for a
        statutory clock that is still running: a page for a handled case trains people to
        ignore pages."""
        for delivery in self.ledger.deliveries:
            case = self.model.get(delivery.case_ref)
            if case is None or case.ack is None or delivery.seq < case.ack.seq:
                continue
            running = [
                c
                for c in case.action_clocks.values()
                if c.started_seq < delivery.seq and (c.met_seq is None or c.met_seq > delivery.seq)
            ]
            assert running, (
                f"case {case.ref} ({case.id}): page {delivery.key} went to"
                f" {delivery.person_id or delivery.channel} after the case was acknowledged"
            )

    @invariant()
    def no_page_delivered_twice(self) -> None:
        """One page reaches one recipient once (again only if the engine died after sending it
        and before recording it: at-least-once). Repeated pages numb people to pages."""
        counts = Counter((d.key, d.address) for d in self.ledger.deliveries)
        for (key, address), count in counts.items():
            recipient = self._recipient_label(key, address)
            assert count <= 1 + self.resend_allowance[(key, address)], (
                f"page {key} was delivered {count} times to {recipient}"
            )

    def _recipient_label(self, key: str, address: str) -> str:
        person = self.people.get(address)
        return f"person {person.id}" if person else f"channel {address}"

    @invariant()
    def outbox_rows_per_page_bounded(self) -> None:
        """A page and its fallbacks make at most one outbox row per channel and recipient (a
        shared card's fallback may fan out to the people behind it, once each): a fallback
        chain that queues the same page again grows without end, flooding store and channels."""
        rows = self.run(
            self._fetch(
                "WITH RECURSIVE chain(id, root) AS ("
                " SELECT id, id FROM outbox WHERE fallback_of IS NULL"
                " UNION ALL SELECT o.id, chain.root FROM outbox o"
                " JOIN chain ON o.fallback_of = chain.id)"
                " SELECT r.idempotency_key, c.ref, o.channel, o.person_id, count(*) FROM chain"
                " JOIN outbox o ON o.id = chain.id JOIN outbox r ON r.id = chain.root"
                " LEFT JOIN cases c ON c.id = r.case_id"
                " GROUP BY chain.root, o.channel, o.recipient HAVING count(*) > 1"
            )
        )
        assert not rows, "; ".join(
            f"page {key} (case {ref}) has {count} outbox rows on {channel}"
            f" for {f'person {person}' if person else 'the channel'}"
            for key, ref, channel, person, count in rows
        )

    @invariant()
    def overdue_statutory_clocks_were_paged(self) -> None:
        """A statutory clock that reaches its deadline unmet pages someone entitled at the
        engine's next tick, acknowledged or not: the deadline is the law's, not the rota's."""
        rows = self.run(
            self._fetch(
                "SELECT k.case_id, c.ref, k.kind, k.due_at, k.met_at, c.state FROM clocks k"
                " JOIN cases c ON c.id = k.case_id"
            )
        )
        for case_id, ref, kind, due_at, met_at, state in rows:
            due = parse_iso(due_at)
            tick = self._first_good_tick(due)
            case = self.model.get(ref)
            if tick is None or case is None or state == "closed":
                continue
            if met_at is not None and parse_iso(met_at) <= tick.at:
                continue
            if not self._all_up(due, tick.at):
                continue
            if kind == case.policy.clock:
                assert self._reached(case, due, tick.at), (
                    f"case {ref} ({case_id}): intake clock {kind} passed its deadline"
                    f" {due:%a %d %b %H:%M} unmet and nobody was paged at the engine's tick"
                )
            else:
                assert self._reached(case, due, tick.at), (
                    f"case {ref} ({case_id}): statutory clock {kind} passed its deadline"
                    f" {due:%a %d %b %H:%M} unmet and nobody was paged at the engine's tick"
                )

    @invariant()
    def silence_raises_a_system_alert(self) -> None:
        """Whatever stops a page (every channel failing, a channel the policy names missing, a
        target naming nobody, a statutory deadline nobody could be told of, a calendar that
        has run out, mail that cannot be stored) raises a system alert within the grace, so
        silence never looks like safety."""
        assert self.last_good is not None
        plan = self.plan
        for case, event in self._judged():
            assert event.deadline is not None
            by = event.deadline + ALERT_GRACE
            if by > self.last_good or (case.ack is not None and case.ack.at <= by):
                continue
            what = f"case {case.ref} ({case.id}): {event.label()}"
            missing = sorted(set(event.channels) - set(plan.channels))
            # A step with one of its channels configured still pages (config check warns about
            # the rest); a step with none of them must raise an alert.
            if missing and not set(event.channels) & set(plan.channels):
                assert self._alerted(event.due, by, NOT_ABOUT_PAGING), (
                    f"{what} names channel(s) {missing} that are not configured,"
                    " and no system alert was raised"
                )
            if event.target_people is not None and not event.target_people:
                assert self._alerted(event.due, by, NOT_ABOUT_PAGING), (
                    f"{what}: the target names nobody current and entitled,"
                    " and no system alert was raised"
                )
            if self._deliverable(case, event) and not self._reached(case, event.due, by):
                assert self._alerted(event.due, by, NOT_ABOUT_PAGING), (
                    f"{what} was not delivered within {ALERT_GRACE} of the engine's tick"
                    " and no system alert was raised"
                )
        self._calendar_and_mail_are_not_silent()

    def _calendar_and_mail_are_not_silent(self) -> None:
        assert self.last_good is not None
        if self.calendar_ran_out is not None:
            calendar = self.plan.calendar
            daily = next_local_time(calendar.local(self.calendar_ran_out), DAILY_AT)
            tick = self._first_good_tick(daily)
            if tick is not None and tick.at + ALERT_GRACE <= self.last_good:
                assert self._alerted(
                    self.calendar_ran_out, tick.at + ALERT_GRACE, NOT_ABOUT_PAGING
                ), (
                    "the calendar's terms ran out and the daily jobs raised no system alert"
                    f" by {tick.at + ALERT_GRACE:%a %d %b %H:%M}"
                )
        for name, _message, arrived in self.mailbox:
            down_after = timedelta(minutes=self.config.source(name).down_after_minutes)
            by = arrived + down_after + ALERT_GRACE
            if by <= self.last_good:
                assert self._alerted(arrived, by, frozenset({"rota-gap"})), (
                    f"a message in the {name} mailbox since {arrived:%a %H:%M:%S} could not be"
                    " stored and no system alert was raised"
                )

    @invariant()
    def pages_reach_only_current_entitled_people(self) -> None:
        """A page goes only to someone entitled to the case who is still on the team when it
        is delivered: a leaver must not keep learning of cases (nor hold a live ack token)."""
        for delivery in self.ledger.deliveries:
            case = self.model.get(delivery.case_ref)
            if case is None or delivery.shared:
                continue
            assert delivery.person_id is not None, (
                f"case {case.ref} ({case.id}): page {delivery.key} went by {delivery.channel}"
                f" to the address {delivery.address!r}, which is nobody's"
            )
            assert delivery.person_id in case.entitled, (
                f"case {case.ref} ({case.id}): page {delivery.key} went to"
                f" person {delivery.person_id}, who is not entitled to read it"
            )
            assert self._current(delivery.person_id, delivery.seq), (
                f"case {case.ref} ({case.id}): page {delivery.key} went to"
                f" person {delivery.person_id} after they were removed"
            )

    @invariant()
    def only_current_entitled_people_acknowledge(self) -> None:
        """An acknowledgement stops every page, so only someone entitled and still on the team
        may give one (in the terminal or by replying): otherwise a leaver silences a case."""
        for case in self.model.values():
            if case.ack is None:
                continue
            assert case.ack.person_id in case.entitled, (
                f"case {case.ref} ({case.id}) was acknowledged ({case.ack.via}) by person"
                f" {case.ack.person_id}, who is not entitled to it"
            )
            assert self._current(case.ack.person_id, case.ack.seq), (
                f"case {case.ref} ({case.id}) was acknowledged ({case.ack.via}) by person"
                f" {case.ack.person_id} after they were removed"
            )

    @invariant()
    def shared_channels_never_carry_restricted_pages(self) -> None:
        """Whistleblowing and about-the-head pages never go to a shared channel (design 6):
        that a report exists is itself confidential."""
        for delivery in self.ledger.deliveries:
            case = self.model.get(delivery.case_ref)
            if case is None or not delivery.shared:
                continue
            assert case.shared_allowed(), (
                f"case {case.ref} ({case.id}, {case.source.value}): page {delivery.key}"
                f" was posted to the shared channel {delivery.channel}"
            )


# Settings come from the active Hypothesis profile (tests/conftest.py): "default" or "long".
TestNeverSilent = NeverSilent.TestCase
