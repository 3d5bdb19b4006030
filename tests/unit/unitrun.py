# SPDX-License-Identifier: GPL-2.0
"""The runner of the Python host unit suites (tests/unit/*/): one line per
test, "PASS name" (or OK's word), "FAIL name" or "SKIP name", then
"N passed, N failed, N skipped", the line tests/check.sh counts."""
import sys
import unittest


def run(module, name_filter=None, ok="PASS"):
    """Runs the tests of module whose id contains name_filter; 1 if any failed."""
    tests = []

    def flatten(s):
        for t in s:
            if isinstance(t, unittest.TestSuite):
                flatten(t)
            else:
                tests.append(t)
    flatten(unittest.defaultTestLoader.loadTestsFromModule(module))
    if name_filter:
        tests = [t for t in tests if name_filter in t.id()]
    result = unittest.TextTestRunner(stream=sys.stdout, verbosity=0).run(unittest.TestSuite(tests))
    bad = {t.id() for t, _ in result.failures + result.errors}
    skipped = {t.id() for t, _ in result.skipped}
    for t in tests:
        kind = "FAIL" if t.id() in bad else "SKIP" if t.id() in skipped else ok
        print(f"{kind} {t.id().split('.', 1)[1]}")
    print(f"{result.testsRun - len(bad) - len(skipped)} passed, {len(bad)} failed, {len(skipped)} skipped")
    return 1 if bad else 0
