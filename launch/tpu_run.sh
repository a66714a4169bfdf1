#!/usr/bin/env bash
# Runs a next_jax job: here (CPU, or this host's GPU/TPU), or on every worker of a TPU VM pod.
#
#   launch/tpu_run.sh --gin_file=gin_configs/experiments/cpu_demo.gin [--gin.NAME=VALUE ...]
#   launch/tpu_run.sh --tpu=my-pod --zone=us-central2-b [--project=P] [--remote_dir=~/next_jax] \
#       [--sync] [--dry_run] --gin_file=... [--gin.NAME=VALUE ...]
#
# Every argument that is not one of this script's own options goes to `python -m next_jax.main`
# unchanged. Without --tpu the job runs on this machine, after creating .venv and installing
# next_jax into it if that was not done yet. With --tpu the same command runs on all workers at
# once through `gcloud compute tpus tpu-vm ssh --worker=all`, with --multihost so that each worker
# calls jax.distributed.initialize() before touching a device; --sync first copies this checkout
# to --remote_dir on every worker; --dry_run prints the gcloud commands instead of running them.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tpu="" zone="" project="" remote_dir="~/next_jax" dry_run=0 sync=0
passthrough=()
for arg in "$@"; do
  case "$arg" in
    --tpu=*) tpu="${arg#--tpu=}" ;;
    --zone=*) zone="${arg#--zone=}" ;;
    --project=*) project="${arg#--project=}" ;;
    --remote_dir=*) remote_dir="${arg#--remote_dir=}" ;;
    --dry_run) dry_run=1 ;;
    --sync) sync=1 ;;
    -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) passthrough+=("$arg") ;;
  esac
done

if [[ -z "$tpu" ]]; then
  if [[ "$dry_run" == 1 ]]; then
    printf 'would run here:'; printf ' %q' python -m next_jax.main "${passthrough[@]}"; echo
    exit 0
  fi
  "$here/launch/setup_env.sh"
  cd "$here"
  if [[ "${NEXT_JAX_ACCELERATOR:-cpu}" == cpu ]]; then
    # Jobs on the CPU: glibc keeps and reuses the heap that XLA's per-step temporaries take
    # instead of faulting them in afresh every step (see launch/host_allocator.sh).
    source "$here/launch/host_allocator.sh"
  fi
  exec "$here/.venv/bin/python" -m next_jax.main "${passthrough[@]}"
fi

if [[ -z "$zone" ]]; then
  echo "tpu_run.sh: --tpu=$tpu needs --zone=ZONE" >&2
  exit 2
fi
gcloud_flags=(--zone="$zone")
[[ -n "$project" ]] && gcloud_flags+=(--project="$project")

remote_args=""
for a in "${passthrough[@]}"; do remote_args+=" $(printf '%q' "$a")"; done
remote_cmd="cd $remote_dir && NEXT_JAX_ACCELERATOR=tpu launch/tpu_run.sh --multihost$remote_args"

run() {
  if [[ "$dry_run" == 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi
}
if [[ "$sync" == 1 ]]; then
  run gcloud compute tpus tpu-vm scp --recurse "$here" "$tpu:$remote_dir" --worker=all "${gcloud_flags[@]}"
fi
run gcloud compute tpus tpu-vm ssh "$tpu" --worker=all "${gcloud_flags[@]}" --command="$remote_cmd"
