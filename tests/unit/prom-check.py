#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Checks Prometheus text format 0.0.4 beyond what promtool lints.

    prom-check.py FILE [--require NAME...]

Every histogram series: le strictly increasing, buckets cumulative
(non-decreasing), a final +Inf bucket equal to _count, a _sum.  Every
family has one HELP and one TYPE before its samples and its samples are
contiguous; counters end in _total.  --require: these families must be
present with at least one sample.  Prints what is wrong and exits 1.
"""
import math
import re
import sys

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def main(argv):
    path, req = argv[1], []
    if len(argv) > 2 and argv[2] == '--require':
        req = argv[3:]
    errors = []
    types, helps, seen_families, samples = {}, {}, [], {}
    current = None
    for n, line in enumerate(open(path), 1):
        line = line.rstrip('\n')
        if line.startswith('# HELP '):
            name = line.split()[2]
            if name in helps:
                errors.append(f'{n}: second HELP for {name}')
            helps[name] = True
            continue
        if line.startswith('# TYPE '):
            _, _, name, typ = line.split()
            if name in types:
                errors.append(f'{n}: second TYPE for {name}')
            types[name] = typ
            if name in seen_families:
                errors.append(f'{n}: family {name} not contiguous')
            seen_families.append(name)
            current = name
            continue
        if not line or line.startswith('#'):
            continue
        m = SAMPLE.match(line)
        if not m:
            errors.append(f'{n}: not a sample: {line}')
            continue
        name, labels, value = m.group(1), dict(LABEL.findall(m.group(3) or '')), m.group(4)
        fam = name
        if types.get(current) == 'histogram':
            fam = re.sub(r'_(bucket|sum|count)$', '', name)
        if fam != current:
            errors.append(f'{n}: sample {name} outside its family (current {current})')
        try:
            v = float(value)
        except ValueError:
            errors.append(f'{n}: bad value {value}')
            continue
        samples.setdefault(fam, []).append((name, labels, v, n))

    for fam, typ in types.items():
        if fam not in helps:
            errors.append(f'{fam}: no HELP')
        if typ == 'counter' and not fam.endswith('_total'):
            errors.append(f'{fam}: counter without _total')
        if typ != 'histogram':
            continue
        series = {}
        for name, labels, v, n in samples.get(fam, []):
            key = tuple(sorted((k, x) for k, x in labels.items() if k != 'le'))
            s = series.setdefault(key, {'buckets': [], 'sum': None, 'count': None})
            if name.endswith('_bucket'):
                le = labels.get('le')
                s['buckets'].append((math.inf if le == '+Inf' else float(le), v, n))
            elif name.endswith('_sum'):
                s['sum'] = v
            else:
                s['count'] = v
        for key, s in series.items():
            b = s['buckets']
            where = f'{fam}{dict(key)}'
            if not b or b[-1][0] != math.inf:
                errors.append(f'{where}: no final +Inf bucket')
                continue
            for (le0, v0, _), (le1, v1, n1) in zip(b, b[1:]):
                if not le1 > le0:
                    errors.append(f'{where}: line {n1}: le {le1} not above {le0}')
                if v1 < v0:
                    errors.append(f'{where}: line {n1}: bucket {v1} below previous {v0} (not cumulative)')
            if s['count'] is None or b[-1][1] != s['count']:
                errors.append(f'{where}: +Inf {b[-1][1]} != _count {s["count"]}')
            if s['sum'] is None:
                errors.append(f'{where}: no _sum')
    for r in req:
        if not samples.get(r):
            errors.append(f'{r}: required, absent')
    for e in errors:
        print(f'{path}: {e}')
    if not errors:
        print(f'{path}: ok: {len(types)} families, '
              f'{sum(len(v) for v in samples.values())} samples')
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
