// SPDX-License-Identifier: GPL-2.0
/*
 * Host unit tests of dmuser-exporter's --listen, through libdmuser's
 * public API: dmu_http_start() takes the address as the exporter passes it
 * (the exporter checks it with the same parser first) and refuses a bad
 * one before anything listens; dmu_http_address() says what it bound.
 * Then the built binary's exit status for a bad address and for
 * "localhost:PORT", which needs no kernel: the address is checked before
 * the module is.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../../lib/include/dmuser.h"	/* libdmuser's public header, not bpf/dmuser.h */
#include "check.h"

#define EXPORTER "../../../bpf/dmuser-exporter"

static int render_nothing(void *arg, enum dmu_metrics_format format, char **buf, size_t *len)
{
	(void)arg, (void)format;
	*buf = strdup("");
	*len = 0;
	return *buf ? 0 : -ENOMEM;
}

static const struct dmu_http_opts http_opts = {
	.sz = sizeof(struct dmu_http_opts), .render = render_nothing,
};

/* The library's last message (it says why an address is refused). */
static char logged[512];

static void keep_log(void *arg, int level, const char *msg)
{
	(void)arg, (void)level;
	snprintf(logged, sizeof(logged), "%s", msg);
}

/* A port nothing listens on now, of family af on host ("" for any). */
static unsigned free_port(int af, const char *host)
{
	struct sockaddr_storage ss = { .ss_family = (sa_family_t)af };
	socklen_t len = af == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	int fd = socket(af, SOCK_STREAM, 0);
	unsigned port = 0;

	REQUIRE(fd >= 0);
	if (af == AF_INET6)
		REQUIRE(inet_pton(AF_INET6, *host ? host : "::",
				  &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1);
	else
		REQUIRE(inet_pton(AF_INET, *host ? host : "0.0.0.0",
				  &((struct sockaddr_in *)&ss)->sin_addr) == 1);
	REQUIRE(bind(fd, (struct sockaddr *)&ss, len) == 0);
	REQUIRE(getsockname(fd, (struct sockaddr *)&ss, &len) == 0);
	port = ntohs(af == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
				    : ((struct sockaddr_in *)&ss)->sin_port);
	close(fd);
	return port;
}

/*
 * fmt with the port (if it has a %u) makes an address dmu_http_start()
 * listens on, as host, on that port (any free one when fmt has none and
 * says port 0).
 */
static void accepts(const char *fmt, int af, const char *host)
{
	char text[64], want[96];
	unsigned port = strstr(fmt, "%u") ? free_port(af, strcmp(host, "[::1]") ? "" : "::1") : 0;
	struct dmu_http *h = NULL;
	int err;

	snprintf(text, sizeof(text), fmt, port);
	err = dmu_http_start(NULL, text, &http_opts, &h);
	CHECK(err == 0, "\"%s\": %d (%s)", text, err, logged);
	if (err)
		return;
	if (port)
		CHECK(dmu_http_port(h) == port, "\"%s\": port %u, want %u", text,
		      dmu_http_port(h), port);
	else
		CHECK(dmu_http_port(h) != 0, "\"%s\": port 0 bound", text);
	snprintf(want, sizeof(want), "%s:%u", host, dmu_http_port(h));
	CHECK(!strcmp(dmu_http_address(h), want), "\"%s\": bound \"%s\", want \"%s\"", text,
	      dmu_http_address(h), want);
	dmu_http_stop(h);
}

static void refuses(const char *text, int want)
{
	struct dmu_http *h = (struct dmu_http *)&h;
	int err = dmu_http_start(NULL, text, &http_opts, &h);

	CHECK(err == want, "\"%s\": %d, want %d", text ? text : "(null)", err, want);
	CHECK(h == NULL, "\"%s\": a handle anyway", text ? text : "(null)");
	CHECK(strstr(logged, want == -EINVAL ? "want PORT, HOST:PORT or [IPV6]:PORT" : "unknown host"),
	      "\"%s\": logged \"%s\"", text ? text : "(null)", logged);
	if (err == 0)
		dmu_http_stop(h);
}

TEST(exporter_listen_addresses)
{
	struct dmu_http *h = NULL;

	dmu_set_log(keep_log, NULL, DMU_LOG_WARNING);
	accepts("%u", AF_INET, "127.0.0.1");		/* the default's form */
	accepts("127.0.0.1:%u", AF_INET, "127.0.0.1");
	accepts(":0", AF_INET, "127.0.0.1");
	accepts("0.0.0.0:%u", AF_INET, "0.0.0.0");
	accepts("[::1]:%u", AF_INET6, "[::1]");
	accepts("[::]:0", AF_INET6, "[::]");
	/* a host name, through getaddrinfo: the first address it gives, a loopback one */
	REQUIRE(dmu_http_start(NULL, "localhost:0", &http_opts, &h) == 0);
	CHECK(!strncmp(dmu_http_address(h), "127.0.0.1:", 10) ||
	      !strncmp(dmu_http_address(h), "[::1]:", 6), "localhost is \"%s\"", dmu_http_address(h));
	dmu_http_stop(h);

	refuses("nope:x", -EINVAL);
	refuses("", -EINVAL);
	refuses("127.0.0.1:", -EINVAL);
	refuses("127.0.0.1:65536", -EINVAL);
	refuses("127.0.0.1:-1", -EINVAL);
	refuses("::1:80", -EINVAL);		/* IPv6 wants brackets */
	refuses("[::1]9183", -EINVAL);
	refuses("[]:9183", -EINVAL);
	refuses("[127.0.0.1]:9183", -EADDRNOTAVAIL);	/* brackets are IPv6 only */
	refuses("nohost.invalid:9183", -EADDRNOTAVAIL);
	refuses(NULL, -EINVAL);
	dmu_set_log(NULL, NULL, DMU_LOG_WARNING);
}

/* Runs the exporter with args; its exit status (-1 if it did not exit), its stderr in err. */
static int run_exporter(const char *args, char *err, size_t len)
{
	char cmd[512];
	size_t n;
	FILE *p;
	int status;

	snprintf(cmd, sizeof(cmd), "%s %s 2>&1 >/dev/null", EXPORTER, args);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	n = fread(err, 1, len - 1, p);
	err[n] = '\0';
	status = pclose(p);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/*
 * The binary: a bad --listen is exit 2 and says why, before it looks for
 * the module; localhost:PORT passes that check, so without the module the
 * exit is 1 and the message the module's (400-exporter checks both in a
 * guest too).
 */
TEST(exporter_listen_exit_status)
{
	char err[1024];
	struct stat st;

	if (access(EXPORTER, X_OK))
		SKIP("%s not built (make -C bpf)", EXPORTER);
	CHECK(run_exporter("--listen nope:x", err, sizeof(err)) == 2, "nope:x: %s", err);
	CHECK(!strcmp(err, "dmuser-exporter: invalid --listen 'nope:x': "
			   "expected PORT, HOST:PORT or [ADDR6]:PORT\n"), "nope:x said: %s", err);
	CHECK(run_exporter("--listen nohost.invalid:9183", err, sizeof(err)) == 2,
	      "nohost.invalid: %s", err);
	CHECK(strstr(err, "unknown host") != NULL, "nohost.invalid said: %s", err);
	if (!stat("/sys/module/dm_user", &st))
		SKIP("dm_user is loaded here: localhost:PORT would start the exporter");
	CHECK(run_exporter("--listen localhost:9180", err, sizeof(err)) == 1, "localhost: %s", err);
	CHECK(!strcmp(err, "dmuser-exporter: dm-user module not loaded (no /sys/module/dm_user)\n"),
	      "localhost:9180 said: %s", err);
}
