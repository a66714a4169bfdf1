#!/usr/bin/env bash
# Runs a next_jax job: here (CPU, or this host's GPU/TPU), as N local CPU processes, or on every
# worker of a TPU VM pod.
#
#   launch/tpu_run.sh --gin_file=gin_configs/experiments/cpu_demo.gin [--gin.NAME=VALUE ...]
#   launch/tpu_run.sh --local_processes=2 [--devices_per_process=2] --gin_file=... [--gin.NAME=VALUE ...]
#   launch/tpu_run.sh --tpu=my-pod --zone=us-central2-b [--project=P] [--remote_dir=~/next_jax] \
#       [--sync] [--dry_run] --gin_file=... [--gin.NAME=VALUE ...]
#
# Every argument that is not one of this script's own options goes to `python -m next_jax.main`
# unchanged. Without --tpu the job runs on this machine, after creating .venv and installing
# next_jax into it if that was not done yet. --local_processes=N runs it as N CPU processes on
# loopback (each with --devices_per_process fake devices, collectives over gloo, a free port for
# the coordinator; one fails, all stop): a multi-host run on one machine (next_jax/local_launch.py).
# With --tpu the same command runs on all workers at once through `gcloud compute tpus tpu-vm ssh
# --worker=all`, with --multihost so that each worker joins the job (jax.distributed.initialize)
# before touching a device; --sync first copies this checkout's code (the files git tracks or would
# track, never .venv) to --remote_dir on every worker, where launch/setup_env.sh installs the pinned
# dependencies. --dry_run parses and binds every gin file and override of the run (exit 2 naming a
# bad binding, as the run itself would) and then prints the commands instead of running them.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tpu="" zone="" project="" remote_dir="~/next_jax" dry_run=0 sync=0 local_processes="" devices_per_process=1
passthrough=()
for arg in "$@"; do
  case "$arg" in
    --tpu=*) tpu="${arg#--tpu=}" ;;
    --zone=*) zone="${arg#--zone=}" ;;
    --project=*) project="${arg#--project=}" ;;
    --remote_dir=*) remote_dir="${arg#--remote_dir=}" ;;
    --local_processes=*) local_processes="${arg#--local_processes=}" ;;
    --devices_per_process=*) devices_per_process="${arg#--devices_per_process=}" ;;
    --dry_run) dry_run=1 ;;
    --sync) sync=1 ;;
    -h|--help) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) passthrough+=("$arg") ;;
  esac
done

if [[ -n "$local_processes" && -n "$tpu" ]]; then
  echo "tpu_run.sh: --local_processes runs here; it cannot be combined with --tpu=$tpu" >&2
  exit 2
fi
if [[ -n "$local_processes" && ! "$local_processes$devices_per_process" =~ ^[0-9]+$ ]]; then
  echo "tpu_run.sh: --local_processes and --devices_per_process take a number of processes/devices" >&2
  exit 2
fi
if [[ -n "$tpu" && -z "$zone" ]]; then
  echo "tpu_run.sh: --tpu=$tpu needs --zone=ZONE" >&2
  exit 2
fi

python="$here/.venv/bin/python"
if [[ -z "$tpu" || "$dry_run" == 1 ]]; then
  "$here/launch/setup_env.sh"  # the run here, or the configuration check of a dry run
fi
cd "$here"

if [[ "$dry_run" == 1 ]]; then
  # The same parse and bind the run starts with: a typo stops here, not on the pod.
  status=0
  check="$("$python" -m next_jax.main --check_config "${passthrough[@]}" 2>&1)" || status=$?
  if [[ "$status" != 0 ]]; then
    grep '^next_jax: ' <<<"$check" >&2 || tail -n 20 <<<"$check" >&2
    exit "$status"
  fi
fi

if [[ -z "$tpu" ]]; then
  if [[ "${NEXT_JAX_ACCELERATOR:-cpu}" == cpu ]]; then
    # Jobs on the CPU: glibc keeps and reuses the heap that XLA's per-step temporaries take
    # instead of faulting them in afresh every step (see launch/host_allocator.sh).
    source "$here/launch/host_allocator.sh"
  fi
  if [[ -n "$local_processes" ]]; then
    launch=("$python" -m next_jax.local_launch --num_processes="$local_processes"
            --devices_per_process="$devices_per_process")
    [[ "$dry_run" == 1 ]] && launch+=(--dry_run)
    exec "${launch[@]}" -- "${passthrough[@]}"
  fi
  if [[ "$dry_run" == 1 ]]; then
    printf 'would run here:'; printf ' %q' python -m next_jax.main "${passthrough[@]}"; echo
    exit 0
  fi
  exec "$python" -m next_jax.main "${passthrough[@]}"
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
  # The code only: what git tracks plus new files it does not ignore (.venv, build outputs and
  # caches are ignored); workers install the pinned dependencies themselves (launch/setup_env.sh).
  archive="$(mktemp "${TMPDIR:-/tmp}/next_jax_code.XXXXXX")"
  trap 'rm -f "$archive"' EXIT
  if git -C "$here" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$here" ls-files -z --cached --others --exclude-standard \
      | (cd "$here" && xargs -0 sh -c 'for f; do [ -f "$f" ] && printf "%s\0" "$f"; done' _) \
      | tar -C "$here" --null -T - -czf "$archive"
  else
    tar -C "$here" --exclude=./.venv --exclude=./.git -czf "$archive" .
  fi
  echo "tpu_run.sh: --sync copies $(tar -tzf "$archive" | wc -l) files ($(du -h "$archive" | cut -f1) compressed; no .venv)" >&2
  run gcloud compute tpus tpu-vm scp "$archive" "$tpu:/tmp/next_jax_code.tar.gz" --worker=all "${gcloud_flags[@]}"
  run gcloud compute tpus tpu-vm ssh "$tpu" --worker=all "${gcloud_flags[@]}" \
    --command="mkdir -p $remote_dir && tar -xzf /tmp/next_jax_code.tar.gz -C $remote_dir && rm /tmp/next_jax_code.tar.gz"
fi
run gcloud compute tpus tpu-vm ssh "$tpu" --worker=all "${gcloud_flags[@]}" --command="$remote_cmd"
