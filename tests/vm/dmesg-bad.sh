# shellcheck shell=bash
# What makes a kernel log or a taint a test failure, for the scripts that judge a
# guest's kernel: tests/vm/guest-suite.sh (each e2e test) and tests/pkg/guest.sh
# (each boot of the packaging test). Sourced, never executed.

# Kernel log lines that fail a test (extended regex, matched case-sensitively).
DMU_DMESG_BAD='\bWARNING\b|\bBUG\b|kernel BUG|Oops|general protection|Call Trace|possible circular locking|inconsistent lock state|possible recursive locking|blocked for more than|KASAN|UBSAN|soft lockup|hard LOCKUP|rcu_sched detected stall|rcu: INFO|list_add corruption|list_del corruption|refcount_t:|KFENCE|ODEBUG|sleeping function called from invalid context|Invalid wait context|suspicious RCU usage|bad unlock balance|held lock freed|lock held when returning to user space|possible irq lock inversion'
# The checker each kind of report comes from, named in a failure's reasons
# (the debug lane, make check-debug, relies on "lockdep" being named).
DMU_DMESG_KINDS=(
	'lockdep' 'possible circular locking|inconsistent lock state|possible recursive locking|Invalid wait context|suspicious RCU usage|bad unlock balance|held lock freed|lock held when returning to user space|possible irq lock inversion'
	'sleep in atomic (DEBUG_ATOMIC_SLEEP)' 'sleeping function called from invalid context'
	'KASAN' 'KASAN' 'UBSAN' 'UBSAN' 'KFENCE' 'KFENCE' 'debugobjects' 'ODEBUG'
	'list debugging' 'list_add corruption|list_del corruption'
	'hung task' 'blocked for more than' 'lockup' 'soft lockup|hard LOCKUP'
	'RCU stall' 'rcu_sched detected stall|rcu: INFO'
)
dmesg_kinds() { # file: the kinds of report in it, comma-separated
	local i kinds=""
	for ((i = 0; i < ${#DMU_DMESG_KINDS[@]}; i += 2)); do
		grep -qE "${DMU_DMESG_KINDS[i + 1]}" "$1" && kinds+="${DMU_DMESG_KINDS[i]}, "
	done
	printf '%s\n' "${kinds%, }"
}
# Taint bits that a test must not set: B(5) bad page, D(7) oops, W(9) warning,
# L(14) soft lockup.
DMU_TAINT_BAD=$(((1 << 5) | (1 << 7) | (1 << 9) | (1 << 14)))
