// SPDX-License-Identifier: GPL-2.0
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend.h"
#include "options.h"
#include "test.h"

static uint64_t size_of(const char *text)
{
	uint64_t v = 0;

	REQUIRE(dmu_parse_size(text, &v) == 0);
	return v;
}

TEST(options_sizes_take_binary_suffixes)
{
	CHECK_EQ(size_of("0"), 0);
	CHECK_EQ(size_of("4096"), 4096);
	CHECK_EQ(size_of("4K"), 4096);
	CHECK_EQ(size_of("4k"), 4096);
	CHECK_EQ(size_of("64M"), 64ull << 20);
	CHECK_EQ(size_of("1G"), 1ull << 30);
	CHECK_EQ(size_of("2T"), 2ull << 40);
	CHECK_EQ(size_of("1GiB"), 1ull << 30);
	CHECK_EQ(size_of("8KB"), 8192);
}

TEST(options_bad_sizes_are_rejected)
{
	static const char *const bad[] = {
		"", "K", "-1", " 1", "1.5G", "12Q", "1GG", "1Gi", "1 G",
		"99999999999999999999", "17179869184G",
	};
	uint64_t v;

	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (dmu_parse_size(bad[i], &v) == 0)
			t_fail(__FILE__, __LINE__, "\"%s\" accepted as %" PRIu64, bad[i], v);
}

TEST(options_listen_defaults_to_loopback)
{
	char l[80];

	REQUIRE(dmu_parse_listen("9100", l, sizeof(l)) == 0);
	CHECK_STR(l, "127.0.0.1:9100");
	REQUIRE(dmu_parse_listen(":0", l, sizeof(l)) == 0);
	CHECK_STR(l, "127.0.0.1:0");
	REQUIRE(dmu_parse_listen("0.0.0.0:80", l, sizeof(l)) == 0);
	CHECK_STR(l, "0.0.0.0:80");
	REQUIRE(dmu_parse_listen("[::1]:9100", l, sizeof(l)) == 0);
	CHECK_STR(l, "[::1]:9100");
}

TEST(options_bad_listen_is_rejected)
{
	static const char *const bad[] = {
		"", ":", "host:80", "127.0.0.1:", "127.0.0.1:65536", "[::1]", "[::1]80",
		"::1:80", "1.2.3:80", "80x", "[1.2.3.4]:80", "127.0.0.1:-1",
	};
	char l[80];

	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (dmu_parse_listen(bad[i], l, sizeof(l)) == 0)
			t_fail(__FILE__, __LINE__, "\"%s\" accepted", bad[i]);
}

static enum dmu_parse_result parse(struct dmu_options *o, const char *const *args)
{
	char *argv[32];
	int argc = 0;

	argv[argc++] = (char *)"dmuserd";
	while (*args)
		argv[argc++] = (char *)*args++;
	argv[argc] = NULL;
	return dmu_options_parse(argc, argv, o);
}

TEST(options_full_command_line)
{
	struct dmu_options o;
	const char *args[] = {
		"--file", "/tmp/f", "--name", "d0", "--size", "1G", "--threads", "4",
		"--direct", "--read-only", "--ready-file", "/tmp/r", "--metrics",
		"127.0.0.1:9100", "--inject-delay-us", "250", "--no-batch", "--poll-us", "0", "--no-splice", NULL,
	};

	REQUIRE_EQ(parse(&o, args), DMU_PARSE_OK);
	CHECK_STR(o.file, "/tmp/f");
	CHECK_STR(o.name, "d0");
	CHECK_EQ(o.size, 1ull << 30);
	CHECK_EQ(o.threads, 4);
	CHECK(o.direct);
	CHECK(o.read_only);
	CHECK(!o.attach);
	CHECK_STR(o.ready_file, "/tmp/r");
	CHECK(o.metrics.enabled);
	CHECK_STR(o.metrics.text, "127.0.0.1:9100");
	CHECK_EQ(o.inject_delay_us, 250);
	CHECK(o.no_batch);
	CHECK_EQ(o.poll_us, 0);
	CHECK(o.no_splice);
}

TEST(options_defaults)
{
	struct dmu_options o;
	const char *args[] = { "-f", "/tmp/f", "-n", "d0", "--attach", NULL };

	REQUIRE_EQ(parse(&o, args), DMU_PARSE_OK);
	CHECK_EQ(o.size, 0);
	CHECK_EQ(o.threads, 1);
	CHECK(o.attach);
	CHECK(!o.metrics.enabled);
	CHECK(o.ready_file == NULL);
	CHECK(!o.no_batch);		/* batching is asked for by default */
	CHECK_EQ(o.poll_us, 50);	/* busy polling, 50 us */
	CHECK(!o.no_splice);		/* splicing where the backend can */

	const char *most[] = { "-f", "/tmp/f", "-n", "d0", "--poll-us", "1000000", NULL };
	CHECK_EQ(parse(&o, most), DMU_PARSE_OK);
	CHECK_EQ(o.poll_us, 1000000);

	const char *longest[] = {	/* the longest name: 64 characters */
		"-f", "/tmp/f", "-n",
		"x234567890123456789012345678901234567890123456789012345678901234", NULL,
	};
	CHECK_EQ(parse(&o, longest), DMU_PARSE_OK);
	CHECK_EQ(strlen(o.name), 64);
}

TEST(options_usage_errors)
{
	static const char *const cases[][8] = {
		{ NULL },
		{ "--file", "/tmp/f", NULL },
		{ "--name", "d0", NULL },
		{ "-f", "/tmp/f", "-n", "d0", "--size", "1000", NULL },
		{ "-f", "/tmp/f", "-n", "d0", "--size", "0", NULL },
		{ "-f", "/tmp/f", "-n", "d0", "--threads", "0", NULL },
		{ "-f", "/tmp/f", "-n", "d0", "--threads", "257", NULL },
		{ "-f", "/tmp/f", "-n", "a/b", NULL },
		{ "-f", "/tmp/f", "-n", "d0", "--bogus", NULL },
		{ "-f", "/tmp/f", "-n", "d0", "extra", NULL },
		{ "-f", "/tmp/f", "-n", "d0", "--metrics", "nope", NULL },
		{ "-f", "/tmp/f", "-n", "d0", "--size", NULL },
		{ "-f", "/tmp/f", "-n", "d0", "--no-batch=1", NULL },
		{ "-f", "/tmp/f", "-n", "d0", "--poll-us", "1000001", NULL },
		{ "-f", "/tmp/f", "-n", "d0", "--poll-us", "-1", NULL },
		{ "-f", "/tmp/f", "-n", "x2345678901234567890123456789012345678901234567890123456789012345", NULL },
	};
	struct dmu_options o;

	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (parse(&o, cases[i]) != DMU_PARSE_ERROR)
			t_fail(__FILE__, __LINE__, "case %u accepted", i);
}

TEST(options_backend_uri_chooses_the_backend)
{
	struct dmu_options o;
	const char *file_uri[] = { "--backend", "file:/tmp/f", "-n", "d0", NULL };
	const char *file_opt[] = { "-f", "/tmp/f", "-n", "d0", NULL };
	const char *nbd[] = { "-b", "nbd+unix:///e?socket=/run/s", "-n", "d0", "-t", "2", NULL };

	REQUIRE_EQ(parse(&o, file_uri), DMU_PARSE_OK);
	REQUIRE(o.type != NULL);
	CHECK_STR(o.type->name, "file");
	CHECK_STR(o.file, "/tmp/f");
	REQUIRE_EQ(parse(&o, file_opt), DMU_PARSE_OK);	/* --file: the same */
	REQUIRE(o.type != NULL);
	CHECK_STR(o.type->name, "file");
	CHECK_STR(o.file, "/tmp/f");
	REQUIRE_EQ(parse(&o, nbd), DMU_PARSE_OK);
	REQUIRE(o.type != NULL);
	CHECK_STR(o.type->name, "nbd");
	CHECK_STR(o.backend, "nbd+unix:///e?socket=/run/s");
	CHECK(o.file == NULL);

	static const char *const bad[][8] = {
		{ "--backend", "file:/tmp/f", "--file", "/tmp/f", "-n", "d0", NULL },	/* both */
		{ "--backend", "file:/tmp/f", "-n", "d0", "--reconnect-ms", "100", NULL },	/* remote backends' */
		{ "--backend", "ftp://h/x", "-n", "d0", NULL },
		{ "--backend", "/tmp/f", "-n", "d0", NULL },		/* no scheme */
		{ "--backend", "file:", "-n", "d0", NULL },
		{ "--backend", "nbd://h/e", "-n", "d0", "--resize", "1G", NULL },
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (parse(&o, bad[i]) != DMU_PARSE_ERROR)
			t_fail(__FILE__, __LINE__, "backend case %u accepted", i);
}

TEST(options_table_options)
{
	struct dmu_options o;
	const char *args[] = {
		"-f", "/tmp/f", "-n", "d0", "--queue-depth", "64", "--timeout-ms", "30000",
		"--recovery-ms", "4294967295", NULL,
	};
	const char *none[] = { "-f", "/tmp/f", "-n", "d0", NULL };

	REQUIRE_EQ(parse(&o, args), DMU_PARSE_OK);
	CHECK_EQ(o.queue_depth, 64);
	CHECK_EQ(o.timeout_ms, 30000);
	CHECK_EQ(o.recovery_ms, 4294967295u);
	REQUIRE_EQ(parse(&o, none), DMU_PARSE_OK);
	CHECK_EQ(o.queue_depth, 0);
	CHECK_EQ(o.timeout_ms, 0);
	CHECK_EQ(o.recovery_ms, 0);

	static const char *const bad[][8] = {
		/* the table of an attached device is already there */
		{ "-f", "/tmp/f", "-n", "d0", "--attach", "--recovery-ms", "1000", NULL },
		{ "-f", "/tmp/f", "-n", "d0", "--timeout-ms", "10", "-a", NULL },
		{ "-f", "/tmp/f", "-n", "d0", "--queue-depth", "0", "--attach", NULL },
		{ "-f", "/tmp/f", "-n", "d0", "--queue-depth", "4294967296", NULL },
		{ "-f", "/tmp/f", "-n", "d0", "--timeout-ms", "-1", NULL },
		{ "-f", "/tmp/f", "-n", "d0", "--recovery-ms", "1s", NULL },
		{ "-f", "/tmp/f", "-n", "d0", "--queue-depth", NULL },
		{ "-n", "d0", "--resize", "1G", "--timeout-ms", "5", NULL },
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (parse(&o, bad[i]) != DMU_PARSE_ERROR)
			t_fail(__FILE__, __LINE__, "table option case %u accepted", i);
}

TEST(options_reconnect_ms)
{
	struct dmu_options o;
	const char *nbd[] = { "--backend", "nbd://h/e", "-n", "d0", "--reconnect-ms", "2500", NULL };
	const char *attach[] = { "--backend", "nbd://h/e", "-n", "d0", "--attach",
				 "--reconnect-ms", "0", NULL };
	const char *none[] = { "--backend", "nbd://h/e", "-n", "d0", NULL };

	REQUIRE_EQ(parse(&o, nbd), DMU_PARSE_OK);
	CHECK_EQ(o.reconnect_ms, 2500);
	CHECK(o.reconnect_ms_set);
	/* not a table option: fine with --attach; 0 is a value, not "unset" */
	REQUIRE_EQ(parse(&o, attach), DMU_PARSE_OK);
	CHECK_EQ(o.reconnect_ms, 0);
	CHECK(o.reconnect_ms_set);
	REQUIRE_EQ(parse(&o, none), DMU_PARSE_OK);
	CHECK(!o.reconnect_ms_set);	/* the table's recovery_ms decides */
	const char *rbd[] = { "--backend", "rbd:pool/image", "-n", "d0", "--reconnect-ms", "60000", NULL };

	REQUIRE_EQ(parse(&o, rbd), DMU_PARSE_OK);	/* RBD's window too */
	CHECK_EQ(o.reconnect_ms, 60000);

	static const char *const bad[][8] = {
		{ "-f", "/tmp/f", "-n", "d0", "--reconnect-ms", "100", NULL },	/* no server */
		{ "--backend", "nbd://h/e", "-n", "d0", "--reconnect-ms", "1s", NULL },
		{ "--backend", "nbd://h/e", "-n", "d0", "--reconnect-ms", "4294967296", NULL },
		{ "--backend", "nbd://h/e", "-n", "d0", "--reconnect-ms", NULL },
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (parse(&o, bad[i]) != DMU_PARSE_ERROR)
			t_fail(__FILE__, __LINE__, "reconnect-ms case %u accepted", i);
}

TEST(options_resize_is_a_command_of_its_own)
{
	struct dmu_options o;
	const char *bare[] = { "--name", "d0", "--resize", "2G", NULL };
	const char *with_file[] = { "-n", "d0", "-f", "/tmp/f", "--resize", "1048576", NULL };

	REQUIRE_EQ(parse(&o, bare), DMU_PARSE_OK);
	CHECK_EQ(o.resize, 2ull << 30);
	CHECK_STR(o.name, "d0");
	CHECK(o.file == NULL);
	REQUIRE_EQ(parse(&o, with_file), DMU_PARSE_OK);
	CHECK_EQ(o.resize, 1 << 20);
	CHECK_STR(o.file, "/tmp/f");

	static const char *const bad[][10] = {
		{ "--resize", "1G", NULL },				/* no name */
		{ "-n", "d0", "--resize", "1000", NULL },		/* not sectors */
		{ "-n", "d0", "--resize", "0", NULL },
		{ "-n", "d0", "--resize", "1Q", NULL },
		{ "-n", "d0", "--resize", "1G", "--threads", "2", NULL },
		{ "-n", "d0", "--resize", "1G", "--attach", NULL },
		{ "-n", "d0", "--resize", "1G", "--size", "1G", NULL },
		{ "-f", "/tmp/f", "-n", "d0", "--resize", "1G", "--ready-file", "/tmp/r", NULL },
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (parse(&o, bad[i]) != DMU_PARSE_ERROR)
			t_fail(__FILE__, __LINE__, "resize case %u accepted", i);
}

TEST(options_help_documents_every_option)
{
	static const char *const flags[] = {
		"--backend", "--file", "--name", "--size", "--threads", "--direct", "--read-only",
		"--attach", "--ready-file", "--metrics", "--no-batch", "--poll-us",
		"--inject-delay-us", "--resize", "--help", "--version",
		"--queue-depth", "--timeout-ms", "--recovery-ms", "--reconnect-ms", "--config",
	};
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);

	REQUIRE(out != NULL);
	dmu_usage(out);
	REQUIRE(fclose(out) == 0);
	for (unsigned i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		if (!strstr(text, flags[i]))
			t_fail(__FILE__, __LINE__, "--help does not mention %s", flags[i]);
	free(text);
}

static char *run_capture(const char *cmd)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	FILE *p = popen(cmd, "r");
	char buf[4096];
	size_t n;

	REQUIRE(out != NULL && p != NULL);
	while ((n = fread(buf, 1, sizeof(buf), p)) > 0)
		fwrite(buf, 1, n, out);
	REQUIRE(pclose(p) == 0);
	REQUIRE(fclose(out) == 0);
	return text;
}

/* dmuserd(8) renders without warnings and names every option --help names. */
TEST(options_man_page_documents_every_option)
{
	const char *page = getenv("DMU_MANPAGE");
	char cmd[512], *usage = NULL, *warnings, *text;
	size_t len = 0;

	if (!page)
		SKIP("DMU_MANPAGE not set");
	if (system("command -v man >/dev/null && command -v col >/dev/null"))
		SKIP("man or col not installed");
	snprintf(cmd, sizeof(cmd), "MANWIDTH=80 man --warnings -l '%s' 2>&1 >/dev/null", page);
	warnings = run_capture(cmd);
	CHECK_STR(warnings, "");
	snprintf(cmd, sizeof(cmd), "MANWIDTH=200 man -l '%s' 2>/dev/null | col -b", page);
	text = run_capture(cmd);

	FILE *out = open_memstream(&usage, &len);
	REQUIRE(out != NULL);
	dmu_usage(out);
	REQUIRE(fclose(out) == 0);
	unsigned flags = 0;
	for (const char *p = usage; (p = strstr(p, "--")); ) {
		char flag[64];
		size_t n = strspn(p + 2, "abcdefghijklmnopqrstuvwxyz-") + 2;

		if (n > 2 && n < sizeof(flag)) {
			memcpy(flag, p, n);
			flag[n] = '\0';
			flags++;
			if (!strstr(text, flag))
				t_fail(__FILE__, __LINE__, "dmuserd(8) does not mention %s", flag);
		}
		p += n;
	}
	CHECK(flags >= 18);
	free(warnings);
	free(text);
	free(usage);
}
