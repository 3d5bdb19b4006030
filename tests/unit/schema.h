/* SPDX-License-Identifier: GPL-2.0 */
#ifndef DMU_SCHEMA_H
#define DMU_SCHEMA_H

#include <stdbool.h>

/*
 * Validate a JSON document against daemon/metrics.schema.json ($DMU_SCHEMA)
 * with validate-schema.py.  Returns its exit status: 0 valid, 1 invalid.
 * quiet: hide the validator's messages (for documents meant to fail).
 */
int validate_against_schema(const char *json_text, bool quiet);

#endif
