#!/usr/bin/env bash
# glibc allocator settings for processes that run XLA:CPU training steps.
#
#   launch/host_allocator.sh                  # prints GLIBC_TUNABLES with these settings added
#   launch/host_allocator.sh python -m ...    # runs the command with them
#   source launch/host_allocator.sh           # exports them (launch/tpu_run.sh, for CPU jobs)
#
# XLA:CPU gives each execution of a compiled program one buffer for all of its temporaries and
# frees it when the execution ends. For a training step that buffer is large (3.2 GB for the
# training benchmark's S preset), and glibc serves a block that large with a fresh mmap, so every
# step faults the whole buffer in again, page by page (0.8 million faults a step on S, 1.4 million
# and 3 s of system time on M). With one arena, no mmap and no trimming, the first step takes the
# buffer from the heap and every later step reuses it without a fault; the process keeps its peak
# heap until it exits, which a training job reaches on every step anyway. glibc reads the settings
# once, when a process starts, so they are given to the process that is started. A setting that
# GLIBC_TUNABLES already names wins; NEXT_JAX_HOST_ALLOCATOR=default leaves glibc's defaults alone.

next_jax_tunables="${GLIBC_TUNABLES:-}"
if [[ "${NEXT_JAX_HOST_ALLOCATOR:-}" != default ]]; then
  for setting in glibc.malloc.arena_max=1 glibc.malloc.mmap_max=0 glibc.malloc.trim_threshold=4611686018427387904; do
    if [[ ":$next_jax_tunables" != *":${setting%%=*}="* ]]; then
      next_jax_tunables="${next_jax_tunables:+$next_jax_tunables:}$setting"
    fi
  done
fi

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then  # sourced
  if [[ -n "$next_jax_tunables" ]]; then export GLIBC_TUNABLES="$next_jax_tunables"; fi
  unset next_jax_tunables setting
  return 0
fi
if [[ $# -eq 0 ]]; then
  echo "$next_jax_tunables"
  exit 0
fi
if [[ -n "$next_jax_tunables" ]]; then export GLIBC_TUNABLES="$next_jax_tunables"; fi
exec "$@"
