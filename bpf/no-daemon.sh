#!/bin/bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# no-daemon.sh BINARY INPUTS: fail if BINARY was built from anything under
# daemon/.  bpf/ builds from bpf/, lib/ (libdmuser.a) and the module's UAPI
# header only; dmuserd's sources are no library.  INPUTS is the linker's
# --trace output (every object, archive member and library it used); each
# object of bpf/ has a .d file (-MMD; one without fails) naming the source and every
# header its compile read, and a skeleton header brings in its BPF
# object's .d.  Any of those paths that resolves under daemon/ fails the
# build, and the binary is removed.
set -euo pipefail

bin=${1:?usage: no-daemon.sh BINARY INPUTS}
inputs=${2:?usage: no-daemon.sh BINARY INPUTS}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
daemon=$(realpath -m "$here/../daemon")

# the linker's inputs: "path", "(archive)member" or "lib (path)"
mapfile -t used < <(sed -e 's/^(\([^)]*\)).*/\1/' -e 's/.*(\(.*\))$/\1/' "$inputs")

# the words of .d files: paths, and targets with their colon
words() { sed -e 's/[\\]$//' "$@" | tr -s ' \t' '\n' | sed -e 's/:$//' -e '/^$/d'; }

# each object's .d, and the .d of each BPF object whose skeleton it included
deps=()
for f in "${used[@]}"; do
	d=${f%.o}.d
	[[ $f == *.o && $(realpath -m "$f") == "$here"/* ]] || continue
	if [[ ! -f $d ]]; then
		echo "bpf: $bin: no $d: what $f was built from is unknown" >&2
		rm -f "$bin"
		exit 1
	fi
	deps+=("$d")
	while read -r skel; do
		b=${skel%.skel.h}.bpf.d
		[[ -f $b ]] && deps+=("$b")
	done < <(words "$d" | grep '\.skel\.h$' | sort -u)
done

# every path: the inputs, and what the .d files name (relative to bpf/)
mapfile -t paths < <({
	printf '%s\n' "${used[@]}"
	if ((${#deps[@]})); then
		words "${deps[@]}"
	fi
} | sort -u)

bad=()
for p in "${paths[@]}"; do
	[[ $p == /* ]] || p=$here/$p
	r=$(realpath -m "$p")
	[[ $r == "$daemon" || $r == "$daemon"/* ]] && bad+=("$r")
done
if ((${#bad[@]})); then
	echo "bpf: $bin is built from daemon/ files, which bpf/ must not include or compile:" >&2
	printf '  %s\n' "${bad[@]}" >&2
	rm -f "$bin"
	exit 1
fi
