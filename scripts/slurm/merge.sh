#!/usr/bin/env bash
# Merge the shards of a roomsim sweep into MERGED/sweep.csv and MERGED/sweep.html.
#
#   scripts/slurm/merge.sh [OUT [MERGED]]
#   # or as a job that starts once every array task succeeded:
#   sbatch --dependency=afterok:<array job id> --export=ALL,OUT=out scripts/slurm/merge.sh
#
# Environment (arguments win):
#   OUT       output root the shards wrote into (default: out); every OUT/*-sweep is merged,
#             unless SWEEP_NAME picks one (OUT/<SWEEP_NAME>-sweep)
#   MERGED    where to write the merged table (default: OUT/<name>-merged)
#   ROOMSIM   the roomsim binary (default: target/release/roomsim if present, else roomsim on PATH)
#   EXPECTED_CELLS  if set, fail unless the merged table has exactly this many cells
# Shards written to different roots can also be merged directly:
#   roomsim merge out-a/NAME-sweep out-b/NAME-sweep --out merged
#
#SBATCH --job-name=roomsim-merge
#SBATCH --cpus-per-task=1
#SBATCH --output=slurm-%j-merge.out

set -euo pipefail

OUT="${1:-${OUT:-out}}"
if [[ -z "${ROOMSIM:-}" ]]; then
    if [[ -x target/release/roomsim ]]; then ROOMSIM=target/release/roomsim; else ROOMSIM=roomsim; fi
fi

if [[ -n "${SWEEP_NAME:-}" ]]; then
    sweeps=("$OUT/$SWEEP_NAME-sweep")
else
    shopt -s nullglob
    sweeps=("$OUT"/*-sweep)
    shopt -u nullglob
fi
if [[ ${#sweeps[@]} -eq 0 || ! -d "${sweeps[0]}/cells" ]]; then
    echo "merge.sh: no sweep output under $OUT (expected $OUT/<scenario>-sweep/cells)" >&2
    exit 1
fi
if [[ ${#sweeps[@]} -gt 1 ]]; then
    echo "merge.sh: several sweeps under $OUT (${sweeps[*]}); pick one with SWEEP_NAME=<scenario name>" >&2
    exit 1
fi
sweep="${sweeps[0]}"
name="$(basename "$sweep" -sweep)"
MERGED="${2:-${MERGED:-$OUT/$name-merged}}"

# A *.partial-* directory is a cell whose shard was killed mid-write; rerunning that shard
# (same command) redoes it. Merge ignores it, but say so.
partial=$(find "$sweep/cells" -mindepth 1 -maxdepth 1 -name '*.partial-*' | wc -l)
if [[ "$partial" -gt 0 ]]; then
    echo "merge.sh: warning: $partial unfinished cell(s) (*.partial-*) in $sweep/cells; rerun their shard to complete them" >&2
fi

"$ROOMSIM" merge "$sweep" --out "$MERGED"

cells=$(($(wc -l < "$MERGED/sweep.csv") - 1))
echo "merge.sh: $cells cells -> $MERGED/sweep.csv, $MERGED/sweep.html"
if [[ -n "${EXPECTED_CELLS:-}" && "$cells" -ne "$EXPECTED_CELLS" ]]; then
    echo "merge.sh: expected $EXPECTED_CELLS cells, found $cells; rerun the missing shards (finished cells are skipped)" >&2
    exit 1
fi
