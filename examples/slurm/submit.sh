#!/bin/bash
# Submit the prepare job (reads the corpus once), the embed job array depending on it, and the merge job.
#
#   INPUT='/data/pubmed/*.xml.gz' RUN=/scratch/$USER/pubmed EMBED_ARGS="--dtype float16" ./submit.sh 16
#
# The argument is the number of array tasks (default 8); append %K to run at most K at a time (e.g. 16%4).
# Resubmitting the same command after failures resumes: shards that are already done are skipped.
set -euo pipefail
: "${INPUT:?set INPUT to the abstracts (files, folders or globs)}"
: "${RUN:?set RUN to the run directory (on a shared filesystem)}"
here=$(cd "$(dirname "$0")" && pwd)
spec=${1:-8}
tasks=${spec%%%*}
throttle=${spec#"$tasks"}
mkdir -p logs  # sbatch writes logs/... relative to this directory and does not create it

prepare=$(sbatch --parsable --export=ALL "$here/prepare.sbatch")
prepare=${prepare%%;*}  # "jobid;cluster" on multi-cluster setups
jobid=$(sbatch --parsable --array="0-$((tasks - 1))$throttle" --dependency="afterok:$prepare" \
    --kill-on-invalid-dep=yes --export=ALL "$here/embed_array.sbatch")
jobid=${jobid%%;*}
merge=$(sbatch --parsable --dependency="afterok:$jobid" --kill-on-invalid-dep=yes --export=ALL "$here/merge.sbatch")
echo "prepare: job $prepare; embed array: job $jobid ($tasks tasks, after prepare); merge: job ${merge%%;*}"
