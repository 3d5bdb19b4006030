#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Structure of dashboards/grafana/dm-user.json (no Grafana needed).

    check-dashboard.py DASHBOARD.json      checks; prints "N passed, N failed"
    check-dashboard.py --exprs DASHBOARD.json
        prints every PromQL expression, one per line: panel targets and
        template-variable queries (label_values(SELECTOR, LABEL) becomes
        "count by (LABEL) (SELECTOR)", the query Grafana runs for it).
        The VM test 410 queries each of them in a live Prometheus.
"""
import json
import re
import sys

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f'FAIL {what}')


def variable_exprs(dash):
    out = []
    for v in dash['templating']['list']:
        if v.get('type') != 'query':
            continue
        q = v['query']['query'] if isinstance(v['query'], dict) else v['query']
        m = re.fullmatch(r'label_values\((.*),\s*(\w+)\)', q)
        out.append(f'count by ({m.group(2)}) ({m.group(1)})' if m else q)
    return out


def panel_exprs(dash):
    return [(p, t['expr']) for p in dash['panels'] for t in p.get('targets', [])]


def main(argv):
    if argv[1] == '--exprs':
        dash = json.load(open(argv[2]))
        for e in variable_exprs(dash) + [e for _, e in panel_exprs(dash)]:
            print(' '.join(e.split()))
        return 0

    dash = json.load(open(argv[1]))
    check(dash.get('schemaVersion', 0) >= 39, f'schemaVersion {dash.get("schemaVersion")} is current (>= 39)')
    check(dash.get('uid') == 'dm-user', 'uid is dm-user')
    check(dash.get('__inputs') == [], 'no __inputs: importable without a datasource mapping')
    var = {v['name']: v for v in dash['templating']['list']}
    check(var.get('datasource', {}).get('type') == 'datasource'
          and var['datasource'].get('query') == 'prometheus', 'a Prometheus datasource variable')
    for name in ('instance', 'device'):
        v = var.get(name, {})
        check(v.get('type') == 'query' and v.get('multi') and v.get('includeAll'),
              f'variable {name}: a multi-value query with All')
        check(v.get('datasource', {}).get('uid') == '${datasource}', f'variable {name} uses ${{datasource}}')

    ids = [p['id'] for p in dash['panels']]
    check(len(ids) == len(set(ids)), 'panel ids are unique')
    for p in dash['panels']:
        if p['type'] == 'row':
            continue
        check(p.get('datasource', {}).get('uid') == '${datasource}', f'panel "{p["title"]}" uses ${{datasource}}')
        g = p['gridPos']
        check(g['x'] + g['w'] <= 24, f'panel "{p["title"]}" fits the grid')
        for t in p['targets']:
            check(t.get('datasource', {}).get('uid') == '${datasource}', f'target of "{p["title"]}" uses ${{datasource}}')
            check(t['expr'].count('(') == t['expr'].count(')'), f'balanced parentheses: {t["expr"]}')
            for m in re.finditer(r'\{([^}]*)\}', t['expr']):
                sel = m.group(1)
                if 'dmuser_' in t['expr'] and 'job=' not in sel and sel:
                    check('$instance' in sel, f'"{p["title"]}": selector {{{sel}}} filters by $instance')

    exprs = panel_exprs(dash)
    def panel_with(typ, *needles):
        return any(p['type'] == typ and all(n in e for n in needles) for p, e in exprs)
    # what the issue asks for, per device
    for op_metric in ('dmuser_kernel_requests_total', 'dmuser_kernel_request_bytes_total'):
        check(panel_with('timeseries', f'rate({op_metric}', 'by (device, op)', 'device=~"$device"'),
              f'{op_metric}: a per-device, per-op rate panel')
    for stage in ('queue', 'daemon', 'total'):
        check(any(p['type'] == 'heatmap' and f'stage="{stage}"' in e and '_bucket' in e
                  and 'by (le)' in e and any(t.get('format') == 'heatmap' for t in p['targets'])
                  for p, e in exprs), f'a latency heatmap of the {stage} stage')
        for phi in ('0.5', '0.99', '0.999'):
            check(panel_with('timeseries', f'histogram_quantile({phi},', 'dmuser_stage_latency_seconds_bucket',
                             f'stage="{stage}"'), f'p{phi} of the {stage} stage')
    check(panel_with('timeseries', 'dmuser_queue_depth'), 'a queue-depth panel')
    check(panel_with('timeseries', 'dmuser_in_flight'), 'an in-flight panel')
    check(panel_with('timeseries', 'dmuser_errors_total'), 'an errors panel')
    check(panel_with('timeseries', 'dmuser_timeouts_total'), 'a timeouts panel')
    for phi in ('0.5', '0.99', '0.999'):
        check(panel_with('timeseries', f'histogram_quantile({phi},', 'dmuser_request_duration_seconds_bucket'),
              f'daemon service latency p{phi}')
    check(all('[$__rate_interval]' in e for _, e in exprs if 'rate(' in e), 'rates use $__rate_interval')
    check(len(variable_exprs(dash)) == 2, 'two query variables')
    print(f'{passed} passed, {failed} failed')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
