/* SPDX-License-Identifier: GPL-2.0 */
/* A listen address for the HTTP endpoint, as given on a command line. */
#ifndef DMUSERD_LISTEN_H
#define DMUSERD_LISTEN_H

#include <stdbool.h>
#include <sys/socket.h>

struct dmu_listen {
	bool enabled;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	char text[80];		/* as the user gave it, normalised: "ADDR:PORT" */
};

/*
 * "PORT", ":PORT", "ADDR:PORT" or "[ADDR6]:PORT".  Without an address the
 * listener binds 127.0.0.1 only.  Returns 0, or -1 for bad syntax.
 */
int dmu_parse_listen(const char *text, struct dmu_listen *out);

#endif
