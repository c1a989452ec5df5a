#!/usr/bin/env bash
# Create the work pools and every deployment in prefect.yaml. Safe to rerun.
#   infra/prefect/deploy.sh                 # process pools (cpu, gpu) — a GPU host runs the gpu worker
#   SMMDN_GPU_POOL_TYPE=docker infra/prefect/deploy.sh       # gpu pool as Docker with device_requests
#   SMMDN_GPU_POOL_TYPE=kubernetes infra/prefect/deploy.sh   # gpu pool from gpu-k8s-job-template.json
# Needs PREFECT_API_URL (and PREFECT_API_AUTH_STRING if the server uses auth).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export SMMDN_WORKDIR="${SMMDN_WORKDIR:-$repo}"
gpu_type="${SMMDN_GPU_POOL_TYPE:-process}"
cpu_type="${SMMDN_CPU_POOL_TYPE:-process}"

prefect work-pool create cpu --type "$cpu_type" --overwrite
case "$gpu_type" in
  process) prefect work-pool create gpu --type process --overwrite ;;
  docker) prefect work-pool create gpu --type docker --base-job-template "$here/gpu-docker-job-template.json" --overwrite ;;
  kubernetes) prefect work-pool create gpu --type kubernetes --base-job-template "$here/gpu-k8s-job-template.json" --overwrite ;;
  *) echo "unknown SMMDN_GPU_POOL_TYPE=$gpu_type (process|docker|kubernetes)" >&2; exit 2 ;;
esac
# one training at a time on the GPU
prefect work-pool set-concurrency-limit gpu 1
# flow runs at once on the cpu pool: a sharded daily cycle holds one slot while its shards use the others
prefect work-pool set-concurrency-limit cpu "${SMMDN_CPU_POOL_CONCURRENCY:-4}"
cd "$repo"
prefect --no-prompt deploy --all
if [ -f "$here/automations.yaml" ]; then
  python "$here/automations.py" "$here/automations.yaml"
fi
echo "pools: cpu ($cpu_type, concurrency ${SMMDN_CPU_POOL_CONCURRENCY:-4}), gpu ($gpu_type, concurrency 1); deployments from $repo/prefect.yaml"
