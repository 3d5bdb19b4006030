// SPDX-License-Identifier: GPL-2.0
#include "options.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "backend.h"
#include "log.h"
#include "version.h"

#define CONFIG_MAX_BYTES (64 * 1024)	/* a --config file, at most */

void dmu_usage(FILE *out)
{
	fputs(
"Usage: dmuserd --backend URI --name NAME [options]\n"
"       dmuserd --file PATH --name NAME [options]\n"
"       dmuserd --name NAME --resize BYTES [--file PATH]\n"
"\n"
"Serve the device-mapper device /dev/mapper/NAME (target \"user\") from a\n"
"backend: a file, an NBD server's export or a Ceph RBD image.  The daemon creates the device, answers its requests\n"
"through /dev/dm-user/NAME and removes the device on SIGINT or SIGTERM.\n"
"SIGHUP does not stop it: it re-reads the device's table and logs it.\n"
"\n"
"Required:\n"
"  -b, --backend URI        what serves the data, by the URI's scheme:\n"
"                             file:PATH  a file or block device, as --file\n"
"                             nbd://HOST[:PORT]/EXPORT,\n"
"                             nbd+unix:///EXPORT?socket=PATH  an NBD export\n"
"                               (libnbd; one connection per thread)\n"
"                             rbd:POOL/[NAMESPACE/]IMAGE[?conf=PATH&id=USER]\n"
"                               an RBD image of a Ceph cluster (librbd)\n"
"  -f, --file PATH          the same as --backend file:PATH; the file (or\n"
"                           block device) must exist.  One of the two.\n"
"  -n, --name NAME          name of the dm device and of its control device\n"
"\n"
"Options:\n"
"  -s, --size BYTES         device size; suffixes K, M, G, T (powers of 1024).\n"
"                           Default: the file's (or export's) size.  A larger\n"
"                           size grows a file (ftruncate; an export cannot\n"
"                           grow); a smaller one exposes only the start of\n"
"                           it.  Must be a multiple of 512.\n"
"  -t, --threads N          worker threads, each with its own channel\n"
"                           (default 1, at most 256)\n"
"  -d, --direct             open the backing file with O_DIRECT (file only)\n"
"  -r, --read-only          create a read-only device; writes get an error\n"
"  -a, --attach             serve a device that already exists (e.g. after a\n"
"                           restart) instead of creating one; leave it in\n"
"                           place at exit\n"
"      --adopt              create the device or, if one of that name exists\n"
"                           with a single \"user\" target (left by a dmuserd\n"
"                           that died), serve that one instead; either way\n"
"                           remove it at exit.  No effect with --attach\n"
"  -R, --ready-file PATH    once the device is up and every worker is\n"
"                           serving, write PATH (atomically) with lines\n"
"                           pid=, name=, device=, control=, metrics=;\n"
"                           it is deleted at exit\n"
"  -m, --metrics ADDR:PORT  serve GET /metrics over HTTP (JSON, or Prometheus\n"
"                           text with ?format=prometheus or Accept: text/plain).\n"
"                           PORT alone binds 127.0.0.1; port 0 picks a free\n"
"                           port (see the ready file)\n"
"      --queue-depth N      table option queue_depth: the most requests queued\n"
"                           plus in flight in the kernel (default 0, unlimited)\n"
"      --timeout-ms MS      table option timeout_ms: a request unanswered this\n"
"                           long fails with EIO (default 0, none)\n"
"      --recovery-ms MS     table option recovery_ms: when the last channel\n"
"                           closes, its requests wait this long for a daemon\n"
"                           (--attach) instead of failing (default 0)\n"
"                           These three set up the table of a device dmuserd\n"
"                           creates; they cannot be combined with --attach.\n"
"      --reconnect-ms MS    NBD and RBD backends: how long requests wait for a\n"
"                           lost server to come back (reconnecting) before they\n"
"                           fail with EIO (default: the table's recovery_ms)\n"
"      --no-batch           read one request at a time, even where the kernel\n"
"                           could return several per read() (DM_USER_CHANNEL_BATCH)\n"
"      --poll-us N          file backend: after a read that brought requests,\n"
"                           keep reading for N microseconds before sleeping\n"
"                           (busy polling: a request that comes meanwhile\n"
"                           needs no wake-up; costs that CPU).  Default " DMU_STR(DMU_DEFAULT_POLL_US) ",\n"
"                           0 turns it off, at most 1000000\n"
"      --no-splice          file backend: read requests and write replies\n"
"                           through a buffer (two copies of the data) instead\n"
"                           of splicing them between the kernel and the file\n"
"                           (one copy; target 1.6.0, else read and write)\n"
"      --resize BYTES       do not serve: resize the device NAME, which a\n"
"                           dmuserd serves, to BYTES (a multiple of 512).\n"
"                           With --file, a regular file smaller than BYTES\n"
"                           is grown first (never shrunk; a block device\n"
"                           must be large enough).  Then the live table is\n"
"                           reloaded with the new length, its options kept,\n"
"                           and resumed.  Takes no other option.\n"
"  -c, --config FILE        read options from FILE, one long option a line,\n"
"                           without its dashes: \"option value\" (or\n"
"                           \"option=value\"), or \"option\" alone for one that\n"
"                           takes no value; # starts a comment line.  Read\n"
"                           where it stands: later options override it.\n"
"                           Used by dmuserd@NAME.service, with\n"
"                           /etc/dm-user/NAME.conf\n"
"  -h, --help               show this help and exit\n"
"  -V, --version            show the version and exit\n"
"\n"
"Testing:\n"
"      --inject-delay-us N  sleep N microseconds before answering each request\n"
"\n"
"Exit status: 0 after a clean shutdown, 1 on a runtime error, 2 on bad usage.\n",
		out);
}

int dmu_parse_listen(const char *text, char *out, size_t len)
{
	char host[64] = "127.0.0.1";
	const char *port_text = text, *colon;
	unsigned char addr[16];
	bool ipv6 = text[0] == '[';
	size_t hlen = 0;

	if (ipv6) {				/* [ADDR6]:PORT */
		const char *close = strchr(text, ']');

		hlen = close ? (size_t)(close - text - 1) : 0;
		if (!close || close[1] != ':' || hlen == 0 || hlen >= sizeof(host))
			return -1;
		memcpy(host, text + 1, hlen);
		port_text = close + 2;
	} else if ((colon = strrchr(text, ':'))) {	/* ADDR:PORT or :PORT */
		hlen = (size_t)(colon - text);
		if (hlen >= sizeof(host))
			return -1;
		if (hlen)
			memcpy(host, text, hlen);
		port_text = colon + 1;
	}
	if (hlen)
		host[hlen] = '\0';

	char *end;
	errno = 0;
	unsigned long port = strtoul(port_text, &end, 10);
	if (!isdigit((unsigned char)port_text[0]) || errno || *end || port > 65535 ||
	    inet_pton(ipv6 ? AF_INET6 : AF_INET, host, addr) != 1)
		return -1;
	snprintf(out, len, ipv6 ? "[%s]:%lu" : "%s:%lu", host, port);
	return 0;
}

int dmu_parse_size(const char *text, uint64_t *out)
{
	static const char units[] = "KMGT";
	char *end;

	if (!text || !isdigit((unsigned char)text[0]))
		return -1;
	errno = 0;
	unsigned long long value = strtoull(text, &end, 10);
	if (errno)
		return -1;

	unsigned shift = 0;
	if (*end) {
		const char *unit = strchr(units, toupper((unsigned char)*end));

		if (!unit)
			return -1;
		shift = 10 * (unsigned)(unit - units + 1);
		end++;
		if (*end == 'i' && end[1] == 'B')	/* KiB, MiB, ... */
			end += 2;
		else if (*end == 'B' || *end == 'b')	/* KB, MB, ... */
			end++;
	}
	if (*end)
		return -1;
	if (shift && value > (UINT64_MAX >> shift))
		return -1;
	*out = (uint64_t)value << shift;
	return 0;
}

enum { OPT_INJECT_DELAY = 256, OPT_NO_BATCH, OPT_RESIZE, OPT_QUEUE_DEPTH, OPT_TIMEOUT_MS,
       OPT_RECOVERY_MS, OPT_ADOPT, OPT_RECONNECT_MS, OPT_POLL_US, OPT_NO_SPLICE };

static const struct option long_options[] = {
	{ "backend",		required_argument, NULL, 'b' },
	{ "file",		required_argument, NULL, 'f' },
	{ "name",		required_argument, NULL, 'n' },
	{ "size",		required_argument, NULL, 's' },
	{ "threads",		required_argument, NULL, 't' },
	{ "direct",		no_argument,       NULL, 'd' },
	{ "read-only",		no_argument,       NULL, 'r' },
	{ "attach",		no_argument,       NULL, 'a' },
	{ "adopt",		no_argument,       NULL, OPT_ADOPT },
	{ "ready-file",		required_argument, NULL, 'R' },
	{ "metrics",		required_argument, NULL, 'm' },
	{ "no-batch",		no_argument,       NULL, OPT_NO_BATCH },
	{ "poll-us",		required_argument, NULL, OPT_POLL_US },
	{ "no-splice",		no_argument,       NULL, OPT_NO_SPLICE },
	{ "queue-depth",	required_argument, NULL, OPT_QUEUE_DEPTH },
	{ "timeout-ms",		required_argument, NULL, OPT_TIMEOUT_MS },
	{ "recovery-ms",	required_argument, NULL, OPT_RECOVERY_MS },
	{ "reconnect-ms",	required_argument, NULL, OPT_RECONNECT_MS },
	{ "inject-delay-us",	required_argument, NULL, OPT_INJECT_DELAY },
	{ "resize",		required_argument, NULL, OPT_RESIZE },
	{ "config",		required_argument, NULL, 'c' },
	{ "help",		no_argument,       NULL, 'h' },
	{ "version",		no_argument,       NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static int parse_unsigned(const char *text, unsigned long max, unsigned *out)
{
	char *end;

	if (!isdigit((unsigned char)text[0]))
		return -1;
	errno = 0;
	unsigned long value = strtoul(text, &end, 10);
	if (errno || *end || value > max)
		return -1;
	*out = (unsigned)value;
	return 0;
}

/*
 * The name is the dm device's name and the control device's, a path
 * component under /dev/mapper and /dev/dm-user.  The target accepts control
 * names of at most 64 characters (module/README.md).
 */
#define MAX_NAME_LEN 64

static int check_name(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > MAX_NAME_LEN || strchr(name, '/') ||
	    !strcmp(name, ".") || !strcmp(name, "..") || !strcmp(name, "control"))
		return -1;
	return 0;
}

/* --queue-depth, --timeout-ms, --recovery-ms: the target takes any u32. */
static int parse_table_opt(int opt, const char *arg, struct dmu_options *o)
{
	const char *flag = opt == OPT_QUEUE_DEPTH ? "--queue-depth" :
			   opt == OPT_TIMEOUT_MS ? "--timeout-ms" : "--recovery-ms";
	unsigned value;

	if (parse_unsigned(arg, UINT32_MAX, &value)) {
		dmu_error("invalid %s '%s': expected 0 to %u", flag, arg, UINT32_MAX);
		return -1;
	}
	if (opt == OPT_QUEUE_DEPTH)
		o->queue_depth = value;
	else if (opt == OPT_TIMEOUT_MS)
		o->timeout_ms = value;
	else
		o->recovery_ms = value;
	o->table_opts++;
	return 0;
}

static int parse_one(int opt, const char *arg, struct dmu_options *o)
{
	switch (opt) {
	case 'b':
		o->backend = arg;
		return 0;
	case 'f':
		o->file = arg;
		return 0;
	case 'n':
		if (check_name(arg)) {
			dmu_error("invalid --name '%s': 1 to %d characters, no '/'", arg,
				  MAX_NAME_LEN);
			return -1;
		}
		o->name = arg;
		return 0;
	case 's':
		if (dmu_parse_size(arg, &o->size)) {
			dmu_error("invalid --size '%s': expected BYTES with an optional K, M, G or T suffix",
				  arg);
			return -1;
		}
		if (o->size == 0 || o->size % 512) {
			dmu_error("invalid --size '%s': must be a positive multiple of 512 bytes", arg);
			return -1;
		}
		return 0;
	case 't':
		if (parse_unsigned(arg, DMU_MAX_THREADS, &o->threads) || o->threads == 0) {
			dmu_error("invalid --threads '%s': expected 1 to %d", arg, DMU_MAX_THREADS);
			return -1;
		}
		return 0;
	case 'd':
		o->direct = true;
		return 0;
	case 'r':
		o->read_only = true;
		return 0;
	case 'a':
		o->attach = true;
		return 0;
	case OPT_ADOPT:
		o->adopt = true;
		return 0;
	case 'R':
		o->ready_file = arg;
		return 0;
	case 'm':
		if (dmu_parse_listen(arg, o->metrics.text, sizeof(o->metrics.text))) {
			dmu_error("invalid --metrics '%s': expected PORT, ADDR:PORT or [ADDR6]:PORT", arg);
			return -1;
		}
		o->metrics.enabled = true;
		return 0;
	case OPT_NO_BATCH:
		o->no_batch = true;
		return 0;
	case OPT_NO_SPLICE:
		o->no_splice = true;
		return 0;
	case OPT_POLL_US:
		if (parse_unsigned(arg, DMU_MAX_POLL_US, &o->poll_us)) {
			dmu_error("invalid --poll-us '%s': expected 0 to %u", arg, DMU_MAX_POLL_US);
			return -1;
		}
		return 0;
	case OPT_RESIZE:
		if (dmu_parse_size(arg, &o->resize) || o->resize == 0 || o->resize % 512) {
			dmu_error("invalid --resize '%s': expected a positive multiple of 512 bytes, with an optional K, M, G or T suffix",
				  arg);
			return -1;
		}
		return 0;
	case OPT_QUEUE_DEPTH:
	case OPT_TIMEOUT_MS:
	case OPT_RECOVERY_MS:
		return parse_table_opt(opt, arg, o);
	case OPT_RECONNECT_MS:
		if (parse_unsigned(arg, UINT32_MAX, &o->reconnect_ms)) {
			dmu_error("invalid --reconnect-ms '%s': expected 0 to %u", arg, UINT32_MAX);
			return -1;
		}
		o->reconnect_ms_set = true;
		return 0;
	case OPT_INJECT_DELAY:
		if (parse_unsigned(arg, 60UL * 1000 * 1000, &o->inject_delay_us)) {
			dmu_error("invalid --inject-delay-us '%s': expected 0 to 60000000", arg);
			return -1;
		}
		return 0;
	default:
		return -1;
	}
}

static const struct option *find_option(const char *name)
{
	for (const struct option *lo = long_options; lo->name; lo++)
		if (!strcmp(lo->name, name))
			return lo;
	return NULL;
}

static char *trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		*--end = '\0';
	return s;
}

/* The whole of path, NUL-terminated; NULL (message printed) on error. */
static char *read_config(const char *path)
{
	FILE *f = fopen(path, "re");
	char *text;
	size_t n;

	if (!f) {
		dmu_error("cannot read --config %s: %s", path, strerror(errno));
		return NULL;
	}
	text = malloc(CONFIG_MAX_BYTES + 1);
	if (!text) {
		dmu_error("cannot read --config %s: out of memory", path);
		fclose(f);
		return NULL;
	}
	n = fread(text, 1, CONFIG_MAX_BYTES + 1, f);
	if (ferror(f) || n > CONFIG_MAX_BYTES) {
		dmu_error(ferror(f) ? "cannot read --config %s: read error" :
			  "cannot read --config %s: larger than 64 KiB", path);
		free(text);
		fclose(f);
		return NULL;
	}
	fclose(f);
	text[n] = '\0';
	if (memchr(text, '\0', n)) {
		dmu_error("--config %s: not a text file (a NUL byte)", path);
		free(text);
		return NULL;
	}
	return text;
}

/*
 * --config FILE: each line "option value", "option=value" or "option",
 * the option a long one without its dashes, the value the rest of the line
 * (surrounding blanks dropped, inner ones kept); blank lines and lines whose
 * first non-blank character is # are skipped.  Each option is taken as if
 * it stood on the command line where --config does.
 */
static int parse_config(const char *path, struct dmu_options *o, unsigned *serving)
{
	char *line, *next;
	unsigned lineno = 0;

	if (o->config_text) {
		dmu_error("--config given twice");
		return -1;
	}
	o->config_text = read_config(path);
	if (!o->config_text)
		return -1;
	for (line = o->config_text; line; line = next) {
		const struct option *lo;
		char *key, *value;
		size_t klen;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		lineno++;
		key = trim(line);
		if (!*key || *key == '#')
			continue;
		klen = strspn(key, "abcdefghijklmnopqrstuvwxyz0123456789-");
		value = key + klen;
		if (*value && *value != '=' && *value != ' ' && *value != '\t') {
			dmu_error("%s:%u: expected \"option value\", got '%s'", path, lineno, key);
			return -1;
		}
		while (*value == ' ' || *value == '\t')
			value++;
		if (*value == '=')
			value++;
		key[klen] = '\0';
		value = trim(value);
		lo = klen ? find_option(key) : NULL;
		if (!lo) {
			dmu_error("%s:%u: unknown option '%s' (see --help)", path, lineno, key);
			return -1;
		}
		if (lo->val == 'c' || lo->val == 'h' || lo->val == 'V' || lo->val == OPT_RESIZE) {
			dmu_error("%s:%u: '%s' cannot be set in a configuration file", path, lineno, key);
			return -1;
		}
		if (lo->has_arg == required_argument && !*value) {
			dmu_error("%s:%u: option '%s' needs a value", path, lineno, key);
			return -1;
		}
		if (lo->has_arg == no_argument && *value) {
			dmu_error("%s:%u: option '%s' takes no value", path, lineno, key);
			return -1;
		}
		if (parse_one(lo->val, lo->has_arg == no_argument ? NULL : value, o)) {
			dmu_error("%s:%u: in option '%s'", path, lineno, key);
			return -1;
		}
		*serving += lo->val != 'f' && lo->val != 'b' && lo->val != 'n';
	}
	return 0;
}

void dmu_options_free(struct dmu_options *o)
{
	free(o->config_text);
	o->config_text = NULL;
}

enum dmu_parse_result dmu_options_parse(int argc, char **argv,
					struct dmu_options *o)
{
	unsigned serving = 0;	/* options that only a serving daemon takes */
	int opt;

	memset(o, 0, sizeof(*o));
	o->threads = 1;
	o->poll_us = DMU_DEFAULT_POLL_US;
	optind = 1;
	opterr = 0;	/* we print our own messages */

	while ((opt = getopt_long(argc, argv, ":b:f:n:s:t:draR:m:c:hV",
				  long_options, NULL)) != -1) {
		switch (opt) {
		case 'h':
			dmu_usage(stdout);
			return DMU_PARSE_EXIT;
		case 'V':
			printf("dmuserd %s\n", DMUSERD_VERSION);
			return DMU_PARSE_EXIT;
		case ':':
			dmu_error("option '%s' needs an argument (see --help)", argv[optind - 1]);
			return DMU_PARSE_ERROR;
		case '?':
			dmu_error("unknown option '%s' (see --help)", argv[optind - 1]);
			return DMU_PARSE_ERROR;
		case 'c':
			if (parse_config(optarg, o, &serving))
				return DMU_PARSE_ERROR;
			break;
		default:
			if (parse_one(opt, optarg, o))
				return DMU_PARSE_ERROR;
			serving += opt != 'f' && opt != 'b' && opt != 'n' && opt != OPT_RESIZE;
		}
	}
	if (optind < argc) {
		dmu_error("unexpected argument '%s' (see --help)", argv[optind]);
		return DMU_PARSE_ERROR;
	}
	if (o->backend && o->file) {
		dmu_error("--file and --backend both name the backend; give one (--file PATH is --backend file:PATH)");
		return DMU_PARSE_ERROR;
	}
	if (o->backend) {
		o->type = dmu_backend_find(o->backend);
		if (!o->type)
			return DMU_PARSE_ERROR;
		if (!strcmp(o->type->name, "file"))
			o->file = o->backend + strlen("file:");
		if (o->file && !*o->file) {
			dmu_error("invalid --backend '%s': expected file:PATH", o->backend);
			return DMU_PARSE_ERROR;
		}
	} else if (o->file) {
		o->backend = o->file;	/* shown as given; the type says file */
		o->type = dmu_backend_find("file:");
	}
	if (o->resize) {
		if (!o->name || serving) {
			dmu_error("--resize takes --name and, optionally, --file, nothing else (see --help)");
			return DMU_PARSE_ERROR;
		}
		if (o->backend && !o->file) {
			dmu_error("--resize grows only a file backend; %s cannot grow (resize the export, then run --resize without --backend)",
				  o->backend);
			return DMU_PARSE_ERROR;
		}
		return DMU_PARSE_OK;
	}
	if (o->attach && o->table_opts) {
		dmu_error("--queue-depth, --timeout-ms and --recovery-ms set up the table of a new device; --attach keeps the table it finds (change it with dmsetup message)");
		return DMU_PARSE_ERROR;
	}
	if (!o->backend || !o->name) {
		dmu_error("--backend (or --file) and --name are required (see --help)");
		return DMU_PARSE_ERROR;
	}
	if (o->reconnect_ms_set && strcmp(o->type->name, "nbd") && strcmp(o->type->name, "rbd")) {
		dmu_error("--reconnect-ms is for the NBD and RBD backends: a %s backend has no server to reconnect to",
			  o->type->name);
		return DMU_PARSE_ERROR;
	}
	return DMU_PARSE_OK;
}
