#!/usr/bin/env bash
# Make sure a model checkpoint is where DIPRO_MODEL__CHECKPOINT points; the DAG's `plan` task
# fails without one. Run by the one-shot `dipro-checkpoint-init` service of docker-compose.yml
# (the image has it as /opt/dipro/bin/ensure-checkpoint.sh).
#
#   ensure-checkpoint.sh [DEMO_WORKDIR]      (default DEMO_WORKDIR: /opt/airflow/var/demo)
#
# - A checkpoint is there (model_card.json): nothing to do. That is the case on every start
#   after the first, and when a site's own checkpoint is mounted at that path
#   (deploy/compose/site-checkpoint.yml).
# - Nothing, or an empty writable folder, is there: `dipro-fhir demo --no-airflow` puts the
#   demo checkpoint shipped with the package (trained and validated on synthetic patients; its
#   model card says: not for clinical use) in DEMO_WORKDIR and scores a synthetic cohort with
#   it, all under DEMO_WORKDIR; the checkpoint is then copied to
#   DIPRO_MODEL__CHECKPOINT: to a temporary name renamed when complete or, into an empty folder
#   (perhaps a mount point, which cannot be renamed), with the model card last.
# - Anything else is there: refuse, rather than overwrite what may be a site's files.
set -euo pipefail

checkpoint="${DIPRO_MODEL__CHECKPOINT:?DIPRO_MODEL__CHECKPOINT is not set}"
checkpoint="${checkpoint%/}"
workdir="${1:-/opt/airflow/var/demo}"

if [[ -f "$checkpoint/model_card.json" ]]; then
  echo "checkpoint: $checkpoint has a model card; nothing to do"
  exit 0
fi
if [[ -e "$checkpoint" ]] && [[ -n "$(ls -A "$checkpoint")" ]]; then
  echo "checkpoint: $checkpoint exists but has no model_card.json; not touching it" >&2
  exit 1
fi
if [[ -e "$checkpoint" ]] && [[ ! -w "$checkpoint" ]]; then
  echo "checkpoint: $checkpoint is empty and read-only (a mount of an empty folder?)" >&2
  exit 1
fi

echo "checkpoint: none at $checkpoint; the demo puts the shipped demo checkpoint in $workdir"
dipro-fhir --quiet demo --no-airflow --workdir "$workdir"
if [[ ! -f "$workdir/checkpoint/model_card.json" ]]; then
  echo "checkpoint: the demo wrote no checkpoint to $workdir/checkpoint" >&2
  exit 1
fi

if [[ -d "$checkpoint" ]]; then
  # Empty (checked above): fill it; a model card marks a complete checkpoint, so it goes last.
  find "$workdir/checkpoint" -mindepth 1 -maxdepth 1 ! -name model_card.json \
    -exec cp -R {} "$checkpoint/" \;
  cp "$workdir/checkpoint/model_card.json" "$checkpoint/"
else
  partial="$checkpoint.partial"
  rm -rf "$partial"
  mkdir -p "$(dirname "$checkpoint")"
  cp -R "$workdir/checkpoint" "$partial"
  mv "$partial" "$checkpoint"
fi
echo "checkpoint: demo checkpoint copied to $checkpoint"
