#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""dashboards/prometheus/prometheus.yml for a test: scrape every 2 s
(timeout 2 s: one scrape in a loaded emulated guest can take over a second,
and a missed scrape marks the series stale), evaluate every second, each
job's targets replaced.

    prom-config.py prometheus.yml JOB=ADDR:PORT...   (YAML on stdout)
"""
import sys

import yaml

conf = yaml.safe_load(open(sys.argv[1]))
targets = {}
for arg in sys.argv[2:]:
    job, target = arg.split('=', 1)
    targets.setdefault(job, []).append(target)
conf['global']['scrape_interval'] = '2s'
conf['global']['scrape_timeout'] = '2s'
conf['global']['evaluation_interval'] = '1s'
jobs = {j['job_name'] for j in conf['scrape_configs']}
missing = set(targets) - jobs
if missing:
    sys.exit(f'no job {sorted(missing)} in {sys.argv[1]}')
for job in conf['scrape_configs']:
    job['static_configs'] = [{'targets': targets.get(job['job_name'], [])}]
yaml.safe_dump(conf, sys.stdout, sort_keys=False)
