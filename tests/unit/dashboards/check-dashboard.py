#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Host checks of dashboards/ (no Grafana needed).

    check-dashboard.py DASHBOARDS-DIR [NAME-SUBSTRING]
        runs the tests; one line per test, then "N passed, N failed, N skipped"
    check-dashboard.py --exprs DASHBOARD.json
        prints every PromQL expression, one per line: panel targets and
        template-variable queries (label_values(SELECTOR, LABEL) becomes
        "count by (LABEL) (SELECTOR)", the query Grafana runs for it).
        The VM test 410 queries each of them in a live Prometheus.

Each test counts once, whatever it asserts: the structure of
grafana/dm-user.json, the metric names it and the rules use (each must be
one that dmuserd or dmuser-exporter exports, as their READMEs' metric tables
list them), and promtool's checks of the rules, the scrape configuration and
the rules' unit tests.
"""
import json
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import unitrun  # noqa: E402  (tests/unit/unitrun.py)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
DASH_DIR = os.path.join(ROOT, 'dashboards')


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


def exported_metrics():
    """The metric families dmuserd and dmuser-exporter document as exported."""
    names = set()
    for readme in ('daemon/README.md', 'bpf/README.md'):
        for line in open(os.path.join(ROOT, readme)):
            m = re.match(r'\|\s*`(dmuser_[a-z0-9_]+)', line)
            if m:
                names.add(m.group(1))
    return names


def family(name):
    """dmuser_x_bucket -> dmuser_x (histogram series), else the name."""
    return re.sub(r'_(bucket|sum|count)$', '', name)


class Dashboard(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(os.path.join(DASH_DIR, 'grafana', 'dm-user.json')) as f:
            cls.dash = json.load(f)
        cls.exprs = panel_exprs(cls.dash)
        cls.var = {v['name']: v for v in cls.dash['templating']['list']}

    def panel_with(self, typ, *needles):
        return any(p['type'] == typ and all(n in e for n in needles) for p, e in self.exprs)

    def test_metadata(self):
        self.assertGreaterEqual(self.dash.get('schemaVersion', 0), 39, 'schemaVersion is current')
        self.assertEqual(self.dash.get('uid'), 'dm-user')
        self.assertEqual(self.dash.get('__inputs'), [], 'importable without a datasource mapping')

    def test_variables(self):
        ds = self.var.get('datasource', {})
        self.assertEqual(ds.get('type'), 'datasource')
        self.assertEqual(ds.get('query'), 'prometheus')
        for name in ('instance', 'device'):
            v = self.var.get(name, {})
            self.assertTrue(v.get('type') == 'query' and v.get('multi') and v.get('includeAll'),
                            f'variable {name}: a multi-value query with All')
            self.assertEqual(v.get('datasource', {}).get('uid'), '${datasource}', name)
        self.assertEqual(len(variable_exprs(self.dash)), 2, 'two query variables')

    def test_panels_use_the_datasource_and_fit_the_grid(self):
        ids = [p['id'] for p in self.dash['panels']]
        self.assertEqual(len(ids), len(set(ids)), 'panel ids are unique')
        for p in self.dash['panels']:
            if p['type'] == 'row':
                continue
            self.assertEqual(p.get('datasource', {}).get('uid'), '${datasource}', p['title'])
            g = p['gridPos']
            self.assertLessEqual(g['x'] + g['w'], 24, f'panel "{p["title"]}" fits the grid')
            for t in p['targets']:
                self.assertEqual(t.get('datasource', {}).get('uid'), '${datasource}', p['title'])

    def test_selectors_filter_by_instance(self):
        for p, e in self.exprs:
            self.assertEqual(e.count('('), e.count(')'), f'balanced parentheses: {e}')
            for m in re.finditer(r'\{([^}]*)\}', e):
                sel = m.group(1)
                if 'dmuser_' in e and 'job=' not in sel and sel:
                    self.assertIn('$instance', sel, f'"{p["title"]}": selector {{{sel}}}')

    def test_kernel_rate_panels(self):
        for m in ('dmuser_kernel_requests_total', 'dmuser_kernel_request_bytes_total'):
            self.assertTrue(self.panel_with('timeseries', f'rate({m}', 'by (device, op)',
                                            'device=~"$device"'), f'{m}: per-device, per-op rates')

    def test_latency_heatmaps_and_quantiles(self):
        for stage in ('queue', 'daemon', 'total'):
            self.assertTrue(any(p['type'] == 'heatmap' and f'stage="{stage}"' in e and '_bucket' in e
                                and 'by (le)' in e and any(t.get('format') == 'heatmap' for t in p['targets'])
                                for p, e in self.exprs), f'a latency heatmap of the {stage} stage')
            for phi in ('0.5', '0.99', '0.999'):
                self.assertTrue(self.panel_with('timeseries', f'histogram_quantile({phi},',
                                                'dmuser_stage_latency_seconds_bucket', f'stage="{stage}"'),
                                f'p{phi} of the {stage} stage')

    def test_depth_in_flight_error_panels(self):
        for m in ('dmuser_kernel_queued_requests_at_map', 'dmuser_kernel_queued_requests',
                  'dmuser_kernel_in_flight_requests_at_map', 'dmuser_kernel_in_flight_requests',
                  'dmuser_kernel_errors_total', 'dmuser_kernel_timeouts_total'):
            self.assertTrue(self.panel_with('timeseries', m), f'a panel of {m}')

    def test_saturation_and_stall_panels(self):
        # issue 20: both sources export these (the exporter with device,
        # dmuserd without, joined to dmuser_info for it): a panel shows each
        for m in ('dmuser_kernel_oldest_request_age_seconds', 'dmuser_kernel_stalls_total',
                  'dmuser_kernel_depth_waits_total', 'dmuser_kernel_depth_wait_seconds_total',
                  'dmuser_kernel_queued_requests_hwm', 'dmuser_kernel_in_flight_requests_hwm'):
            self.assertTrue(self.panel_with('timeseries', m + '{', 'device=~"$device"}'),
                            f'{m}: a panel of the exporter\'s per-device series')
            self.assertTrue(self.panel_with('timeseries', m + '{', 'group_left (device) dmuser_info'),
                            f'{m}: a panel of dmuserd\'s, named by dmuser_info')

    def test_daemon_latency_panels(self):
        for phi in ('0.5', '0.99', '0.999'):
            self.assertTrue(self.panel_with('timeseries', f'histogram_quantile({phi},',
                                            'dmuser_request_duration_seconds_bucket'),
                            f'daemon service latency p{phi}')

    def test_rates_use_rate_interval(self):
        for _, e in self.exprs:
            if 'rate(' in e:
                self.assertIn('[$__rate_interval]', e)

    def test_every_metric_is_exported(self):
        known = exported_metrics()
        self.assertIn('dmuser_kernel_requests_total', known, 'the READMEs list the metrics')
        used = set()
        for e in variable_exprs(self.dash) + [e for _, e in self.exprs]:
            used |= set(re.findall(r'\bdmuser_[a-z0-9_]+', e))
        unknown = sorted(n for n in used if family(n) not in known)
        self.assertEqual(unknown, [], 'metrics the dashboard uses that nothing exports')


class Rules(unittest.TestCase):
    def promtool(self, *args):
        r = subprocess.run(['promtool', *args], cwd=os.path.join(DASH_DIR, 'prometheus'),
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, f'promtool {" ".join(args)}:\n{r.stdout}{r.stderr}')
        return r.stdout

    def test_check_rules(self):
        self.promtool('check', 'rules', 'dm-user.rules.yml')

    def test_check_config(self):
        self.promtool('check', 'config', 'prometheus.yml')

    def test_rules_unit_tests(self):
        out = self.promtool('test', 'rules', 'dm-user.rules.test.yml')
        self.assertIn('SUCCESS', out)

    def test_every_metric_is_exported(self):
        known = exported_metrics()
        text = open(os.path.join(DASH_DIR, 'prometheus', 'dm-user.rules.yml')).read()
        # recording rule names (level:metric:ops) are not exported metrics
        used = set(re.findall(r'(?<![:\w])dmuser_[a-z0-9_]+(?![:\w])', text))
        unknown = sorted(n for n in used if family(n) not in known)
        self.assertEqual(unknown, [], 'metrics the rules use that nothing exports')


def main(argv):
    global DASH_DIR
    if len(argv) > 2 and argv[1] == '--exprs':
        dash = json.load(open(argv[2]))
        for e in variable_exprs(dash) + [e for _, e in panel_exprs(dash)]:
            print(' '.join(e.split()))
        return 0
    if len(argv) > 1:
        DASH_DIR = os.path.abspath(argv[1])
    return unitrun.run(sys.modules[__name__], argv[2] if len(argv) > 2 else None, ok='ok  ')


if __name__ == '__main__':
    sys.exit(main(sys.argv))
