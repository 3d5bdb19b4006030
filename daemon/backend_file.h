/* SPDX-License-Identifier: GPL-2.0 */
/* The file backend: a regular file or a block device, via pread/pwrite. */
#ifndef DMUSERD_BACKEND_FILE_H
#define DMUSERD_BACKEND_FILE_H

#include "backend.h"

struct dmu_file_backend {
	struct dmu_backend base;
	int fd;			/* O_DIRECT if direct was asked for */
	int fd_buffered;	/* for I/O that O_DIRECT refuses; == fd otherwise */
	bool is_block_device;
};

struct dmu_file_open_args {
	const char *path;
	uint64_t size;		/* 0: the file's size */
	bool direct;
	bool read_only;
};

/*
 * Open an existing file (never creates one).  A requested size larger than
 * the file grows it with ftruncate; the resulting size must be a positive
 * multiple of 512.  Prints the reason and returns -1 on failure.
 */
int dmu_file_backend_open(struct dmu_file_backend *fb,
			  const struct dmu_file_open_args *args);
void dmu_file_backend_close(struct dmu_file_backend *fb);

/*
 * For dmuserd --resize: make path hold at least size bytes.  A smaller
 * regular file grows (ftruncate); nothing ever shrinks.  A block device
 * must be that large already.  Prints the reason and returns -1 on failure.
 */
int dmu_file_grow(const char *path, uint64_t size);

#endif
