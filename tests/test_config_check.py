"""``sgalert config check`` finds what would page nobody, before the engine has to (issue 12).

Each finding is one line naming the file, the key and the fix; errors exit 1, warnings alone 0.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from sgalert.cli.config_check import Problem, Severity, check, check_calendar, current_people
from sgalert.config import Config, load_config, render_template
from sgalert.desk.service import CaseService
from sgalert.errors import ConfigError
from sgalert.model import Role
from sgalert.records.keyring import remove_person
from sgalert.records.store import Store

from .cli_helpers import sgalert_cli
from .conftest import Team, add_member, add_people

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)  # the template's terms run to 21 July 2027


def write_config(root: Path, *, replace: tuple[tuple[str, str], ...] = (), extra: str = "") -> Path:
    path = root / "sgalert.toml"
    text = render_template("Test School")
    for old, new in replace:
        assert old in text
        text = text.replace(old, new)
    path.write_text(text + extra, encoding="utf-8")
    return path


def errors(problems: list[Problem]) -> list[str]:
    return [f"{p.key}: {p.text}" for p in problems if p.severity is Severity.ERROR]


def warnings(problems: list[Problem]) -> list[str]:
    return [f"{p.key}: {p.text}" for p in problems if p.severity is Severity.WARNING]


async def run_check(team: Team, config: Config, now: datetime = NOW) -> list[Problem]:
    people = await current_people(team.service.store)
    return await check(config, config.path.parent, people, now)


# ----- policy values the engine would trip over ----------------------------------------------


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("warn_minutes_before = [1]", "policies.encompass.warn_minutes_before"),
        ("warn_minutes_before = nan", "policies.encompass.warn_minutes_before"),
        ("repeat_minutes = inf", "policies.encompass.repeat_minutes"),
        ('repeat_minutes = "30"', "policies.encompass.repeat_minutes"),
    ],
)
def test_policy_minutes_that_are_not_minutes_are_config_errors(
    tmp_path: Path, line: str, key: str
) -> None:
    path = write_config(
        tmp_path,
        extra='\n[policies.encompass]\nsteps = [{ target = "on-duty", channels = ["email"] }]\n'
        f"{line}\n",
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value).startswith(f"{path}: {key}: must be a number of minutes")


def test_a_step_with_a_misspelt_key_is_a_config_error(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        extra="\n[policies.lesson]\n"
        'steps = [{ target = "on-duty", channels = ["email"], dealy_minutes = 5 }]\n',
    )
    with pytest.raises(ConfigError, match=r"steps\[0\]\.dealy_minutes: .*'delay_minutes'"):
        load_config(path)


# ----- channels named by policies --------------------------------------------------------------


async def test_the_template_with_the_whole_team_is_valid_with_a_teams_warning(
    team: Team, tmp_path: Path
) -> None:
    problems = await run_check(team, load_config(write_config(tmp_path)))
    assert errors(problems) == []
    head, teams = warnings(problems)
    assert head.startswith("school.head_names: empty, so a police notice")
    assert teams.startswith("channels.teams: the default policies for encompass, lesson")


async def test_renaming_the_email_channel_is_an_error_for_every_default_policy(
    team: Team, tmp_path: Path
) -> None:
    config = load_config(write_config(tmp_path, replace=(("[channels.email]", "[channels.mail]"),)))
    found = errors(await run_check(team, config))
    assert [line.split(":")[0] for line in found] == [
        "policies.encompass",
        "policies.whistle",
        "policies.lesson",
    ]
    assert "pages by 'email', which is not configured" in found[1]
    assert all("configured: mail" in line for line in found)


async def test_a_written_policy_naming_an_unknown_channel_is_an_error(
    team: Team, tmp_path: Path
) -> None:
    config = load_config(
        write_config(
            tmp_path,
            extra="\n[policies.lesson]\n"
            'steps = [{ target = "on-duty", channels = ["email", "pager"] }]\n'
            'repeat_channels = ["sms"]\n',
        )
    )
    found = errors(await run_check(team, config))
    assert found == [
        "policies.lesson.steps[0].channels: channel 'pager' is not configured, so these pages"
        " go nowhere; add [channels.pager] or name a configured channel (configured: email)",
        "policies.lesson.repeat_channels: channel 'sms' is not configured, so these pages go"
        " nowhere; add [channels.sms] or name a configured channel (configured: email)",
    ]


# ----- targets that resolve to nobody --------------------------------------------------------


async def test_a_role_with_no_member_is_an_error_naming_user_add(
    service: CaseService, tmp_path: Path
) -> None:
    await add_people(
        service.store,
        [
            (e, r, "passphrase-1")
            for e, r in (("dsl@example.org", Role.DSL), ("mo@example.org", Role.MONITORING_OFFICER))
        ],
    )
    config = load_config(write_config(tmp_path))
    people = await current_people(service.store)
    found = errors(await check(config, tmp_path, people, NOW))
    assert (
        "policies.encompass: the default encompass policy (steps[1]): no current person with the"
        " role deputy may read encompass cases, so this pages nobody; run `sgalert user add"
        " --name NAME --email EMAIL --role deputy --by YOUR_EMAIL`" in found
    )
    assert any(
        line.startswith("policies.lesson: the default lesson policy (steps[1])") for line in found
    )
    chair = [line for line in found if "role chair" in line]
    assert chair and chair[0].startswith(
        "policies.whistle: allegations about the headteacher (steps[0], repeat)"
    )
    # The DSL is there: on-duty and the team do reach someone.
    assert not any("'on-duty'" in line or "'team'" in line for line in found)


async def test_a_removed_persons_email_as_a_target_is_an_error(team: Team, tmp_path: Path) -> None:
    await add_member(team, "deputy2@example.org", Role.DEPUTY, "deputy@example.org")
    await remove_person(team.service.store, team["deputy@example.org"], "deputy2@example.org")
    config = load_config(
        write_config(
            tmp_path,
            extra="\n[policies.lesson]\n"
            'steps = [{ target = "deputy2@example.org", channels = ["email"] },'
            ' { target = "monitoring-officer", channels = ["email"], delay_minutes = 5 }]\n',
        )
    )
    found = errors(await run_check(team, config))
    assert found == [
        "policies.lesson.steps[0].target: deputy2@example.org is not a current person (never"
        " added, or removed); run `sgalert user add` for them, or name a current person or a role",
        "policies.lesson.steps[1].target: no monitoring-officer may read lesson cases, so none"
        ' is paged; add "monitoring-officer" to readers.lesson, or target a role that may read'
        " them",
    ]


async def test_a_misspelt_rota_address_is_an_error_naming_the_key(team: Team) -> None:
    """A fallback nobody has is never the fallback: with no other, cover out of hours falls to
    nobody, and nothing said so until a page went nowhere."""
    root = team.service.store.path.parent
    path = write_config(
        root,
        replace=(
            (
                "fallback = []",
                'fallback = ["dls@example.org", "nobody@invented.test"]\n'
                '[[rota.shifts]]\nwho = "depity@example.org"\nfrom = "07:00"\nto = "19:00"',
            ),
        ),
    )
    found = errors(await run_check(team, load_config(path)))
    assert found == [
        "rota.fallback: dls@example.org is not a current person (never added, or removed), so is"
        " never the fallback; did you mean 'dsl@example.org'?",
        "rota.fallback: nobody@invented.test is not a current person (never added, or removed),"
        " so is never the fallback; run `sgalert user add` for them, or name a current person",
        "rota.shifts[0].who: depity@example.org is not a current person (never added, or"
        " removed), so this shift falls to the fallback; did you mean 'deputy@example.org'?",
    ]
    checked = await asyncio.to_thread(sgalert_cli, root, "config", "check")
    assert checked.returncode == 1
    assert f"error: {path}: rota.fallback: dls@example.org is not a current person" in (
        checked.stdout
    )


async def test_an_empty_store_is_one_error_not_one_per_step(
    service: CaseService, tmp_path: Path
) -> None:
    config = load_config(write_config(tmp_path))
    found = errors(await check(config, tmp_path, await current_people(service.store), NOW))
    assert len(found) == 1 and found[0].startswith("policies: nobody has been added yet")


# ----- the calendar --------------------------------------------------------------------------


def test_calendar_warns_within_60_days_and_fails_once_exhausted(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    last = date(2027, 7, 21)

    def at(day: date) -> datetime:
        return datetime(day.year, day.month, day.day, 12, 0, tzinfo=UTC)

    assert check_calendar(config, at(last - timedelta(days=61))) == []
    (ending,) = check_calendar(config, at(last - timedelta(days=59)))
    assert ending.severity is Severity.WARNING and ending.key == "calendar.terms"
    assert ending.text == (
        "the last term ends on 2027-07-21, within 60 days; add next year's [[calendar.terms]]"
        " (start, end, half_term)"
    )
    (ended,) = check_calendar(config, at(last + timedelta(days=1)))
    assert ended.severity is Severity.ERROR
    assert ended.text.startswith("the last term ended on 2027-07-21")


# ----- adapters' own options -----------------------------------------------------------------

IMAP_SOURCES = """
[[sources]]
name = "police-a"
type = "encompass"
kind = "imap"
host = "imap.example.org"
username = "encompass@example.org"
password_env = "SGALERT_TEST_NEVER_SET"

[[sources]]
name = "police-b"
type = "encompass"
kind = "imap"
host = "imap.example.org"
username = "encompass@example.org"
password_env = "SGALERT_TEST_NEVER_SET"
prot = 993

[[sources]]
name = "police-c"
type = "encompass"
kind = "imap"
host = "imap.example.org"
username = "encompass@example.org"
password_env = "SGALERT_TEST_NEVER_SET"
port = "993"
"""

BAD_SMTP = """
[channels.smtp]
kind = "smtp"
host = "smtp.example.org"
securty = "tls"
"""


async def test_each_adapters_options_are_checked_by_that_adapter(
    team: Team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SGALERT_TEST_NEVER_SET", raising=False)
    path = write_config(
        tmp_path,
        replace=(("[channels.email]", BAD_SMTP + "\n[channels.email]"),),
        extra=IMAP_SOURCES,
    )
    found = errors(await run_check(team, load_config(path)))
    assert found == [
        "channels.smtp.securty: unknown option for kind = \"smtp\"; did you mean 'security'?",
        "sources[police-a].password_env: environment variable SGALERT_TEST_NEVER_SET is not set",
        "sources[police-b].prot: unknown option for kind = \"imap\"; did you mean 'port'?",
        "sources[police-c].port: must be a number from 1 to 65535; e.g. port = 993",
    ]


async def test_the_order_is_stable_and_follows_the_file(team: Team, tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        replace=(("[channels.email]", BAD_SMTP + "\n[channels.email]"),),
        extra=IMAP_SOURCES
        + '\n[policies.lesson]\nsteps = [{ target = "on-duty", channels = ["pager"] }]\n',
    )
    config = load_config(path)
    first = await run_check(team, config, NOW + timedelta(days=170))  # terms end within 60 days
    again = await run_check(team, config, NOW + timedelta(days=170))
    assert first == again
    sections = [p.key.split(".")[0].split("[")[0] for p in first]
    order = ["school", "calendar", "channels", "policies", "sources"]
    assert sections == sorted(sections, key=order.index)
    assert first[0].key == "school.head_names"
    assert first[1].severity is Severity.WARNING and first[1].key == "calendar.terms"


# ----- the commands, as an IT lead runs them -------------------------------------------------


def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return sgalert_cli(root, *args)


async def add_team(store_path: Path) -> None:
    store = await Store.open(store_path)
    async with store:
        team = (
            ("dsl@example.org", Role.DSL),
            ("deputy@example.org", Role.DEPUTY),
            ("head@example.org", Role.HEAD),
            ("mo@example.org", Role.MONITORING_OFFICER),
            ("chair@example.org", Role.CHAIR),
        )
        await add_people(store, [(e, r, "passphrase-1") for e, r in team])


@pytest.mark.slow
def test_config_check_and_serve_on_the_command_line(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    assert run(root, "init").returncode == 0
    asyncio.run(add_team(root / "sgalert.db"))
    config = root / "sgalert.toml"
    # Terms that reach a year past today, whenever the test runs (the CLI uses the real date).
    today = date.today()
    config.write_text(
        re.sub(
            r"\[\[calendar\.terms\]\].*?(?=\[rota\])",
            f'[[calendar.terms]]\nname = "This year"\nstart = {today - timedelta(days=30)}\n'
            f"end = {today + timedelta(days=365)}\n\n",
            config.read_text(),
            flags=re.DOTALL,
        )
    )

    valid = run(root, "config", "check")
    assert valid.returncode == 0, valid.stdout
    *lines, last = valid.stdout.splitlines()
    # No head's names, no Teams channel.
    assert [line.split(": ")[0] for line in lines] == ["warning", "warning"]
    assert last == f"{config}: valid (1 source(s)), 2 warning(s)"

    config.write_text(config.read_text().replace("[channels.email]", "[channels.mail]"))
    renamed = run(root, "config", "check")
    assert renamed.returncode == 1 and renamed.stderr == ""
    *lines, last = renamed.stdout.splitlines()
    assert len(lines) == 4 and lines[0].startswith(f"warning: {config}: school.head_names")
    assert all(line.startswith(f"error: {config}: policies.") for line in lines[1:])
    assert last == f"{config}: 3 error(s), 1 warning(s)"

    config.write_text(
        config.read_text().replace("[channels.mail]", "[channels.email]")
        + IMAP_SOURCES.split("[[sources]]")[0]
        + "[[sources]]"
        + IMAP_SOURCES.split("[[sources]]")[2]
    )
    serve = run(root, "serve")
    assert serve.returncode == 1
    assert serve.stderr == (
        f'sgalert: {config}: sources[police-b].prot: unknown option for kind = "imap";'
        " did you mean 'port'?\n"
    )


# ----- every adapter's options, one clear line each ------------------------------------------

APP = """tenant_id = "11111111-1111-1111-1111-111111111111"
client_id = "22222222-2222-2222-2222-222222222222"
client_secret_env = "SGALERT_TEST_SECRET"
"""


@pytest.mark.parametrize(
    ("snippet", "line"),
    [
        (
            f'[[sources]]\nname = "enc-graph"\ntype = "encompass"\nkind = "graph"\n{APP}'
            'mailbox = "encompass@example.org"\nafter_commit = "delete"\n',
            'sources[enc-graph].after_commit: unknown value \'delete\'; use "mark-read" or "move"',
        ),
        (
            f'[channels.graph]\nkind = "graph-mail"\n{APP}sender = "not an address"\n',
            "channels.graph.sender: 'not an address' is not a plain email address; e.g."
            ' sender = "safeguarding@school.example.org"',
        ),
        (
            '[[sources]]\nname = "enc-ews"\ntype = "encompass"\nkind = "ews"\n'
            'service_endpoint = "http://mail.example.org/EWS/Exchange.asmx"\n'
            'username = "svc@example.org"\npassword_env = "SGALERT_TEST_SECRET"\n'
            'mailbox = "encompass@example.org"\n',
            "sources[enc-ews].service_endpoint: plain http would send the password in the"
            " clear; use https",
        ),
        (
            '[[sources]]\nname = "enc-ews"\ntype = "encompass"\nkind = "ews"\n'
            'server = "mail.example.org"\nusername = "svc@example.org"\n'
            'password_env = "SGALERT_TEST_SECRET"\nmailbox = "encompass@example.org"\n'
            'auth_type = "kerberos"\n',
            'sources[enc-ews].auth_type: unknown value \'kerberos\'; use "ntlm" or "basic"',
        ),
        (
            '[channels.teams]\nkind = "teams-workflow"\nurl_env = "SGALERT_TEST_NEVER_SET"\n',
            "channels.teams.url_env: environment variable SGALERT_TEST_NEVER_SET is not set",
        ),
        (
            '[channels.teams]\nkind = "teams-workflow"\nurl_env = "SGALERT_TEST_SECRET"\n',
            "channels.teams.url_env: the webhook URL must be an https URL on one line; copy it"
            " from the workflow's 'When a Teams webhook request is received' trigger",
        ),
        (
            f'[channels.teams]\nkind = "teams-workflow"\nurl_env = "SGALERT_TEST_URL"\n'
            f'ca_file = "{"c" * 300}.pem"\n',
            'channels.teams: the "teams-workflow" adapter could not open a file these options'
            " name (File name too long); check that each *_file option names a readable file"
            " by a short path",
        ),
    ],
    ids=["graph", "graph-mail", "ews-http", "ews-auth", "teams-unset", "teams-not-url", "ca-file"],
)
async def test_bad_options_of_each_adapter_are_one_clear_line(
    team: Team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, snippet: str, line: str
) -> None:
    monkeypatch.setenv("SGALERT_TEST_SECRET", "not-a-url")
    monkeypatch.setenv("SGALERT_TEST_URL", "https://example.org/workflows/1/invoke?sig=x")
    monkeypatch.delenv("SGALERT_TEST_NEVER_SET", raising=False)
    found = errors(await run_check(team, load_config(write_config(tmp_path, extra=snippet))))
    assert found == [line]
