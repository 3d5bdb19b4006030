// SPDX-License-Identifier: GPL-2.0
#include "ready.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

static int write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int dmu_ready_write(const char *path, const char *text)
{
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	int dir_len = slash ? (int)(slash - path) + 1 : 0;
	char tmp[4096];
	int fd, n;

	/* ".<name>.XXXXXX" next to path: same filesystem, so rename() is atomic. */
	n = snprintf(tmp, sizeof(tmp), "%.*s.%s.XXXXXX", dir_len, path, base);
	if (n < 0 || (size_t)n >= sizeof(tmp) || !*base) {
		dmu_error("cannot write %s: invalid path", path);
		return -1;
	}
	fd = mkostemp(tmp, O_CLOEXEC);	/* O_CREAT | O_EXCL: never through a symlink */
	if (fd < 0) {
		dmu_error("cannot write %s: cannot create a temporary file: %s", path,
			  strerror(errno));
		return -1;
	}
	if (fchmod(fd, 0644) || write_all(fd, text, strlen(text))) {
		dmu_error("cannot write %s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		return -1;
	}
	if (close(fd) || rename(tmp, path)) {
		dmu_error("cannot write %s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}
