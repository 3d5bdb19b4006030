#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Every PromQL expression of the Grafana dashboard, queried in a live
Prometheus with the variables substituted; each must return a series.

    query-dashboard.py PROM_URL DASHBOARD.json INSTANCE_REGEX DEVICE RATE_INTERVAL

Prints one line per expression ("ok N series" or "EMPTY"/"ERROR") and exits
1 if any returned nothing.  A NaN sample counts as a series (a quantile of
an op without requests); the test checks values of its own elsewhere.
"""
import json
import subprocess
import sys
import urllib.parse
import urllib.request

url, dash, instance, device, rate = sys.argv[1:6]
here = sys.argv[0].rsplit('/', 1)[0]
exprs = subprocess.run([f'{here}/../../tests/unit/dashboards/check-dashboard.py', '--exprs', dash],
                       check=True, capture_output=True, text=True).stdout.splitlines()
bad = 0
for e in exprs:
    q = (e.replace('$__rate_interval', rate).replace('$instance', instance)
          .replace('$device', device))
    try:
        with urllib.request.urlopen(f'{url}/api/v1/query?' + urllib.parse.urlencode({'query': q}),
                                    timeout=30) as r:
            res = json.load(r)
        n = len(res['data']['result']) if res.get('status') == 'success' else -1
    except Exception as ex:  # an HTTP 400 is a PromQL error
        n, res = -1, str(ex)
    if n > 0:
        print(f'ok {n:3d} series: {q}')
    else:
        bad += 1
        print(f'{"EMPTY" if n == 0 else "ERROR"}: {q}' + ('' if n == 0 else f': {res}'))
print(f'{len(exprs) - bad} of {len(exprs)} expressions returned data')
sys.exit(1 if bad else 0)
