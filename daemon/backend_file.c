// SPDX-License-Identifier: GPL-2.0
/*
 * The file backend.  Request → syscall:
 *   read          splice from the file (libdmuser's, see file_locate()),
 *                 else pread
 *   write         splice to the file, else pwrite
 *   flush         fdatasync
 *   discard       fallocate(PUNCH_HOLE), else ZERO_RANGE, else zeroes written
 *   write_zeroes  fallocate(ZERO_RANGE), else PUNCH_HOLE (if unmapping is
 *                 allowed), else zeroes written
 *   secure_erase  zeroes written, then fdatasync
 * Discard falls back to zeroing because the device promises that a
 * discarded range reads back as zeroes.
 *
 * With --direct the file is also opened with O_DIRECT.  An O_DIRECT
 * request the filesystem refuses with EINVAL (an offset or length below its
 * block size) is retried through a second, buffered descriptor.
 */
#include "backend_file.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define ZERO_CHUNK (64 * 1024)

/* Never written: the source of every explicit zero fill. */
static _Alignas(4096) unsigned char zero_chunk[ZERO_CHUNK];

static struct dmu_file_backend *to_file(struct dmu_backend *b)
{
	return (struct dmu_file_backend *)b;	/* base is the first member */
}

static int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	unsigned char *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;	/* the file shrank under us */
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	const unsigned char *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static int file_read(struct dmu_backend *b, void *buf, size_t len, uint64_t off)
{
	struct dmu_file_backend *fb = to_file(b);
	int err = pread_full(fb->fd, buf, len, off);

	if (err == -EINVAL && fb->fd != fb->fd_buffered)
		err = pread_full(fb->fd_buffered, buf, len, off);
	return err;
}

static int file_write(struct dmu_backend *b, const void *buf, size_t len,
		      uint64_t off)
{
	struct dmu_file_backend *fb = to_file(b);
	int err = pwrite_full(fb->fd, buf, len, off);

	if (err == -EINVAL && fb->fd != fb->fd_buffered)
		err = pwrite_full(fb->fd_buffered, buf, len, off);
	return err;
}

static int file_flush(struct dmu_backend *b)
{
	struct dmu_file_backend *fb = to_file(b);

	/*
	 * One descriptor is enough: fdatasync() covers the file's dirty
	 * pages whichever descriptor wrote them.
	 */
	if (fdatasync(fb->fd))
		return -errno;
	return 0;
}

static int fill_zeroes(struct dmu_backend *b, uint64_t off, uint64_t len)
{
	while (len) {
		size_t n = len < ZERO_CHUNK ? (size_t)len : ZERO_CHUNK;
		int err = file_write(b, zero_chunk, n, off);

		if (err)
			return err;
		off += n;
		len -= n;
	}
	return 0;
}

static bool unsupported(int err)
{
	return err == -EOPNOTSUPP || err == -ENOSYS || err == -EINVAL;
}

static int file_fallocate(struct dmu_backend *b, int mode, uint64_t off,
			  uint64_t len)
{
	if (fallocate(to_file(b)->fd, mode | FALLOC_FL_KEEP_SIZE, (off_t)off,
		      (off_t)len))
		return -errno;
	return 0;
}

static int file_discard(struct dmu_backend *b, uint64_t off, uint64_t len)
{
	int err = file_fallocate(b, FALLOC_FL_PUNCH_HOLE, off, len);

	if (unsupported(err))
		err = file_fallocate(b, FALLOC_FL_ZERO_RANGE, off, len);
	if (unsupported(err))
		err = fill_zeroes(b, off, len);
	return err;
}

static int file_write_zeroes(struct dmu_backend *b, uint64_t off, uint64_t len,
			     bool may_unmap)
{
	int err = file_fallocate(b, FALLOC_FL_ZERO_RANGE, off, len);

	if (unsupported(err) && may_unmap)
		err = file_fallocate(b, FALLOC_FL_PUNCH_HOLE, off, len);
	if (unsupported(err))
		err = fill_zeroes(b, off, len);
	return err;
}

static int file_secure_erase(struct dmu_backend *b, uint64_t off, uint64_t len)
{
	int err = fill_zeroes(b, off, len);

	return err ? err : file_flush(b);
}

/* The file's size now (dmuserd --resize may have grown it since start-up). */
static int file_probe_size(struct dmu_backend *b, uint64_t *size)
{
	struct dmu_file_backend *fb = to_file(b);
	struct stat st;

	if (fb->is_block_device)
		return ioctl(fb->fd_buffered, BLKGETSIZE64, size) ? -errno : 0;
	if (fstat(fb->fd_buffered, &st))
		return -errno;
	*size = (uint64_t)st.st_size;
	return 0;
}

/*
 * For libdmuser's splice: the file itself, at the same offset.  With
 * --direct, a WRITE splices to the O_DIRECT descriptor (libdmuser falls
 * back to write, and that to the buffered descriptor, on EINVAL); a READ
 * splices from the buffered one, since splice from an O_DIRECT file copies
 * into pages of its own first.
 */
static int file_locate(struct dmu_backend *b, bool write, uint64_t off, uint64_t len,
		       int *fd, uint64_t *fd_off)
{
	struct dmu_file_backend *fb = to_file(b);

	(void)len;
	*fd = write ? fb->fd : fb->fd_buffered;
	*fd_off = off;
	return 0;
}

static const struct dmu_backend_ops file_ops = {
	.read = file_read,
	.write = file_write,
	.flush = file_flush,
	.discard = file_discard,
	.write_zeroes = file_write_zeroes,
	.secure_erase = file_secure_erase,
	.probe_size = file_probe_size,
	.locate = file_locate,
};

static int current_size(struct dmu_file_backend *fb, const char *path,
			uint64_t *size)
{
	struct stat st;

	if (fstat(fb->fd_buffered, &st)) {
		dmu_error("cannot stat %s: %s", path, strerror(errno));
		return -1;
	}
	if (S_ISREG(st.st_mode)) {
		*size = (uint64_t)st.st_size;
		return 0;
	}
	if (S_ISBLK(st.st_mode)) {
		fb->is_block_device = true;
		if (ioctl(fb->fd_buffered, BLKGETSIZE64, size)) {
			dmu_error("cannot get the size of %s: %s", path, strerror(errno));
			return -1;
		}
		return 0;
	}
	dmu_error("%s is neither a regular file nor a block device", path);
	return -1;
}

/* Decide the device size from the file and --size; grow the file if asked. */
static int settle_size(struct dmu_file_backend *fb,
		       const struct dmu_file_open_args *args)
{
	uint64_t have;

	if (current_size(fb, args->path, &have))
		return -1;
	if (!args->size) {
		if (have == 0 || have % 512) {
			dmu_error("%s is %llu bytes, not a positive multiple of 512; pass --size",
				  args->path, (unsigned long long)have);
			return -1;
		}
		fb->base.size = have;
		return 0;
	}
	if (args->size > have) {
		if (fb->is_block_device || args->read_only) {
			dmu_error("--size %llu is larger than %s (%llu bytes), which cannot grow %s",
				  (unsigned long long)args->size, args->path,
				  (unsigned long long)have,
				  fb->is_block_device ? "(a block device)" : "with --read-only");
			return -1;
		}
		if (ftruncate(fb->fd_buffered, (off_t)args->size)) {
			dmu_error("cannot grow %s to %llu bytes: %s", args->path,
				  (unsigned long long)args->size, strerror(errno));
			return -1;
		}
	}
	fb->base.size = args->size;
	return 0;
}

static int open_direct(struct dmu_file_backend *fb,
		       const struct dmu_file_open_args *args, int flags)
{
	fb->fd = open(args->path, flags | O_DIRECT);
	if (fb->fd < 0) {
		dmu_error("cannot open %s with O_DIRECT: %s%s", args->path,
			  strerror(errno),
			  errno == EINVAL ? " (its filesystem does not support it; drop --direct)" : "");
		return -1;
	}
	return 0;
}

int dmu_file_backend_open(struct dmu_file_backend *fb,
			  const struct dmu_file_open_args *args)
{
	int flags = (args->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;

	memset(fb, 0, sizeof(*fb));
	fb->base.ops = &file_ops;
	fb->fd = fb->fd_buffered = open(args->path, flags);
	if (fb->fd < 0) {
		dmu_error("cannot open backing file %s: %s", args->path, strerror(errno));
		return -1;
	}
	if (settle_size(fb, args))
		goto fail;
	if (args->direct && open_direct(fb, args, flags))
		goto fail;
	if (args->direct)
		fb->base.mem_align = 4096;	/* any logical block size up to a page */
	return 0;

fail:
	dmu_file_backend_close(fb);
	return -1;
}

void dmu_file_backend_close(struct dmu_file_backend *fb)
{
	if (fb->fd >= 0 && fb->fd != fb->fd_buffered)
		close(fb->fd);
	if (fb->fd_buffered >= 0)
		close(fb->fd_buffered);
	fb->fd = fb->fd_buffered = -1;
}

int dmu_file_grow(const char *path, uint64_t size)
{
	struct stat st;
	uint64_t have;
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = -1;

	if (fd < 0) {
		dmu_error("cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st)) {
		dmu_error("cannot stat %s: %s", path, strerror(errno));
		goto out;
	}
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &have)) {
			dmu_error("cannot get the size of %s: %s", path, strerror(errno));
			goto out;
		}
		if (have < size) {
			dmu_error("%s is a block device of %llu bytes, smaller than %llu",
				  path, (unsigned long long)have, (unsigned long long)size);
			goto out;
		}
		ret = 0;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		dmu_error("%s is neither a regular file nor a block device", path);
		goto out;
	}
	ret = 0;
	if ((uint64_t)st.st_size >= size)
		goto out;	/* never shrink */
	close(fd);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)size)) {
		dmu_error("cannot grow %s to %llu bytes: %s", path,
			  (unsigned long long)size, strerror(errno));
		ret = -1;
	}
out:
	if (fd >= 0)
		close(fd);
	return ret;
}
