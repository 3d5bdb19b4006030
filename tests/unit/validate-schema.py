#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Validate a JSON document against a JSON Schema.

usage: validate-schema.py SCHEMA [DOCUMENT|-]
exit 0: valid; 1: invalid (each error printed); 3: jsonschema is missing
(Debian: apt-get install python3-jsonschema).
"""
import json
import sys

try:
    import jsonschema
except ImportError:
    sys.stderr.write("validate-schema: the python3 jsonschema module is missing "
                     "(apt-get install python3-jsonschema)\n")
    sys.exit(3)


def main():
    if len(sys.argv) not in (2, 3):
        sys.stderr.write(__doc__)
        return 2
    with open(sys.argv[1]) as f:
        schema = json.load(f)
    if len(sys.argv) == 2 or sys.argv[2] == "-":
        doc = json.load(sys.stdin)
    else:
        with open(sys.argv[2]) as f:
            doc = json.load(f)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    errors = sorted(cls(schema).iter_errors(doc), key=lambda e: list(e.path))
    for e in errors:
        where = "/".join(str(p) for p in e.path) or "(root)"
        sys.stderr.write(f"validate-schema: {where}: {e.message}\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
