#!/usr/bin/env bash
# Run a reader-training command with jemalloc keeping the memory it frees, where jemalloc is there.
#
# With glibc's defaults, every training step's large tensors (attention scores, activations: over
# 32 MB each) are mapped afresh and page-faulted in, 57,000-118,000 faults a second and a quarter
# of the run's CPU time in the kernel. jemalloc (Debian's libjemalloc2, which redis-server pulls
# in) told never to purge freed pages reuses them: beside a second run, the main reader run went
# from 6.1-6.7 to a median of 9.1 windows/s at a flat 3.9-4.4 GB (README, "Training"). Without
# jemalloc the command runs as it is.
#
#   scripts/with-jemalloc.sh COMMAND [ARG...]     run COMMAND (torchrun's workers inherit it)
#   scripts/with-jemalloc.sh --library            print the library's path; exit 1 if none
set -euo pipefail

library=""
for candidate in /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 /lib/x86_64-linux-gnu/libjemalloc.so.2 \
  /usr/lib/aarch64-linux-gnu/libjemalloc.so.2 /usr/lib/libjemalloc.so.2; do
  if [[ -f $candidate ]]; then
    library=$candidate
    break
  fi
done

if [[ ${1:-} == "--library" ]]; then
  [[ -n $library ]] && echo "$library" && exit 0
  exit 1
fi
if [[ -z $library ]]; then
  echo "with-jemalloc: libjemalloc.so.2 not found (apt-get install libjemalloc2); glibc's allocator it is" >&2
  exec "$@"
fi
export LD_PRELOAD="$library${LD_PRELOAD:+:$LD_PRELOAD}"
export MALLOC_CONF="dirty_decay_ms:-1,muzzy_decay_ms:-1"
exec "$@"
