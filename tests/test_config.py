"""Config: the shipped template is valid, and every error names the file, the key and the fix."""

from __future__ import annotations

import re
import tomllib
from datetime import time
from importlib import resources
from pathlib import Path

import pytest

from sgalert.cli.main import main
from sgalert.config import SECTIONS, TEMPLATE_RESOURCE, load_config, render_template
from sgalert.errors import ConfigError
from sgalert.model import Readers, Source


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sgalert.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_template_is_valid_and_documents_every_key(tmp_path: Path) -> None:
    text = render_template('St "Quoted" School')
    config = load_config(_write(tmp_path, text))
    assert config.school_name == 'St "Quoted" School'
    assert config.timezone.key == "Europe/London"
    assert config.readers[Source.WHISTLE] == Readers(("monitoring-officer",), ("whistle-identity",))
    assert [s.name for s in config.sources] == ["encompass"]
    # Each key assignment in the template has a comment line somewhere above it in its block.
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if "=" in line and not line.lstrip().startswith("#"):
            block = lines[max(0, index - 8) : index]
            assert any(b.lstrip().startswith("#") for b in block), line


def test_the_template_writes_every_section_in_the_order_the_checks_report_them() -> None:
    """`config check` ranks its findings by section and an unknown section's error lists them:
    one list, in the order a school reads them in the file (commented examples count)."""
    text = render_template("Test School")
    headers = re.findall(r"^#?\s*\[\[?([a-z]+)[\].]", text, flags=re.MULTILINE)
    assert list(dict.fromkeys(headers)) == list(SECTIONS)


def test_the_packaged_template_is_what_init_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The template ships as a package resource (so it is in the wheel, found wherever sgalert
    is installed); it parses as TOML as it stands, and `sgalert init` writes exactly it."""
    shipped = (resources.files("sgalert") / TEMPLATE_RESOURCE).read_text(encoding="utf-8")
    assert tomllib.loads(shipped)["school"]["name"] == "{school_name}"
    workspace = tmp_path / "ws"
    assert main(["--workspace", str(workspace), "init", "--school-name", "Elm Grove School"]) == 0
    assert "Created workspace" in capsys.readouterr().out
    written = (workspace / "sgalert.toml").read_text(encoding="utf-8")
    assert written == shipped.replace("{school_name}", "Elm Grove School")
    assert written == render_template("Elm Grove School")
    assert load_config(workspace / "sgalert.toml").school_name == "Elm Grove School"


@pytest.mark.parametrize(
    "text,key,fix",
    [
        ('[school]\nname = "S"\ntimezone = "Europe/Lundon"\n', "school.timezone", "Europe/London"),
        ('[school]\nnme = "S"\n', "school.nme", "did you mean 'name'"),
        (
            '[school]\nname = "S"\n[readers]\nencompass = ["dls"]\n',
            "readers.encompass",
            "did you mean 'dsl'",
        ),
        (
            '[school]\nname = "S"\n[security]\nidle_lock_minutes = 0\n',
            "security.idle_lock_minutes",
            "1 to 240",
        ),
        (
            '[school]\nname = "S"\n[[sources]]\nname = "a"\ntype = "encompass"\nkind = "pop3"\n',
            "sources[0].kind",
            "maildir, imap, graph, ews",
        ),
        (
            '[school]\nname = "S"\n[[sources]]\nname = "a"\ntype = "police"\nkind = "imap"\n',
            "sources[0].type",
            "encompass, whistle, lesson",
        ),
        (
            '[school]\nname = "S"\n[[sources]]\nname = "a"\ntype = "lesson"\nkind = "imap"\n'
            '[[sources]]\nname = "a"\ntype = "lesson"\nkind = "imap"\n',
            "sources[1].name",
            "own name",
        ),
        ('[schol]\nname = "S"\n', "schol", "did you mean 'school'"),
        ("[school]\n", "school.name", 'name = "..."'),
    ],
)
def test_errors_name_file_key_and_fix(tmp_path: Path, text: str, key: str, fix: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}: ")
    assert fix in message


def test_syntax_error_and_missing_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "[school\nname = 1\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="sgalert init"):
        load_config(tmp_path / "missing.toml")


def test_a_time_written_unquoted_reads_as_the_time(tmp_path: Path) -> None:
    """`school_day_starts = 09:15:00` (TOML's own time) was refused as
    'datetime.time(9, 15) is not a time'."""
    text = render_template("Test School").replace(
        'school_day_starts = "08:30"', "school_day_starts = 09:15:00"
    )
    assert load_config(_write(tmp_path, text)).calendar.day_starts == time(9, 15)


def test_a_date_and_time_where_a_date_goes_is_shown_as_written(tmp_path: Path) -> None:
    """The error showed Python's words, 'datetime.datetime(2026, 9, 2, 8, 0) is not a date'."""
    text = render_template("Test School").replace(
        "start = 2026-09-02", "start = 2026-09-02T08:00:00"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text))
    assert "calendar.terms[0].start: 2026-09-02T08:00:00 is not a date" in str(caught.value)
    assert "datetime." not in str(caught.value)
