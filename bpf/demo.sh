#!/bin/bash
# bpf/demo.sh DEVICE [SECONDS]: watch a dm-user device with the BPF tools while
# something else loads it: dmuser-top in batch mode every second, then the
# dmuser-lat histograms (every stage) of the same SECONDS (default 5).
# For `make demo`: start the load, then run this; needs root and the module.
set -euo pipefail

dev=${1:?usage: bpf/demo.sh DEVICE [SECONDS]}
secs=${2:-5}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
lat_out=$(mktemp)
trap 'rm -f "$lat_out"' EXIT

for t in dmuser-lat dmuser-top; do
	[[ -x $here/$t ]] || { echo "demo.sh: $here/$t not built (make -C bpf)" >&2; exit 1; }
done

"$here/dmuser-lat" -S all -d "$dev" "$secs" 1 >"$lat_out" &
lat=$!
"$here/dmuser-top" -b -d "$dev" -i 1 -n "$secs"
wait "$lat"
cat "$lat_out"
