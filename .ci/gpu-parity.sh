#!/usr/bin/env bash
# The parity suites on a machine with an NVIDIA GPU: CUDA in f32, f16 and bf16, WGPU (NVIDIA's
# Vulkan driver) in f32 and f16, then the parity example over every golden case on CUDA and WGPU
# (per-tensor errors for docs/backends.md). Prints one PASS/FAIL line per run and keeps each
# run's log.
#
# Needs: the NVIDIA driver (libcuda.so, and its Vulkan ICD for WGPU), NVRTC (libnvrtc.so, from
# the CUDA toolkit or the nvidia-cuda-nvrtc-cu12 wheel on LD_LIBRARY_PATH), a Rust toolchain and
# the crates (fetched online, or `cargo fetch` beforehand and CARGO_NET_OFFLINE=true). No CUDA
# toolkit is needed to build.
#
# Usage: .ci/gpu-parity.sh [log dir (default target/gpu-parity)]
# Exit status: 0 when every suite passed, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
logs=${1:-target/gpu-parity}
mkdir -p "$logs"
export CARGO_TERM_COLOR=never

{
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "date: $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv,noheader 2>&1 \
    || echo "nvidia-smi: not found"
  (vulkaninfo --summary 2>/dev/null | grep -E "deviceName|driverName|driverInfo|apiVersion") \
    || echo "vulkaninfo: not installed (WGPU still probes the driver itself)"
} | tee "$logs/machine.txt"

status=0
# run LABEL [VAR=value...] COMMAND...: runs with the variables set, logs to $logs/LABEL.log.
run() {
  local label=$1 start result
  shift
  start=$(date +%s)
  if env "$@" >"$logs/$label.log" 2>&1; then result=PASS; else result=FAIL; status=1; fi
  echo "$result $label ($(($(date +%s) - start)) s)" | tee -a "$logs/summary.txt"
}
: >"$logs/summary.txt"

# The integration tests that run on the test backend (the others are CPU-only media tests).
targets=()
for file in sonic-parity/tests/*.rs; do
  grep -qE "TestBackend|common::device|assert_case_passes" "$file" \
    && targets+=(--test "$(basename "$file" .rs)")
done
echo "test targets: ${targets[*]}" | tee -a "$logs/machine.txt"

run build-cuda cargo test -p sonic-parity --features test-cuda "${targets[@]}" --no-run
run build-wgpu cargo test -p sonic-parity --features test-wgpu "${targets[@]}" --no-run
for dtype in f32 f16 bf16; do
  run "cuda-$dtype" SONIC_DEVICE="${SONIC_CUDA_DEVICE:-cuda:0}" SONIC_DTYPE="$dtype" \
    cargo test -p sonic-parity --features test-cuda "${targets[@]}"
done
for dtype in f32 f16; do
  run "wgpu-$dtype" SONIC_DEVICE="${SONIC_WGPU_DEVICE:-wgpu}" SONIC_DTYPE="$dtype" \
    cargo test -p sonic-parity --features test-wgpu "${targets[@]}"
done

# Per-tensor errors of every golden case (informative: exit status 2 means a case has no runner).
cases=()
for dir in fixtures/golden/*/; do [ -f "$dir/config.json" ] && cases+=("$dir"); done
for device in cuda wgpu; do
  for dtype in f32 f16; do
    cargo run -q -p sonic-parity --features "$device" --bin parity -- "${cases[@]}" --device "$device" \
      --dtype "$dtype" >"$logs/example-$device-$dtype.txt" 2>&1
    echo "exit $? example-$device-$dtype" | tee -a "$logs/summary.txt"
  done
done

echo "logs in $logs"
exit $status
