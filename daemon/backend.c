// SPDX-License-Identifier: GPL-2.0
/*
 * The table of schemes: which backend serves a --backend URI.  A backend
 * is added with one line here (and its file); one not built in keeps its
 * line with a NULL open, so its URIs get "... backend not built" rather
 * than "unknown scheme".
 */
#include "backend.h"

#include <stdlib.h>
#include <string.h>

#include "backend_file.h"
#include "backend_nbd.h"
#include "backend_rbd.h"
#include "log.h"

/* ---- file: the file backend behind the table's interface --------------- */

static int file_open(const struct dmu_backend_args *args, struct dmu_backend **b)
{
	struct dmu_file_backend *fb = malloc(sizeof(*fb));
	struct dmu_file_open_args fa = {
		.path = args->path,
		.size = args->size,
		.direct = args->direct,
		.read_only = args->read_only,
	};

	if (!fb) {
		dmu_error("out of memory");
		return -1;
	}
	if (!fa.path || !*fa.path) {
		dmu_error("invalid --backend '%s': expected file:PATH", args->uri);
		free(fb);
		return -2;
	}
	if (dmu_file_backend_open(fb, &fa)) {
		free(fb);
		return -1;
	}
	*b = &fb->base;
	return 0;
}

static void file_close(struct dmu_backend *b)
{
	struct dmu_file_backend *fb = (struct dmu_file_backend *)b;

	dmu_file_backend_close(fb);
	free(fb);
}

/* ---- the table --------------------------------------------------------- */

static const char *const file_schemes[] = { "file", NULL };
/* every scheme libnbd's nbd_connect_uri knows; it parses the rest */
static const char *const nbd_schemes[] = {
	"nbd", "nbds", "nbd+unix", "nbds+unix", "nbd+vsock", "nbds+vsock", NULL,
};
static const char *const rbd_schemes[] = { "rbd", NULL };

static const struct dmu_backend_type types[] = {
	{ "file", file_schemes, file_open, file_close },
	{ "nbd", nbd_schemes, dmu_nbd_backend_open, dmu_nbd_backend_close },
	{ "rbd", rbd_schemes, dmu_rbd_backend_open, dmu_rbd_backend_close },
};

const struct dmu_backend_type *dmu_backend_find(const char *uri)
{
	const char *colon = strchr(uri, ':');
	size_t len = colon ? (size_t)(colon - uri) : 0;

	for (size_t t = 0; len && t < sizeof(types) / sizeof(types[0]); t++)
		for (const char *const *s = types[t].schemes; *s; s++) {
			if (strlen(*s) != len || strncmp(*s, uri, len))
				continue;
			if (!types[t].open) {
				dmu_error("invalid --backend '%s': %s backend not built",
					  uri, types[t].name);
				return NULL;
			}
			return &types[t];
		}
	dmu_error("invalid --backend '%s': expected file:PATH, nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH or rbd:POOL/IMAGE",
		  uri);
	return NULL;
}

struct dmu_backend *dmu_backend_for_worker(struct dmu_backend *b, unsigned index)
{
	return b->ops->worker ? b->ops->worker(b, index) : b;
}
