// SPDX-License-Identifier: GPL-2.0
#include "test.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>


#define MAX_TESTS 256
#define TIMEOUT_S 30
/* a child's exit status that says "skipped" (automake's convention) */
#define SKIP_STATUS 77

enum result { T_PASS, T_FAIL, T_SKIP };

static struct {
	const char *name;
	test_fn fn;
} tests[MAX_TESTS];
static unsigned ntests;
static bool failed;	/* in the child */

void t_register(const char *name, test_fn fn)
{
	if (ntests == MAX_TESTS) {
		fprintf(stderr, "too many tests\n");
		exit(2);
	}
	tests[ntests].name = name;
	tests[ntests].fn = fn;
	ntests++;
}

void t_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	failed = true;
	fprintf(stdout, "    %s:%d: check failed: ", file, line);
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

void t_skip(const char *fmt, ...)
{
	va_list ap;

	/* a test that failed a check before it skipped has failed */
	if (failed)
		t_abort();
	fprintf(stdout, "    skipped: ");
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
	_exit(SKIP_STATUS);
}

void t_abort(void)
{
	fflush(stdout);
	_exit(1);
}

static enum result run_one(unsigned i)
{
	int status;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		perror("fork");
		return T_FAIL;
	}
	if (pid == 0) {
		alarm(TIMEOUT_S);
		tests[i].fn();
		fflush(stdout);
		_exit(failed ? 1 : 0);
	}
	if (waitpid(pid, &status, 0) < 0)
		return T_FAIL;
	if (WIFSIGNALED(status))
		printf("    killed by signal %d%s\n", WTERMSIG(status),
		       WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
	if (!WIFEXITED(status))
		return T_FAIL;
	if (WEXITSTATUS(status) == SKIP_STATUS)
		return T_SKIP;
	return WEXITSTATUS(status) == 0 ? T_PASS : T_FAIL;
}

/* Usage: unit [SUBSTRING]  runs the tests whose name contains SUBSTRING. */
int main(int argc, char **argv)
{
	unsigned passed = 0, nfailed = 0, skipped = 0;

	if (test_quiet_logs)
		test_quiet_logs(getenv("DMU_TEST_VERBOSE") != NULL);
	for (unsigned i = 0; i < ntests; i++) {
		if (argc > 1 && !strstr(tests[i].name, argv[1]))
			continue;
		switch (run_one(i)) {
		case T_PASS:
			printf("ok   %s\n", tests[i].name);
			passed++;
			break;
		case T_SKIP:
			printf("SKIP %s\n", tests[i].name);
			skipped++;
			break;
		default:
			printf("FAIL %s\n", tests[i].name);
			nfailed++;
		}
	}
	if (test_suite_end)
		test_suite_end();
	printf("%u passed, %u failed, %u skipped\n", passed, nfailed, skipped);
	return nfailed ? 1 : 0;
}
