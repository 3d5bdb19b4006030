// SPDX-License-Identifier: GPL-2.0
#include "listen.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_port(const char *text, uint16_t *port)
{
	char *end;

	if (!isdigit((unsigned char)text[0]))
		return -1;
	errno = 0;
	unsigned long value = strtoul(text, &end, 10);
	if (errno || *end || value > 65535)
		return -1;
	*port = (uint16_t)value;
	return 0;
}

static int listen_ipv4(const char *host, uint16_t port, struct dmu_listen *l)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&l->addr;

	if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
		return -1;
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	l->addr_len = sizeof(*sin);
	snprintf(l->text, sizeof(l->text), "%s:%u", host, port);
	return 0;
}

static int listen_ipv6(const char *host, uint16_t port, struct dmu_listen *l)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&l->addr;

	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
		return -1;
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	l->addr_len = sizeof(*sin6);
	snprintf(l->text, sizeof(l->text), "[%s]:%u", host, port);
	return 0;
}

int dmu_parse_listen(const char *text, struct dmu_listen *out)
{
	char host[64] = "127.0.0.1";
	const char *port_text = text;
	bool ipv6 = false;

	memset(out, 0, sizeof(*out));
	if (text[0] == '[') {			/* [ADDR6]:PORT */
		const char *close = strchr(text, ']');
		size_t len = close ? (size_t)(close - text - 1) : 0;

		if (!close || close[1] != ':' || len == 0 || len >= sizeof(host))
			return -1;
		memcpy(host, text + 1, len);
		host[len] = '\0';
		port_text = close + 2;
		ipv6 = true;
	} else {
		const char *colon = strrchr(text, ':');

		if (colon) {			/* ADDR:PORT or :PORT */
			size_t len = (size_t)(colon - text);

			if (len >= sizeof(host))
				return -1;
			if (len) {
				memcpy(host, text, len);
				host[len] = '\0';
			}
			port_text = colon + 1;
		}
	}

	uint16_t port;
	if (parse_port(port_text, &port))
		return -1;
	if (ipv6 ? listen_ipv6(host, port, out) : listen_ipv4(host, port, out))
		return -1;
	out->enabled = true;
	return 0;
}
