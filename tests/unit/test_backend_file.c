// SPDX-License-Identifier: GPL-2.0
/* The file backend against real temporary files. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend_file.h"
#include "test.h"

static char path[256];

static void make_file(off_t size)
{
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	int fd;

	snprintf(path, sizeof(path), "%s/dmu-unit-XXXXXX", dir);
	fd = mkstemp(path);
	REQUIRE(fd >= 0);
	REQUIRE(ftruncate(fd, size) == 0);
	close(fd);
}

static off_t file_size(void)
{
	struct stat st;

	REQUIRE(stat(path, &st) == 0);
	return st.st_size;
}

static void open_backend(struct dmu_file_backend *fb, uint64_t size, bool ro)
{
	struct dmu_file_open_args a = { .path = path, .size = size, .read_only = ro };

	REQUIRE(dmu_file_backend_open(fb, &a) == 0);
}

static bool all_zero(const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

TEST(backend_file_missing_file_is_an_error)
{
	struct dmu_file_backend fb;
	struct dmu_file_open_args a = { .path = "/nonexistent/dmu-unit", .size = 4096 };

	CHECK(dmu_file_backend_open(&fb, &a) == -1);
}

TEST(backend_file_size_defaults_to_the_file)
{
	struct dmu_file_backend fb;

	make_file(1 << 20);
	open_backend(&fb, 0, false);
	CHECK_EQ(fb.base.size, 1 << 20);
	CHECK_EQ(fb.base.mem_align, 0);		/* buffered: any buffer */
	dmu_file_backend_close(&fb);
	unlink(path);
}

TEST(backend_file_odd_size_needs_explicit_size)
{
	struct dmu_file_backend fb;
	struct dmu_file_open_args a = { .path = NULL };

	make_file(1000);
	a.path = path;
	CHECK(dmu_file_backend_open(&fb, &a) == -1);
	make_file(0);
	a.path = path;
	CHECK(dmu_file_backend_open(&fb, &a) == -1);
	unlink(path);
}

TEST(backend_file_grows_to_size)
{
	struct dmu_file_backend fb;

	make_file(4096);
	open_backend(&fb, 1 << 20, false);
	CHECK_EQ(fb.base.size, 1 << 20);
	CHECK_EQ(file_size(), 1 << 20);
	dmu_file_backend_close(&fb);

	open_backend(&fb, 8192, false);		/* smaller: a prefix, file untouched */
	CHECK_EQ(fb.base.size, 8192);
	CHECK_EQ(file_size(), 1 << 20);
	dmu_file_backend_close(&fb);
	unlink(path);
}

TEST(backend_file_probes_the_size_now)
{
	struct dmu_file_backend fb;
	uint64_t size = 0;

	make_file(1 << 20);
	open_backend(&fb, 8192, false);
	REQUIRE(fb.base.ops->probe_size != NULL);
	CHECK_EQ(fb.base.ops->probe_size(&fb.base, &size), 0);
	CHECK_EQ(size, 1 << 20);		/* the file, not the device */
	REQUIRE(truncate(path, 3 << 20) == 0);
	CHECK_EQ(fb.base.ops->probe_size(&fb.base, &size), 0);
	CHECK_EQ(size, 3 << 20);
	CHECK_EQ(fb.base.size, 8192);		/* probing changes nothing */
	dmu_file_backend_close(&fb);
	unlink(path);
}

TEST(backend_file_grow_for_resize)
{
	make_file(1 << 20);
	CHECK_EQ(dmu_file_grow(path, 4 << 20), 0);
	CHECK_EQ(file_size(), 4 << 20);
	CHECK_EQ(dmu_file_grow(path, 2 << 20), 0);	/* never shrinks */
	CHECK_EQ(file_size(), 4 << 20);
	CHECK_EQ(dmu_file_grow(path, 4 << 20), 0);
	CHECK_EQ(file_size(), 4 << 20);
	unlink(path);
	CHECK_EQ(dmu_file_grow(path, 4 << 20), -1);	/* never creates one */
	CHECK_EQ(dmu_file_grow("/dev/null", 4096), -1);	/* neither file nor disk */
}

TEST(backend_file_read_only_cannot_grow)
{
	struct dmu_file_backend fb;
	struct dmu_file_open_args a = { .size = 1 << 20, .read_only = true };

	make_file(4096);
	a.path = path;
	CHECK(dmu_file_backend_open(&fb, &a) == -1);
	CHECK_EQ(file_size(), 4096);
	unlink(path);
}

TEST(backend_file_ops_round_trip)
{
	struct dmu_file_backend fb;
	struct dmu_backend *b = &fb.base;
	unsigned char buf[65536], back[65536];

	make_file(1 << 20);
	open_backend(&fb, 0, false);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 31 + 1);

	CHECK_EQ(b->ops->write(b, buf, sizeof(buf), 4096), 0);
	CHECK_EQ(b->ops->flush(b), 0);
	CHECK_EQ(b->ops->read(b, back, sizeof(back), 4096), 0);
	CHECK(memcmp(buf, back, sizeof(buf)) == 0);

	CHECK_EQ(b->ops->discard(b, 4096, 8192), 0);
	CHECK_EQ(b->ops->read(b, back, sizeof(back), 4096), 0);
	CHECK(all_zero(back, 8192));
	CHECK(memcmp(back + 8192, buf + 8192, sizeof(buf) - 8192) == 0);

	CHECK_EQ(b->ops->write_zeroes(b, 4096 + 8192, 4096, false), 0);
	CHECK_EQ(b->ops->write_zeroes(b, 4096 + 12288, 4096, true), 0);
	CHECK_EQ(b->ops->secure_erase(b, 4096 + 16384, 512), 0);
	CHECK_EQ(b->ops->read(b, back, sizeof(back), 4096), 0);
	CHECK(all_zero(back, 16384 + 512));
	CHECK(memcmp(back + 16896, buf + 16896, sizeof(buf) - 16896) == 0);
	CHECK_EQ(file_size(), 1 << 20);		/* KEEP_SIZE */
	dmu_file_backend_close(&fb);
	unlink(path);
}

/*
 * locate (libdmuser's splice): the file itself at the same offset; a READ
 * from the buffered descriptor, a WRITE to the one --direct opened (the
 * same here, without it), each a descriptor of this file.
 */
TEST(backend_file_locate_is_the_file_at_the_offset)
{
	struct dmu_file_backend fb;
	struct dmu_backend *b = &fb.base;
	struct stat want, st;
	uint64_t off = 1;
	int fd = -1;

	make_file(1 << 20);
	open_backend(&fb, 0, false);
	REQUIRE(stat(path, &want) == 0);
	REQUIRE(b->ops->locate);
	CHECK_EQ(b->ops->locate(b, false, 8192, 4096, &fd, &off), 0);
	CHECK_EQ(fd, fb.fd_buffered);
	CHECK_EQ(off, 8192);
	CHECK_EQ(b->ops->locate(b, true, 65536, 4096, &fd, &off), 0);
	CHECK_EQ(fd, fb.fd);
	CHECK_EQ(off, 65536);
	REQUIRE(fstat(fd, &st) == 0);
	CHECK(st.st_ino == want.st_ino && st.st_dev == want.st_dev);
	dmu_file_backend_close(&fb);
	unlink(path);
}

TEST(backend_file_read_past_eof_is_eio)
{
	struct dmu_file_backend fb;
	unsigned char buf[4096];

	make_file(1 << 20);
	open_backend(&fb, 0, false);
	REQUIRE(truncate(path, 4096) == 0);	/* shrunk behind our back */
	CHECK_EQ(fb.base.ops->read(&fb.base, buf, sizeof(buf), 8192), -EIO);
	dmu_file_backend_close(&fb);
	unlink(path);
}

TEST(backend_file_direct_when_supported)
{
	struct dmu_file_backend fb;
	struct dmu_file_open_args a = { .direct = true };
	static _Alignas(4096) unsigned char buf[8192], back[8192];

	make_file(1 << 20);
	a.path = path;
	int fd = open(path, O_RDONLY | O_DIRECT);
	if (fd < 0) {		/* e.g. tmpfs before 6.6: nothing to test here */
		unlink(path);
		return;
	}
	close(fd);
	REQUIRE(dmu_file_backend_open(&fb, &a) == 0);
	CHECK(fb.fd != fb.fd_buffered);
	CHECK_EQ(fb.base.mem_align, 4096);
	memset(buf, 0xa5, sizeof(buf));
	CHECK_EQ(fb.base.ops->write(&fb.base, buf, sizeof(buf), 0), 0);
	CHECK_EQ(fb.base.ops->read(&fb.base, back, sizeof(back), 0), 0);
	CHECK(memcmp(buf, back, sizeof(buf)) == 0);
	/* Unaligned for O_DIRECT: served through the buffered descriptor. */
	CHECK_EQ(fb.base.ops->write(&fb.base, buf + 1, 100, 3), 0);
	CHECK_EQ(fb.base.ops->read(&fb.base, back + 1, 100, 3), 0);
	CHECK(memcmp(buf + 1, back + 1, 100) == 0);
	dmu_file_backend_close(&fb);
	unlink(path);
}
