// SPDX-License-Identifier: GPL-2.0
#include "schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

/* Run tests/unit/validate-schema.py on a document; returns its exit status. */
int validate_against_schema(const char *json_text, bool quiet)
{
	const char *schema = getenv("DMU_SCHEMA") ? getenv("DMU_SCHEMA") :
			     "../../daemon/metrics.schema.json";
	char path[] = "/tmp/dmu-unit-json-XXXXXX", cmd[1024];
	int fd = mkstemp(path);

	REQUIRE(fd >= 0);
	REQUIRE(write(fd, json_text, strlen(json_text)) == (ssize_t)strlen(json_text));
	close(fd);
	snprintf(cmd, sizeof(cmd), "python3 ./validate-schema.py %s %s%s", schema, path,
		 quiet ? " 2>/dev/null" : "");
	int status = system(cmd);
	unlink(path);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
		t_fail(__FILE__, __LINE__, "python3 jsonschema is missing: cannot validate");
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
