// SPDX-License-Identifier: GPL-2.0
/* dmuserd --config FILE: the file format of dmuserd@NAME.service. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "options.h"
#include "test.h"

/* A file holding text, in TMPDIR; its path in path (PATH_MAX). */
static void write_file(char *path, size_t len, const char *text)
{
	const char *dir = getenv("TMPDIR");
	int fd;

	snprintf(path, len, "%s/dmu-config.XXXXXX", dir && *dir ? dir : "/tmp");
	fd = mkstemp(path);
	REQUIRE(fd >= 0);
	REQUIRE(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	REQUIRE(close(fd) == 0);
}

static enum dmu_parse_result parse_with(struct dmu_options *o, const char *text,
					const char *before[], const char *after[])
{
	char path[4096], *argv[32];
	int argc = 0;
	enum dmu_parse_result r;

	write_file(path, sizeof(path), text);
	argv[argc++] = (char *)"dmuserd";
	for (; before && *before; before++)
		argv[argc++] = (char *)*before;
	argv[argc++] = (char *)"--config";
	argv[argc++] = path;
	for (; after && *after; after++)
		argv[argc++] = (char *)*after;
	argv[argc] = NULL;
	r = dmu_options_parse(argc, argv, o);
	unlink(path);
	return r;
}

TEST(config_file_sets_options)
{
	struct dmu_options o;
	const char *before[] = { "--name", "disk0", NULL };

	REQUIRE_EQ(parse_with(&o,
		"# dmuserd@disk0\n"
		"\n"
		"file /var/lib/dm-user/my disk.img  \n"	/* inner space kept, trailing dropped */
		"   threads=4\n"				/* indented, '=' form */
		"metrics   127.0.0.1:9180\r\n"		/* CRLF */
		"  # an indented comment\n"
		"direct\n"					/* no value */
		"recovery-ms = 10000\n"			/* blanks around '=' */
		"no-batch", before, NULL), DMU_PARSE_OK);	/* no final newline */
	CHECK_STR(o.name, "disk0");
	CHECK_STR(o.file, "/var/lib/dm-user/my disk.img");
	CHECK_EQ(o.threads, 4);
	CHECK(o.metrics.enabled);
	CHECK_STR(o.metrics.text, "127.0.0.1:9180");
	CHECK(o.direct);
	CHECK_EQ(o.recovery_ms, 10000);
	CHECK(o.no_batch);
	CHECK(!o.attach);
	dmu_options_free(&o);
}

/* Read where --config stands: the file overrides what precedes it, and what follows overrides the file. */
TEST(config_file_order_with_the_command_line)
{
	struct dmu_options o;
	const char *before[] = { "--name", "unit-name", "--threads", "2", NULL };
	const char *after[] = { "--threads", "8", NULL };

	REQUIRE_EQ(parse_with(&o, "name file-name\nfile /f\nthreads 3\n", before, after),
		   DMU_PARSE_OK);
	CHECK_STR(o.name, "file-name");
	CHECK_EQ(o.threads, 8);
	dmu_options_free(&o);

	REQUIRE_EQ(parse_with(&o, "file /f\nthreads 3\n", before, NULL), DMU_PARSE_OK);
	CHECK_STR(o.name, "unit-name");
	CHECK_EQ(o.threads, 3);
	dmu_options_free(&o);
}

TEST(config_file_errors)
{
	static const char *const bad[] = {
		"file /f\nthreads 4\nbogus 1\n",	/* unknown option */
		"file /f\n--threads 4\n",		/* dashes */
		"file /f\nFile /g\n",			/* options are lower case */
		"file /f\nthreads\n",			/* needs a value */
		"file /f\nthreads =  \n",		/* needs a value, blanks only */
		"file /f\ndirect yes\n",		/* takes none */
		"file /f\nthreads 0\n",			/* a bad value */
		"file /f\nthreads: 4\n",		/* not "option value" */
		"file /f\nconfig /etc/other.conf\n",	/* no nesting */
		"file /f\nhelp\n",
		"file /f\nversion\n",
		"file /f\nresize 1G\n",
		"file /f\nattach\nrecovery-ms 10\n",	/* checked as on the command line */
		"file /f\nname a/b\n",
	};
	const char *before[] = { "--name", "d0", NULL };
	struct dmu_options o;

	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse_with(&o, bad[i], before, NULL) != DMU_PARSE_ERROR)
			t_fail(__FILE__, __LINE__, "case %u accepted: \"%s\"", i, bad[i]);
		dmu_options_free(&o);
	}
}

TEST(config_file_missing_or_twice)
{
	struct dmu_options o;
	char *missing[] = { (char *)"dmuserd", (char *)"--name", (char *)"d0",
			    (char *)"--config", (char *)"/nonexistent/dm-user/d0.conf", NULL };
	const char *twice[] = { "--name", "d0", "-c", "/dev/null", NULL };

	CHECK_EQ(dmu_options_parse(5, missing, &o), DMU_PARSE_ERROR);
	dmu_options_free(&o);
	CHECK_EQ(parse_with(&o, "file /f\n", twice, NULL), DMU_PARSE_ERROR);
	dmu_options_free(&o);
	/* an empty file is a valid one: the command line must then say it all */
	const char *all[] = { "--name", "d0", "--file", "/f", NULL };
	CHECK_EQ(parse_with(&o, "", all, NULL), DMU_PARSE_OK);
	dmu_options_free(&o);
	const char *name_only[] = { "--name", "d0", NULL };
	CHECK_EQ(parse_with(&o, "# nothing\n", name_only, NULL), DMU_PARSE_ERROR);
	dmu_options_free(&o);
}
