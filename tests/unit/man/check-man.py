#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The project's man pages against the programs they document.

The pages are written by hand (they carry prose --help cannot), so this is
what keeps them and --help from drifting:

  options_<prog>   the options in the OPTIONS section of the page are exactly
                   those the built program's --help lists, short and long.
                   A documented option --help hides is accepted only when the
                   program prints its --help for it (argp's hidden -h).
  defaults_<prog>  where --help states an option's default, the page's entry
                   for it states the same one.
  lint_<page>      mandoc -T lint -W warning, groff -ww -z and man --warnings
                   say nothing.
  render_<page>    lexgrog reads its NAME line, and man -l renders it with
                   NAME, SYNOPSIS and DESCRIPTION.

Usage: check-man.py ROOT [FILTER]; ends with "N passed, N failed, N skipped".
"""
import functools
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else '../../..')
FILTER = sys.argv[2] if len(sys.argv) > 2 else ''

# program (built in the tree) -> its page
PROGRAMS = {
    'dmuserd': ('daemon/dmuserd', 'daemon/dmuserd.8'),
    'dmuser-lat': ('bpf/dmuser-lat', 'bpf/dmuser-lat.8'),
    'dmuser-top': ('bpf/dmuser-top', 'bpf/dmuser-top.8'),
    'dmuser-exporter': ('bpf/dmuser-exporter', 'bpf/dmuser-exporter.8'),
    'dmuser-inflight': ('bpf/dmuser-inflight', 'bpf/dmuser-inflight.8'),
}
# every page `make install` installs
PAGES = ['daemon/dmuserd.8', 'bpf/dmuser-lat.8', 'bpf/dmuser-top.8',
         'bpf/dmuser-exporter.8', 'bpf/dmuser-inflight.8', 'module/dm-user.4',
         'lib/libdmuser.3']

ENV = dict(os.environ, LC_ALL='C', MANWIDTH='200')
ENV.pop('MANPAGER', None)
ENV.pop('PAGER', None)


class Fail(Exception):
    pass


def run(cmd, env=None, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, env=env or ENV, timeout=60, **kw)


def need(tool, package):
    if not shutil.which(tool):
        raise Fail(f'{tool} not found: install Debian\'s {package} (make deps)')


# ---- --help -----------------------------------------------------------------

OPT_LINE = re.compile(r'^ {2}(-[^-\s])(?:, (--[A-Za-z0-9][\w-]*))?(?=[\s=,]|$)'
                      r'|^ {6}(--[A-Za-z0-9][\w-]*)')


@functools.lru_cache(maxsize=None)
def help_text(binary):
    path = os.path.join(ROOT, binary)
    if not os.access(path, os.X_OK):
        raise Fail(f'{binary} is not built (make all)')
    r = run([path, '--help'], stdin=subprocess.DEVNULL)
    if r.returncode != 0 or not r.stdout:
        raise Fail(f'{binary} --help: exit {r.returncode}, stderr {r.stderr!r}')
    return r.stdout


def help_entries(text):
    """[(options, text)] for each entry of --help's option list."""
    entries = []
    for line in text.splitlines():
        m = OPT_LINE.match(line)
        if m:
            opts = [o for o in m.groups() if o]
            entries.append((opts, [line]))
        elif entries and line.startswith(' ' * 8) and line.strip():
            entries[-1][1].append(line)        # continuation of the description
        elif entries and not line.strip():
            entries.append(([], []))           # a blank line ends an entry
    return [(o, ' '.join(t)) for o, t in entries if o]


# ---- the page -----------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def render(page):
    r = run(['man', '--nh', '--nj', '-l', os.path.join(ROOT, page)])
    if r.returncode != 0:
        raise Fail(f'man -l {page}: exit {r.returncode}: {r.stderr}')
    return run(['col', '-bx'], input=r.stdout).stdout


def sections(text):
    out, name = {}, None
    for line in text.splitlines():
        if re.match(r'^[A-Z][A-Z ]*$', line):
            name = line.strip()
            out[name] = []
        elif name:
            out[name].append(line)
    return out


ARG = re.compile(r'^[A-Z][A-Z0-9_:\[\]]*$|^\[[A-Z]')


def tag_options(tag):
    """The options a tag names: the leading run of -x, --long[=ARG], ARG."""
    opts = []
    for tok in re.split(r',?\s+', tag.strip()):
        tok = tok.rstrip(',')
        if re.match(r'^--?[A-Za-z0-9?]', tok):
            opts.append(tok.split('=')[0])
        elif not ARG.match(tok):
            break
    return opts


def page_entries(page):
    """[(options, text)] for each tagged paragraph of the page's OPTIONS."""
    secs = sections(render(page))
    if 'OPTIONS' not in secs:
        raise Fail(f'{page} has no OPTIONS section')
    entries = []
    for line in secs['OPTIONS']:
        if re.match(r'^ {7}\S', line):         # a tag (with its body if short)
            entries.append((tag_options(line), [line.strip()]))
        elif entries and line.strip():
            entries[-1][1].append(line.strip())
    return [(o, ' '.join(t)) for o, t in entries if o]


# ---- defaults -----------------------------------------------------------------

WORD = r"[\w.:'/-]*\w"
DEFAULTS = [re.compile(r'\bdefault:?\s+(?:is\s+)?(?:the\s+)?(' + WORD + ')'),
            re.compile('(' + WORD + r')\s+\((?:the\s+)?default\)')]


def defaults(text):
    text = ' '.join(text.lower().split())
    return {m.group(1) for rx in DEFAULTS for m in rx.finditer(text)}


# ---- tests ----------------------------------------------------------------------

def test_options(prog):
    binary, page = PROGRAMS[prog]
    text = help_text(binary)
    have = {o for opts, _ in help_entries(text) for o in opts}
    if len([o for o in have if o.startswith('--')]) < 3:
        raise Fail(f'found only {sorted(have)} in {binary} --help: is the parser wrong?')
    documented = {o for opts, _ in page_entries(page) for o in opts}
    errors = [f'{page}: OPTIONS does not document {o} (in --help)'
              for o in sorted(have - documented)]
    for o in sorted(documented - have):
        # a hidden alias of --help (argp's -h) is an option the program has
        r = run([os.path.join(ROOT, binary), o], stdin=subprocess.DEVNULL)
        if r.returncode != 0 or r.stdout != text:
            errors.append(f'{page}: OPTIONS documents {o}, which {prog} --help does not list')
    if errors:
        raise Fail('\n'.join(errors))


def test_defaults(prog):
    binary, page = PROGRAMS[prog]
    entries = page_entries(page)
    errors, checked = [], 0
    for opts, text in help_entries(help_text(binary)):
        want = defaults(text)
        if not want:
            continue
        checked += 1
        key = opts[-1]
        got = [defaults(t) for o, t in entries if key in o]
        if not got:
            errors.append(f'{page}: no entry for {key}')
        elif got[0] != want:
            errors.append(f'{key}: --help says default {sorted(want)}, {page} says {sorted(got[0]) or "nothing"}')
    if not checked:
        raise Fail(f'{binary} --help states no default: is the parser wrong?')
    if errors:
        raise Fail('\n'.join(errors))


def test_lint(page):
    path = os.path.join(ROOT, page)
    need('mandoc', 'mandoc')
    need('groff', 'groff-base')
    errors = []
    r = run(['mandoc', '-T', 'lint', '-W', 'warning', path])
    if r.returncode or r.stdout or r.stderr:
        errors.append(f'mandoc -T lint (exit {r.returncode}):\n{r.stdout}{r.stderr}')
    r = run(['groff', '-t', '-man', '-ww', '-z', path])
    if r.returncode or r.stdout or r.stderr:
        errors.append(f'groff -ww (exit {r.returncode}):\n{r.stderr}')
    for width in ('80', '200'):
        r = run(['man', '--warnings', '-l', path], env=dict(ENV, MANWIDTH=width))
        if r.returncode or r.stderr:
            errors.append(f'man --warnings at width {width} (exit {r.returncode}):\n{r.stderr}')
    if errors:
        raise Fail('\n'.join(errors))


def test_render(page):
    path = os.path.join(ROOT, page)
    name = os.path.basename(page).rsplit('.', 1)[0]
    need('lexgrog', 'man-db')
    r = run(['lexgrog', path])
    if r.returncode or not re.search(r': "' + re.escape(name) + r' - \S', r.stdout):
        raise Fail(f'lexgrog cannot read the NAME line: {r.stdout}{r.stderr}')
    secs = sections(render(page))
    missing = [s for s in ('NAME', 'SYNOPSIS', 'DESCRIPTION', 'SEE ALSO')
               if not any(x.strip() for x in secs.get(s, []))]
    if missing:
        raise Fail(f'man -l renders no {", ".join(missing)}')


def main():
    tests = []
    for prog in PROGRAMS:
        tests.append((f'options_{prog}', test_options, prog))
        tests.append((f'defaults_{prog}', test_defaults, prog))
    for page in PAGES:
        base = os.path.basename(page)
        tests.append((f'lint_{base}', test_lint, page))
        tests.append((f'render_{base}', test_render, page))
    passed = failed = 0
    for name, fn, arg in tests:
        if FILTER not in name:
            continue
        try:
            fn(arg)
        except Fail as e:
            failed += 1
            print(f'FAIL {name}')
            for line in str(e).splitlines():
                print(f'    {line}')
        except Exception as e:                  # noqa: BLE001: a crash is a failure
            failed += 1
            print(f'FAIL {name}\n    {type(e).__name__}: {e}')
        else:
            passed += 1
            print(f'ok   {name}')
    print(f'{passed} passed, {failed} failed, 0 skipped')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
