"""The commented starting config that ``sgalert init`` writes.

Kept apart from the checks in :mod:`sgalert.config` so each reads on its own; every key here must
load (``tests/test_config.py`` loads the rendered template).
"""

CONFIG_TEMPLATE = """\
# sgalert configuration.
#
# People are not listed here: add them with `sgalert user add`, which creates their keys.
# Secrets (mailbox passwords, client secrets, webhook URLs) never go in this file: they come from
# environment variables or a 0600 secrets file, named where each adapter needs one.
# After editing, `sgalert config check` tells you whether the file is valid.

[school]
# The school's or service's name, shown in notifications and the daily digest.
name = "{school_name}"
# The IANA time zone the school calendar works in. Times are stored in UTC.
timezone = "Europe/London"
# Names the headteacher is known by, so a whistleblowing allegation that names them is
# routed to the chair of governors. The words "headteacher" and "principal" always count.
head_names = []

[security]
# Minutes without a keypress after which the terminal UI locks and forgets the unlocked keys.
idle_lock_minutes = 10

[calendar]
# Which UK nation's bank holidays apply: england, wales, scotland or northern-ireland.
nation = "england"
# When the school day starts and ends (local time). Operation Encompass notices must be read
# before the next school day starts.
school_day_starts = "08:30"
school_day_ends = "15:30"
# Staff training days: no pupils, so not school days.
inset_days = [2026-09-01, 2027-01-04]

# Each term as start and end dates (inclusive), with its half-term holiday if any.
# Replace these with your own dates each year.
[[calendar.terms]]
name = "Autumn 2026"
start = 2026-09-02
end = 2026-12-18
half_term = [2026-10-26, 2026-10-30]

# The next term: name (any label), start, end, half_term.
[[calendar.terms]]
name = "Spring 2027"
start = 2027-01-05
end = 2027-03-26
half_term = [2027-02-15, 2027-02-19]

# And the one after.
[[calendar.terms]]
name = "Summer 2027"
start = 2027-04-12
end = 2027-07-21
half_term = [2027-05-31, 2027-06-04]

[rota]
# Who answers when no shift or dated cover does, in order (emails of people added with
# `sgalert user add`). Empty: the DSLs, then the deputies, then the headteacher. Such times
# are reported as gaps by `sgalert rota check`.
fallback = []
# The weekly pattern: one [[rota.shifts]] table per slot, for example
#   [[rota.shifts]]
#   who = "dsl@school.example.org"      # a person added with `sgalert user add`
#   days = ["mon", "tue", "wed", "thu", "fri"]
#   from = "07:00"                      # local time
#   to = "19:00"                        # at or before "from" means it runs past midnight
#   when = "term"                       # "term", "holiday" (incl. half terms) or "always"
# Dated covers ("the deputy covers 24 to 26 November") are added with `sgalert rota cover`.

# How people are told. Each [channels.NAME] is one channel; escalation policies name them.
#   kind = "maildrop"        writes each notification as an email file into a local Maildir
#                            (the embedded default: nothing leaves the machine)
#   kind = "smtp"            sends email: host, port, security ("tls" or "starttls"),
#                            username, password_env or password_file, from, reply_to
#   kind = "teams-workflow"  posts an Adaptive Card to a Teams Workflows webhook whose URL
#                            comes from url_env or url_file (it is a secret)
# When a channel keeps failing, the next one in this file is tried as well.
[channels.email]
kind = "maildrop"
path = "outbox/email"

# Escalation policies per source: [policies.encompass], [policies.whistle], [policies.lesson].
# Unset, the defaults apply:
#   encompass: the person on duty at once (email, teams), the deputies after 10 minutes, the
#              head 10 minutes later, then the team every 30 minutes until acknowledged; the
#              whole team 30 minutes before the next school day starts if still unacknowledged.
#   whistle:   the monitoring officer at once, then daily; about the head: the chair and the
#              monitoring officer, never the head. Deadline: 5 working days.
#   lesson:    the person on duty at once, the deputies after 5 minutes, the team every 15.
# To change one, give all of its keys, for example:
#   [policies.lesson]
#   steps = [{ target = "on-duty", channels = ["email"], delay_minutes = 0 },
#            { target = "dsl", channels = ["email"], delay_minutes = 5 }]
#   repeat_target = "team"        # on-duty, team, a role, or a person's email
#   repeat_channels = ["email"]
#   repeat_minutes = 15

# Who may read each source's cases. Each value lists groups: the roles dsl, deputy, head,
# monitoring-officer, chair, staff, or the compartment whistle-identity. Whatever you set here,
# an allegation about the headteacher is readable only by the chair and the monitoring officer.
[readers]
# Operation Encompass notices from the police.
encompass = ["dsl", "deputy", "head"]
# Reports of online lessons ended over a safeguarding concern.
lesson = ["dsl", "deputy", "head"]
# Whistleblowing allegations about staff.
whistle = ["monitoring-officer"]
# The whistleblower's identity, sealed apart from the allegation; only the monitoring officer
# and the deputies they nominate belong to the whistle-identity compartment.
whistle_identity = ["whistle-identity"]

[ingest]
# Hard limits on one incoming message. A message over any of them still becomes a case,
# flagged malformed, with the whole message sealed as evidence: nothing is dropped.
max_message_mb = 25
# Most headers one message may have.
max_headers = 500
# Deepest nesting of MIME parts that is read.
max_mime_depth = 16
# Most MIME parts that are read.
max_mime_parts = 200

# The headteacher's daily digest: counts, response times, clocks and references only (never a
# name, case text or date of birth), emailed each morning, with the audit log's anchor.
[digest]
# Local time it is sent, on school days (a slot missed while sgalert was down goes at start).
time = "07:30"
# Who gets it: roles (head, chair, monitoring-officer, dsl, deputy) and/or email addresses.
# An allegation about the headteacher is counted, never referenced, in every copy but the
# chair's and the monitoring officer's.
recipients = ["head"]
# Also on weekends and holidays.
also_non_school_days = false
# The email channel it goes by (maildrop, smtp or graph-mail); unset: the first one above.
# channel = "email"

# Mailboxes to watch. Repeat the [[sources]] table once per mailbox.
#   name            a short unique label used in logs and alerts, e.g. "encompass"
#   type            what arrives there: encompass, whistle or lesson; or "replies" for the
#                   mailbox that receives replies to sgalert's notification emails, which
#                   acknowledge cases (set that address as reply_to on the email channel)
#   kind            how to reach it: maildir (a local folder), imap, graph or ews
#   path            for kind = "maildir": the Maildir folder, relative to this file or absolute
#   authserv_id     optional: the name your receiving mail server puts first in its
#                   Authentication-Results header (e.g. "mx.school.example.org"), or
#                   "exchange-online" for Microsoft 365. When unset, SPF/DKIM/DMARC results
#                   are not checked (display-name spoofing still is).
#   sender_domains  optional: the only domains this mailbox's notices may come from,
#                   e.g. ["police.example.org"]; mail from elsewhere is flagged.
#   down_after_minutes  optional (default 10): how long the mailbox may be unreachable before
#                   the DSL team is alerted that it is down.
[[sources]]
name = "encompass"
type = "encompass"
kind = "maildir"
path = "inbox/encompass"
"""
