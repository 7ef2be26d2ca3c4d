#!/usr/bin/env bash
# Runs `python -m bdjax.main --config=CONFIG --workdir=WORKDIR [FLAGS...]` on every host of a
# Cloud TPU VM pod slice (one process per host, JAX's multi-controller runtime), through
# `gcloud compute tpus tpu-vm ssh NAME --zone=ZONE --worker=all --command=...`.
#
# Two steps, both on every host:
#   setup  the repository into ~/$REMOTE_DIR (git clone/fetch of a URL, or a copy of a local
#          checkout), a virtual environment there, `pip install -e . "jax[tpu]"` and the gs://
#          file-system backend
#   run    the same command on every host, with BDJAX_COORDINATOR (worker 0's internal IP),
#          BDJAX_NUM_PROCESSES and BDJAX_PROCESS_ID read from the TPU VM's metadata server, so
#          that bdjax.distributed.initialize() joins the hosts (see launch/README.md)
#
# Usage: launch/tpu_pod.sh [options] [-- EXTRA_BDJAX_FLAGS...]    (-h: all options)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Variables (environment or options; options win).
TPU_NAME="${TPU_NAME:-}"                  # the TPU VM (pod slice) name
ZONE="${ZONE:-}"                          # its zone, e.g. us-central2-b
PROJECT="${PROJECT:-}"                    # GCP project ('' = gcloud's default project)
REPO="${REPO:-$(cd "$HERE/.." && pwd)}"   # a git URL, or a local checkout to copy (default: this one)
REF="${REF:-}"                            # for a git URL: the branch, tag or commit to check out
REMOTE_DIR="${REMOTE_DIR:-bdjax}"         # where the repository goes on each host (under ~)
CONFIG="${CONFIG:-configs/cc3m_clip.py}"  # the experiment config, relative to the repository
WORKDIR="${WORKDIR:-}"                    # gs://BUCKET/PATH: checkpoints, metrics, report
PYTHON="${PYTHON:-python3}"               # the hosts' Python (3.11 or newer)
GCS_PIP="${GCS_PIP:-tensorflow-cpu}"      # gs:// backend for etils.epath (see launch/README.md)
COORDINATOR_PORT="${COORDINATOR_PORT:-8476}"  # worker 0's port for jax.distributed
STEPS="${STEPS:-setup,run}"               # which steps: setup,run | setup | run
DETACH="${DETACH:-0}"                     # 1: run under nohup, output in ~/REMOTE_DIR/run.log
DRY_RUN="${DRY_RUN:-0}"                   # 1: print the gcloud commands instead of running them

usage() {
  cat <<EOF
Usage: launch/tpu_pod.sh [options] [-- EXTRA_BDJAX_FLAGS...]

Runs python -m bdjax.main --config=CONFIG --workdir=WORKDIR EXTRA_BDJAX_FLAGS... on every host
of a Cloud TPU VM pod slice, after setting the hosts up. Each option can also be given as the
environment variable in brackets.

  -n NAME     TPU VM name (TPU_NAME), required
  -z ZONE     its zone (ZONE), required
  -p PROJECT  GCP project (PROJECT); default: gcloud's configured project
  -r REPO     git URL, or local checkout to copy to the hosts (REPO); default: $REPO
  -b REF      branch, tag or commit of a git REPO to check out (REF)
  -d DIR      repository directory on each host, under ~ (REMOTE_DIR); default: $REMOTE_DIR
  -c CONFIG   config file, relative to the repository, with :ARG if any (CONFIG);
              default: $CONFIG
  -w WORKDIR  run directory, a gs:// bucket path that every host can write (WORKDIR), required
  -s STEPS    setup,run (default) | setup | run (STEPS)
  -D          detach: run under nohup on each host, output to ~/REMOTE_DIR/run.log (DETACH=1)
  -N          dry run: print the gcloud commands, run nothing (DRY_RUN=1)
  -h          this text

Other variables: PYTHON (the hosts' python, default python3), GCS_PIP (the gs:// backend pip
installs, default tensorflow-cpu), COORDINATOR_PORT (default 8476).

Example:
  launch/tpu_pod.sh -n my-v4-32 -z us-central2-b -w gs://my-bucket/runs/cc3m_clip \\
      -c configs/cc3m_clip.py -- --config.data.train=gs://my-bucket/cc3m_ar \\
      --config.data.eval=gs://my-bucket/imagenet/val
EOF
}

die() {
  echo "launch/tpu_pod.sh: error: $*" >&2
  exit 2
}

while getopts ":n:z:p:r:b:d:c:w:s:DNh" opt; do
  case "$opt" in
    n) TPU_NAME="$OPTARG" ;;
    z) ZONE="$OPTARG" ;;
    p) PROJECT="$OPTARG" ;;
    r) REPO="$OPTARG" ;;
    b) REF="$OPTARG" ;;
    d) REMOTE_DIR="$OPTARG" ;;
    c) CONFIG="$OPTARG" ;;
    w) WORKDIR="$OPTARG" ;;
    s) STEPS="$OPTARG" ;;
    D) DETACH=1 ;;
    N) DRY_RUN=1 ;;
    h) usage; exit 0 ;;
    :) die "option -$OPTARG needs a value (-h for help)" ;;
    *) die "unknown option -$OPTARG (-h for help)" ;;
  esac
done
shift $((OPTIND - 1))
if [[ $# -gt 0 && "$1" == "--" ]]; then shift; fi
EXTRA=("$@")  # extra flags for bdjax.main, e.g. --config.train.batch_size=4096

[[ -n "$TPU_NAME" ]] || die "no TPU name: give -n NAME (or TPU_NAME=...)"
[[ -n "$ZONE" ]] || die "no zone: give -z ZONE (or ZONE=...)"
case "$STEPS" in
  setup,run | run,setup | setup | run) ;;
  *) die "-s must be setup,run, setup or run; got '$STEPS'" ;;
esac
if [[ "$STEPS" == *run* ]]; then
  [[ -n "$WORKDIR" ]] || die "no workdir: give -w gs://BUCKET/PATH (or WORKDIR=...)"
  [[ "$WORKDIR" == gs://* ]] || die "-w must be a gs:// path that every host can write, got '$WORKDIR'"
fi
[[ "$REMOTE_DIR" != /* && "$REMOTE_DIR" != *..* && -n "$REMOTE_DIR" ]] ||
  die "-d must be a directory under ~ (relative, no '..'), got '$REMOTE_DIR'"

GCLOUD_ARGS=(--zone="$ZONE")
[[ -n "$PROJECT" ]] && GCLOUD_ARGS+=(--project="$PROJECT")

# Runs (or, dry, prints) a command line.
run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    printf '%q ' "$@"
    echo
  else
    "$@"
  fi
}

# Runs the bash script $1 on every host (sent base64-encoded: no quoting rules of the remote
# login shell apply to it). A dry run prints the script too.
on_all_hosts() {
  local encoded
  encoded="$(printf '%s\n' "$1" | base64 | tr -d '\n')"
  if [[ "$DRY_RUN" == 1 ]]; then
    printf '# the script run on every host:\n%s\n' "$1" | sed 's/^/#   /'
  fi
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${GCLOUD_ARGS[@]}" --worker=all \
    --command="echo $encoded | base64 -d | bash"
}

setup() {
  local get
  local q_dir q_repo q_ref
  q_dir="$(printf '%q' "$REMOTE_DIR")"
  if [[ "$REPO" == *://* || "$REPO" == git@* ]]; then  # a git URL: clone, or fetch if there
    q_repo="$(printf '%q' "$REPO")"
    q_ref="$(printf '%q' "$REF")"
    get="if [ -d ~/$q_dir/.git ]; then git -C ~/$q_dir fetch --all --tags; else git clone $q_repo ~/$q_dir; fi
if [ -n $q_ref ]; then git -C ~/$q_dir checkout $q_ref; else git -C ~/$q_dir pull --ff-only || true; fi"
  else  # a local checkout: its tracked and untracked (not ignored) files, copied to every host
    [[ -d "$REPO" ]] || die "-r: '$REPO' is neither a git URL nor a directory"
    local archive="/tmp/bdjax-$$-src.tar.gz"
    if [[ "$DRY_RUN" != 1 ]]; then
      (cd "$REPO" && git ls-files -z --cached --others --exclude-standard |
        tar --null -T - -czf "$archive") || die "could not pack '$REPO' (is it a git checkout?)"
      trap 'rm -f "$archive"' EXIT
    fi
    run gcloud compute tpus tpu-vm scp "$archive" "$TPU_NAME:bdjax-src.tar.gz" "${GCLOUD_ARGS[@]}" \
      --worker=all
    get="mkdir -p ~/$q_dir && tar -xzf ~/bdjax-src.tar.gz -C ~/$q_dir && rm ~/bdjax-src.tar.gz"
  fi
  on_all_hosts "set -euo pipefail
$get
cd ~/$q_dir
$(printf '%q' "$PYTHON") -c 'import sys; assert sys.version_info >= (3, 11), sys.version' ||
  { echo \"bdjax needs Python 3.11 or newer: install it on the hosts and set PYTHON\" >&2; exit 1; }
$(printf '%q' "$PYTHON") -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e . 'jax[tpu]' $(printf '%q' "$GCS_PIP")
.venv/bin/python -c 'import bdjax, jax; print(\"bdjax installed, jax\", jax.__version__)'"
}

run_bdjax() {
  local cmd q_dir
  q_dir="$(printf '%q' "$REMOTE_DIR")"
  cmd=".venv/bin/python -m bdjax.main --config=$(printf '%q' "$CONFIG") --workdir=$(printf '%q' "$WORKDIR")"
  for flag in "${EXTRA[@]+"${EXTRA[@]}"}"; do
    cmd+=" $(printf '%q' "$flag")"
  done
  # The hosts' place in the slice, from the metadata server (as jax's GceTpuCluster reads it):
  # worker-network-endpoints lists every host, 'IP' or 'NAME:ID:IP', worker 0 first.
  local env="set -euo pipefail
cd ~/$q_dir
meta() { curl -sSf -H Metadata-Flavor:Google http://metadata.google.internal/computeMetadata/v1/instance/attributes/\$1; }
endpoints=\$(meta worker-network-endpoints)
first=\${endpoints%%,*}
export BDJAX_COORDINATOR=\${first##*:}:$COORDINATOR_PORT
export BDJAX_NUM_PROCESSES=\$(echo \"\$endpoints\" | tr ',' '\n' | grep -c .)
export BDJAX_PROCESS_ID=\$(meta agent-worker-number)"
  if [[ "$DETACH" == 1 ]]; then
    on_all_hosts "$env
setsid nohup $cmd > run.log 2>&1 < /dev/null &
echo \"host \$BDJAX_PROCESS_ID: started, output in ~/$q_dir/run.log\""
  else
    on_all_hosts "$env
exec $cmd"
  fi
}

[[ "$STEPS" == *setup* ]] && setup
[[ "$STEPS" == *run* ]] && run_bdjax
exit 0
