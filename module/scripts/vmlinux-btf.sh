#!/bin/bash
# Extract the ELF vmlinux (with its .BTF section) from a compressed kernel
# image, for use as pahole's --btf_base when the headers ship no vmlinux.
#   vmlinux-btf.sh /boot/vmlinuz-<version> <output>
set -euo pipefail

image=$1 out=$2
[ -r "$image" ] || { echo "vmlinux-btf: cannot read $image" >&2; exit 1; }

try() { # <magic as grep -P bytes> <decompress command...>
	local magic=$1 off
	shift
	for off in $(LC_ALL=C grep -obUaP "$magic" "$image" | cut -d: -f1); do
		if tail -c +$((off + 1)) "$image" | "$@" >"$out.tmp" 2>/dev/null ||
		   [ -s "$out.tmp" ]; then
			# not grep -q: under pipefail, readelf killed by SIGPIPE
			# when grep stops early failed 1 run in 6 here
			if readelf -S "$out.tmp" 2>/dev/null | grep '\.BTF' >/dev/null; then
				mv "$out.tmp" "$out"
				return 0
			fi
		fi
	done
	return 1
}

try '\xfd\x37\x7a\x58\x5a\x00' xz -dc --single-stream ||
try '\x1f\x8b\x08' gzip -dc ||
try '\x28\xb5\x2f\xfd' zstd -dc ||
{ rm -f "$out.tmp"; echo "vmlinux-btf: no ELF with .BTF found in $image" >&2; exit 1; }
