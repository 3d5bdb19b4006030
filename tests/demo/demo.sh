#!/bin/bash
# shellcheck source-path=SCRIPTDIR/../vm
# `make demo`: boot a guest on the newest installed kernel (or --kernel KVER) and
# run tests/demo/guest-demo.sh in it, streaming the guest console here.
#
#   tests/demo/demo.sh [--kernel KVER] [--timeout SECONDS]
#
# Needs the module (build/kmod/<kver>/dm-user.ko) and the daemon (daemon/dmuserd)
# to be built.
set -euo pipefail

# shellcheck source=../vm/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../vm/common.sh"

kernel="" timeout=300
while (($#)); do
	case $1 in
	--kernel) kernel=${2:?}; shift 2 ;;
	--timeout) timeout=${2:?}; shift 2 ;;
	-h | --help) sed -n '3,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
	*) vm_die "unknown argument '$1' (try --help)" ;;
	esac
done

if [[ -n $kernel ]]; then
	kver=$(vm_resolve_kernel "$kernel")
else
	kver=$(vm_kernels | tail -n1)
	[[ -n $kver ]] || vm_die "no installed generic -amd64 kernel with headers"
fi
ko=$(vm_ko_path "$kver")
[[ -f $ko ]] || vm_die "module not built for $kver: $ko (run make)"
[[ -x $DMU_ROOT/daemon/dmuserd ]] || vm_die "daemon not built: $DMU_ROOT/daemon/dmuserd (run make)"

vm_log "booting a $kver guest (TCG: expect ~10 s of boot, then the demo)"
# One vCPU, as make check (see tests/check.sh): faster under TCG, and the BPF
# tools attach while fio runs.
exec "$DMU_ROOT/tests/vm/run.sh" -v --kernel "$kver" --smp "${DMU_VM_SMP:-1}" --timeout "$timeout" -- tests/demo/guest-demo.sh
