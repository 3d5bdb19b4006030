// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Listen addresses: "PORT", ":PORT" (127.0.0.1), "HOST:PORT" (HOST through
 * getaddrinfo, so names such as localhost work) and "[IPV6]:PORT".
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int parse_port(const char *text)
{
	char *end;
	unsigned long value;

	if (!isdigit((unsigned char)text[0]))
		return -1;
	errno = 0;
	value = strtoul(text, &end, 10);
	if (errno || *end || value > 65535)
		return -1;
	return (int)value;
}

int dmu__parse_listen(const char *text, struct listen_addr *out)
{
	char host[256] = "127.0.0.1";
	const char *port_text = text;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	char port[8];
	int p;

	memset(out, 0, sizeof(*out));
	if (!text)
		return -EINVAL;
	if (text[0] == '[') {			/* [ADDR6]:PORT */
		const char *close = strchr(text, ']');
		size_t len = close ? (size_t)(close - text - 1) : 0;

		if (!close || close[1] != ':' || len == 0 || len >= sizeof(host))
			return -EINVAL;
		memcpy(host, text + 1, len);
		host[len] = '\0';
		port_text = close + 2;
		hints.ai_family = AF_INET6;
		hints.ai_flags |= AI_NUMERICHOST;
	} else {
		const char *colon = strrchr(text, ':');

		if (colon) {			/* HOST:PORT or :PORT */
			size_t len = (size_t)(colon - text);

			if (len >= sizeof(host) || memchr(text, ':', len))
				return -EINVAL;	/* IPv6 wants brackets */
			if (len) {
				memcpy(host, text, len);
				host[len] = '\0';
			}
			port_text = colon + 1;
		}
	}
	p = parse_port(port_text);
	if (p < 0)
		return -EINVAL;
	snprintf(port, sizeof(port), "%d", p);
	if (getaddrinfo(host, port, &hints, &res) || !res) {
		if (res)
			freeaddrinfo(res);
		return -EADDRNOTAVAIL;
	}
	memcpy(&out->addr, res->ai_addr, res->ai_addrlen);
	out->addr_len = res->ai_addrlen;
	freeaddrinfo(res);

	char num[INET6_ADDRSTRLEN];
	const void *a = out->addr.ss_family == AF_INET6 ?
		(const void *)&((struct sockaddr_in6 *)&out->addr)->sin6_addr :
		(const void *)&((struct sockaddr_in *)&out->addr)->sin_addr;

	if (!inet_ntop(out->addr.ss_family, a, num, sizeof(num)))
		return -EINVAL;
	snprintf(out->host, sizeof(out->host),
		 out->addr.ss_family == AF_INET6 ? "[%s]" : "%s", num);
	return 0;
}
