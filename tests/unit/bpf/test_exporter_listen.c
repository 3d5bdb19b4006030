// SPDX-License-Identifier: GPL-2.0
/*
 * Host unit tests of dmuser-exporter's --listen: the parser it checks the
 * address with before anything else (libdmuser's, lib/intree.h; the
 * HTTP endpoint, dmu_http_start(), parses it again the same way), and the
 * built binary's exit status for a bad address and for "localhost:PORT",
 * which needs no kernel: the address is checked before the module is.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "intree.h"
#include "check.h"

#define EXPORTER "../../../bpf/dmuser-exporter"

static unsigned port_of(const struct listen_addr *l)
{
	if (l->addr.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&l->addr)->sin6_port);
	return ntohs(((const struct sockaddr_in *)&l->addr)->sin_port);
}

/* text parses to an address of family af printed as host, with port. */
static void accepts(const char *text, int af, const char *host, unsigned port)
{
	struct listen_addr l;
	int err = dmu__parse_listen(text, &l);

	CHECK(err == 0, "\"%s\": %d", text, err);
	if (err)
		return;
	CHECK(l.addr.ss_family == af, "\"%s\": family %d, want %d", text, l.addr.ss_family, af);
	CHECK(!strcmp(l.host, host), "\"%s\": host \"%s\", want \"%s\"", text, l.host, host);
	CHECK(port_of(&l) == port, "\"%s\": port %u, want %u", text, port_of(&l), port);
	CHECK(l.addr_len == (af == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in)),
	      "\"%s\": addr_len %u", text, (unsigned)l.addr_len);
}

static void refuses(const char *text, int want)
{
	struct listen_addr l;
	int err = dmu__parse_listen(text, &l);

	CHECK(err == want, "\"%s\": %d, want %d", text, err, want);
}

TEST(exporter_listen_addresses)
{
	struct listen_addr l;

	accepts("9183", AF_INET, "127.0.0.1", 9183);		/* the default's form */
	accepts("127.0.0.1:9183", AF_INET, "127.0.0.1", 9183);
	accepts(":0", AF_INET, "127.0.0.1", 0);
	accepts("0.0.0.0:9183", AF_INET, "0.0.0.0", 9183);
	accepts("[::1]:9183", AF_INET6, "[::1]", 9183);
	accepts("[::]:0", AF_INET6, "[::]", 0);
	/* a host name, through getaddrinfo: the first address it gives, a loopback one */
	REQUIRE(dmu__parse_listen("localhost:9180", &l) == 0);
	CHECK(!strcmp(l.host, "127.0.0.1") || !strcmp(l.host, "[::1]"),
	      "localhost is \"%s\"", l.host);
	CHECK(port_of(&l) == 9180, "localhost:9180: port %u", port_of(&l));

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
