// SPDX-License-Identifier: GPL-2.0
/*
 * The ready file: dmuserd runs as root and writes it where the user says,
 * often a shared directory such as /tmp or /run.  A temporary name that
 * can be guessed lets another user plant a symlink there and have dmuserd
 * write through it into any file.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ready.h"
#include "test.h"

static char *slurp(const char *path)
{
	static char buf[4096];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return NULL;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return NULL;
	buf[n] = '\0';
	return buf;
}

static unsigned entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	unsigned n = 0;

	REQUIRE(d != NULL);
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

static void make_dir(char *dir)
{
	REQUIRE(mkdtemp(dir) != NULL);
}

static void remove_dir(const char *dir)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK(system(cmd) == 0);
}

TEST(ready_file_is_written_and_replaced)
{
	char dir[] = "/tmp/dmu-ready-XXXXXX", path[128];
	struct stat st;

	make_dir(dir);
	snprintf(path, sizeof(path), "%s/ready", dir);
	REQUIRE(dmu_ready_write(path, "pid=1\nname=a\n") == 0);
	CHECK_STR(slurp(path), "pid=1\nname=a\n");
	REQUIRE(dmu_ready_write(path, "pid=2\n") == 0);
	CHECK_STR(slurp(path), "pid=2\n");
	REQUIRE(stat(path, &st) == 0);
	CHECK_EQ(st.st_mode & 07777, 0644);
	CHECK_EQ(entries(dir), 1);		/* no temporary file left */
	remove_dir(dir);
}

/*
 * A symlink at the old predictable temporary name, "<path>.tmp.<pid>",
 * pointing at a file the attacker wants overwritten: the write must not
 * go through it.
 */
TEST(ready_file_does_not_follow_a_planted_symlink)
{
	char dir[] = "/tmp/dmu-ready-XXXXXX", path[128], trap[160], victim[128];
	int fd;

	make_dir(dir);
	snprintf(path, sizeof(path), "%s/ready", dir);
	snprintf(victim, sizeof(victim), "%s/victim", dir);
	snprintf(trap, sizeof(trap), "%s.tmp.%d", path, (int)getpid());
	fd = open(victim, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	REQUIRE(fd >= 0);
	REQUIRE(write(fd, "precious\n", 9) == 9);
	close(fd);
	REQUIRE(symlink(victim, trap) == 0);

	REQUIRE(dmu_ready_write(path, "pid=1\n") == 0);
	CHECK_STR(slurp(victim), "precious\n");
	CHECK_STR(slurp(path), "pid=1\n");

	struct stat st;
	REQUIRE(lstat(path, &st) == 0);
	CHECK(S_ISREG(st.st_mode));
	remove_dir(dir);
}

TEST(ready_file_in_a_missing_directory_fails)
{
	CHECK(dmu_ready_write("/nonexistent-dmu-dir/ready", "pid=1\n") == -1);
}
