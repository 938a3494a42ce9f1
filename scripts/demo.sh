#!/usr/bin/env bash
# The embedded-default demo: a fresh workspace in .demo/, invented people, a notification taken
# by phone, and the queue as the on-call DSL would first see it. No network, no Microsoft account.
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
echo "== A police call is recorded by the DSL (manual entry) =="
recorded=$(SGALERT_PASSPHRASE="demo-dsl-passphrase" sgalert case new --source encompass \
  --as dsl@example.org --caller "PC 0000, Example Constabulary" \
  --field child_name="Ada Invented" --field child_dob=2017-03-14 \
  --field police_reference=EX/0000/26 --field child_present=yes \
  --text "Officer reports Ada was present during an incident at home last night.")
echo "$recorded"
ref=${recorded##* }

echo
echo "== The queue (metadata only: no personal data before unlock) =="
sgalert cases list

echo
echo "== The deputy unlocks and reads the case =="
SGALERT_PASSPHRASE="demo-deputy-passphrase" sgalert case show "$ref" --as deputy@example.org

echo
echo "== The monitoring officer is not entitled to Encompass cases =="
SGALERT_PASSPHRASE="demo-mo-passphrase" sgalert case show "$ref" --as mo@example.org || true

echo
SGALERT_PASSPHRASE="demo-dsl-passphrase" sgalert ack "$ref" --as dsl@example.org
sgalert audit verify
echo
echo "Workspace: $SGALERT_WORKSPACE  (try: SGALERT_WORKSPACE=$SGALERT_WORKSPACE .venv/bin/sgalert cases list)"
