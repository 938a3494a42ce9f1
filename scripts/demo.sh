#!/usr/bin/env bash
# The main job on the embedded default: a fresh workspace in .demo/ whose Maildir inbox receives
# four invented notifications; `sgalert serve` turns each into a sealed case, and the queue is
# shown as the on-call DSL first sees it. No network, no Microsoft account.
set -euo pipefail
cd "$(dirname "$0")/.."
export SGALERT_WORKSPACE="$PWD/.demo"
rm -rf "$SGALERT_WORKSPACE"

sgalert init --school-name "Example First School"
SGALERT_PASSPHRASE="demo-dsl-passphrase" \
  sgalert user add --name "Dana Demo" --email dsl@example.org --role dsl
SGALERT_PASSPHRASE="demo-deputy-passphrase" \
  sgalert user add --name "Dev Demo" --email deputy@example.org --role deputy
SGALERT_PASSPHRASE="demo-head-passphrase" \
  sgalert user add --name "Harper Demo" --email head@example.org --role head
SGALERT_PASSPHRASE="demo-mo-passphrase" \
  sgalert user add --name "Morgan Demo" --email mo@example.org --role monitoring-officer

echo
echo "== Four notifications arrive in the Maildir inbox; sgalert serve picks them up =="
inbox="$SGALERT_WORKSPACE/inbox/encompass"
n=0
for message in scripts/demo-messages/*.eml; do
  n=$((n + 1))
  cp "$message" "$inbox/tmp/demo.$n" && mv "$inbox/tmp/demo.$n" "$inbox/new/170000000$n.demo$n.example"
done
sgalert serve 2>"$SGALERT_WORKSPACE/serve.log" &
serve=$!
trap 'kill -TERM $serve 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  [ -z "$(ls -A "$inbox/new")" ] && break
  sleep 0.1
done
sleep 0.5
kill -TERM "$serve"; wait "$serve"; trap - EXIT
sed 's/^/  log: /' "$SGALERT_WORKSPACE/serve.log"

echo
echo "== The on-duty DSL was paged (the embedded default writes pages into a local Maildir) =="
page=$(ls "$SGALERT_WORKSPACE/outbox/email/new" | head -n 1)
echo "  $(ls "$SGALERT_WORKSPACE/outbox/email/new" | wc -l) page(s) in $SGALERT_WORKSPACE/outbox/email/new; the first:"
sed -n '/^Subject:/p;/^To:/p' "$SGALERT_WORKSPACE/outbox/email/new/$page" | sed 's/^/    /'
awk 'f{print "    " $0} /^$/{f=1}' "$SGALERT_WORKSPACE/outbox/email/new/$page"

echo
echo "== The queue (metadata only: no personal data before unlock) =="
sgalert cases list

first=$(sgalert cases list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["ref"])')
echo
echo "== The deputy unlocks and reads the oldest case, $first =="
SGALERT_PASSPHRASE="demo-deputy-passphrase" sgalert case show "$first" --as deputy@example.org

echo
echo "== The monitoring officer is not entitled to Encompass cases (refusal is audited) =="
SGALERT_PASSPHRASE="demo-mo-passphrase" sgalert case show "$first" --as mo@example.org || true

echo
echo "== A police call taken by phone is recorded by the DSL =="
SGALERT_PASSPHRASE="demo-dsl-passphrase" sgalert case new --source encompass \
  --as dsl@example.org --caller "PC 0000, Example Constabulary" \
  --text - <<'NOTICE'
child_name: Eve Invented
child_dob: 2018-01-05

Officer reports Eve was present during an incident at home last night.
NOTICE

SGALERT_PASSPHRASE="demo-dsl-passphrase" sgalert ack "$first" --as dsl@example.org
sgalert audit verify
echo
echo "Workspace: $SGALERT_WORKSPACE  (try: SGALERT_WORKSPACE=$SGALERT_WORKSPACE .venv/bin/sgalert cases list)"
