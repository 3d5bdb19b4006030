/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Command line: what the user asked for, checked for syntax only.
 * Whether the file exists or the name is free is for main.c to find out.
 */
#ifndef DMUSERD_OPTIONS_H
#define DMUSERD_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>


#define DMU_MAX_THREADS 256
/*
 * --poll-us: busy polling after a read that brought requests (the library's
 * dmu_channel_opts.poll_us).  The default is what make bench measured
 * (tests/bench/README.md, "Busy polling").
 */
#define DMU_DEFAULT_POLL_US 50
#define DMU_MAX_POLL_US 1000000
#define DMU_STR_(x) #x
#define DMU_STR(x) DMU_STR_(x)

struct dmu_backend_type;

struct dmu_options {
	/*
	 * The backend: --backend URI, or --file PATH (= file:PATH).  After
	 * parsing, backend is the URI ("file:PATH" for --file), type its line
	 * of the table of schemes, and file the path for the file backend
	 * (NULL for another).
	 */
	const char *backend;
	const struct dmu_backend_type *type;
	const char *file;
	const char *name;
	uint64_t size;		/* bytes; 0 = the backing file's size */
	unsigned threads;
	bool direct;
	bool read_only;
	bool attach;
	bool adopt;		/* create, or serve the device a dead dmuserd left */
	const char *ready_file;
	struct {
		bool enabled;
		char text[80];	/* normalised "ADDR:PORT" or "[ADDR6]:PORT" */
	} metrics;
	bool no_batch;		/* never ask for several requests per read() */
	unsigned poll_us;	/* busy polling after a read (dmu_channel_opts) */
	bool no_splice;		/* never give libdmuser dmu_ops.locate */
	unsigned inject_delay_us;
	/*
	 * Table options (module/README.md, "Table line") for a device
	 * dmuserd creates; 0 leaves one out (the target's default).  Refused
	 * with --attach, whose table is already there.
	 */
	uint32_t queue_depth;
	uint32_t timeout_ms;
	uint32_t recovery_ms;
	unsigned table_opts;	/* how many of the three were given */
	/*
	 * --reconnect-ms: how long the NBD backend holds requests while it
	 * reconnects to a lost server; unset: the table's recovery_ms (at
	 * start-up, and again at each SIGHUP).
	 */
	unsigned reconnect_ms;
	bool reconnect_ms_set;
	/*
	 * --resize BYTES: no daemon, a one-shot command: grow --file (if
	 * given) and reload the live table of --name with this size.
	 */
	uint64_t resize;
	/*
	 * --config FILE: its text, kept for as long as the options (their
	 * strings point into it); dmu_options_free() frees it.
	 */
	char *config_text;
};

enum dmu_parse_result {
	DMU_PARSE_OK,		/* run the daemon */
	DMU_PARSE_EXIT,		/* --help or --version printed; exit 0 */
	DMU_PARSE_ERROR,	/* message printed; exit 2 */
};

enum dmu_parse_result dmu_options_parse(int argc, char **argv,
					struct dmu_options *opts);

/* Frees what dmu_options_parse() allocated (the --config file's text). */
void dmu_options_free(struct dmu_options *opts);

/*
 * "4096", "64K", "1M", "2G", "1T" (binary multiples; "KiB"-style and "B"
 * suffixes are accepted too).  Returns 0, or -1 for bad syntax or overflow.
 */
int dmu_parse_size(const char *text, uint64_t *out);

/*
 * A --metrics address: "PORT", ":PORT", "ADDR:PORT" or "[ADDR6]:PORT",
 * ADDR a numeric IPv4 or IPv6 address; without one, 127.0.0.1.  Writes
 * the normalised form ("127.0.0.1:9100", "[::1]:9100") to out, which
 * libdmuser's dmu_http_start() binds.  Returns 0, or -1 for bad syntax.
 */
int dmu_parse_listen(const char *text, char *out, size_t len);

void dmu_usage(FILE *out);

#endif
