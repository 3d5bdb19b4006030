#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Checks of the built library, run by test_api.c (one test each):
#   tools.sh symbols   every exported symbol is dmu_* (a version DMUSER_1.N)
#   tools.sh header    the exported functions are exactly the header's DMU_API ones
#   tools.sh abi       the ABI equals lib/libdmuser.abi (abidiff); an incompatible
#                      change needs a soname bump, any change a new listing
#   tools.sh usdt      the four USDT probes of provider dmuser are in the library
#   tools.sh man       libdmuser(3) renders without warnings and names every function
#   tools.sh install   make install DESTDIR= PREFIX= works, and a program builds
#                      against the installed copy with pkg-config (libdmuser.so, and
#                      libdmuser.a with its dependencies shared)
#   tools.sh public    dmuserd, the examples and the unit tests use only the public
#                      header: no file of daemon/, examples/ or tests/unit/ includes
#                      internal.h, intree.h or a file of lib/ other than
#                      lib/include/dmuser.h, nor names a hidden dmu__* function
#                      (issue 16; bpf/dmuser-exporter itself may use intree.h)
set -euo pipefail

root=${DMU_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}
lib=$root/lib
so=$lib/libdmuser.so.1
header=$lib/include/dmuser.h

fail() { echo "    tools.sh $check: $*"; exit 1; }

# name of each dynamic symbol the library defines, without its version
exported() { nm -D --defined-only "$so" | awk '{ sub(/@.*/, "", $3); print $3 }'; }

check=${1:?usage: tools.sh symbols|header|abi|usdt|man|install|public}
case $check in
symbols)
	bad=$(exported | grep -v -x -e 'dmu_[a-z0-9_]*' -e 'DMUSER_1\.[0-9]*' || true)
	[[ -z $bad ]] || fail "exported outside dmu_*: $(echo "$bad" | tr '\n' ' ')"
	unversioned=$(nm -D --defined-only "$so" | awk '$3 ~ /^dmu_/ && $3 !~ /@@DMUSER_1\.[0-9]+$/ { print $3 }')
	[[ -z $unversioned ]] || fail "without a DMUSER_1.N version: $unversioned"
	;;
header)
	declared=$(grep -o '^DMU_API [^(]*(' "$header" | sed 's/.*[ *]\(dmu_[a-z0-9_]*\)($/\1/' | sort)
	diff <(echo "$declared") <(exported | grep '^dmu_' | sort) >/dev/null ||
		fail "header (<) and exports (>) differ: $(diff <(echo "$declared") <(exported | grep '^dmu_' | sort) | grep '^[<>]' | tr '\n' ' ')"
	;;
abi)
	listing=$lib/libdmuser.abi
	[[ -f $listing ]] || fail "no ABI listing $listing (make -C lib abi)"
	old_soname=$(sed -n "s/.*soname='\([^']*\)'.*/\1/p" "$listing" | head -n 1)
	new_soname=$(readelf -d "$so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	# the build's listing, made as the one in git was (abidiff filters
	# the public types of an abixml reliably, not those of a binary)
	make -s -C "$lib" abi ABI_OUT="$tmp/built.abi" >/dev/null
	rc=0
	out=$(abidiff "$listing" "$tmp/built.abi" 2>&1) || rc=$?
	((rc == 0)) && exit 0
	((rc & 3)) && fail "abidiff failed (status $rc): $out"
	if ((rc & 8)) && [[ $old_soname == "$new_soname" ]]; then
		fail "incompatible ABI change without a soname bump ($new_soname): $out"
	fi
	if [[ $old_soname == "$new_soname" ]]; then
		fail "the ABI changed without a soname bump ($new_soname). Only additions are compatible: then put new functions in a new version node of lib/libdmuser.map and update the listing (make -C lib abi); anything else needs SONAME_MAJOR bumped in lib/Makefile. abidiff: $out"
	fi
	fail "the soname changed ($old_soname -> $new_soname): update the listing (make -C lib abi). abidiff: $out"
	;;
usdt)
	notes=$(readelf -n "$so")
	for p in request_received backend_submitted backend_done reply_sent; do
		grep -A1 'Provider: dmuser' <<<"$notes" | grep -q "Name: $p\$" || fail "no USDT probe dmuser:$p"
	done
	;;
man)
	page=$lib/libdmuser.3
	[[ -f $page ]] || fail "no $page"
	warnings=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null) || fail "man failed: $warnings"
	[[ -z $warnings ]] || fail "man --warnings: $warnings"
	text=$(MANWIDTH=200 man -l "$page" 2>/dev/null | col -b)
	for f in $(exported | grep '^dmu_'); do
		grep -q "\\b$f\\b" <<<"$text" || fail "$f is not in libdmuser(3)"
	done
	;;
install)
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	make -s -C "$lib" install DESTDIR="$tmp/root" PREFIX=/usr >/dev/null
	for f in usr/include/dmuser.h usr/lib/libdmuser.so.1 usr/lib/libdmuser.so usr/lib/libdmuser.a \
		usr/lib/pkgconfig/libdmuser.pc usr/share/man/man3/libdmuser.3; do
		[[ -e $tmp/root/$f ]] || fail "make install did not install /$f"
	done
	cat >"$tmp/prog.c" <<'PROG'
#include <dmuser.h>
#include <stdio.h>
int main(void) { puts(dmu_version()); return 0; }
PROG
	export PKG_CONFIG_PATH=$tmp/root/usr/lib/pkgconfig
	pc() { pkg-config --define-variable=prefix="$tmp/root/usr" "$@"; }
	[[ $(pc --variable=libdir libdmuser) == "$tmp/root/usr/lib" ]] ||
		fail "libdmuser.pc's libdir is not under its prefix: $(pc --variable=libdir libdmuser)"
	# shellcheck disable=SC2046 # pkg-config's words
	cc -o "$tmp/prog" "$tmp/prog.c" $(pc --cflags --libs libdmuser) ||
		fail "cannot build against the installed library with pkg-config"
	out=$(LD_LIBRARY_PATH=$tmp/root/usr/lib "$tmp/prog") || fail "the program did not run"
	want=$(awk '/define DMU_VERSION_(MAJOR|MINOR|PATCH)/ { v = v sep $3; sep = "." } END { print v }' "$header")
	[[ $out == "$want" ]] || fail "installed library says $out, header $want"
	# shellcheck disable=SC2046
	cc -o "$tmp/prog-static" "$tmp/prog.c" $(pc --cflags libdmuser) "$tmp/root/usr/lib/libdmuser.a" \
		$(pkg-config --libs devmapper jansson libmicrohttpd) -pthread ||
		fail "cannot link libdmuser.a"
	[[ $("$tmp/prog-static") == "$want" ]] || fail "the static program did not run"
	;;
public)
	dirs=("$root/daemon" "$root/examples" "$root/tests/unit")
	[[ -n ${DMU_PUBLIC_DIRS:-} ]] && read -r -a dirs <<<"$DMU_PUBLIC_DIRS"
	files=$(find "${dirs[@]}" -name '*.[ch]' -not -path '*/build/*' -not -path '*/.out/*' | sort)
	[[ -n $files ]] || fail "no sources under ${dirs[*]}"
	inc='^[[:space:]]*#[[:space:]]*include[[:space:]]*["<]'
	lib_c=$(find "$lib" -maxdepth 1 -name '*.c' -printf '%f\n' | sed 's/\.c$//' | paste -sd'|')
	used="${inc}([^\">]*/)?(internal|intree)\\.h[\">]|${inc}([^\">]*/)?lib/[^\">]*[\">]|${inc}([^\">]*/)?(${lib_c})\\.c[\">]|\\bdmu__[a-z0-9_]+"
	public="^[^:]*:[0-9]+:${inc#^}([^\">]*/)?lib/include/dmuser\\.h[\">]"
	# shellcheck disable=SC2086 # one word per file
	bad=$(grep -HnE "$used" $files | grep -vE "$public" || true)
	[[ -z $bad ]] || fail "library internals used outside lib/: $(echo "${bad//$root\//}" | tr '\n' ' ')"
	;;
*)
	fail "unknown check"
	;;
esac
