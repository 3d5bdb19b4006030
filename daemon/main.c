// SPDX-License-Identifier: GPL-2.0
/*
 * dmuserd: serve a dm-user device from a file or an NBD export.
 *
 * Start-up, in this order, so that a failure at any step leaves nothing
 * behind and no request ever waits for a thread that is not there yet:
 *   1. signals routed to a signalfd
 *   2. backend opened (--backend: a file, grown to --size; or one NBD
 *      connection per worker)
 *   3. with --attach, the device attached: a "user" target
 *   4. metrics listener, if asked for; then PR_SET_IO_FLUSHER, mlockall
 *   5. the device created (the name must be free) with its table
 *      loaded, still suspended; with --adopt, a device of that name
 *      already there is attached instead (as in 3)
 *   6. one channel opened per worker, workers started
 *   7. the device resumed: I/O may flow now
 *   8. the ready file written, and systemd told READY=1 (sd_notify: a
 *      no-op when not started by systemd with Type=notify)
 * SIGHUP re-reads the device's table and logs it; dmuserd goes on.
 * Shutdown on SIGINT/SIGTERM: the device is removed while the workers
 * still serve (dm completes in-flight I/O first), the workers see ENOTBLK
 * and exit, main joins them.  With --attach the device stays: the workers
 * finish the requests in hand, close their channels and exit.
 *
 * The device, its channels, the wire protocol, the metrics and their HTTP
 * endpoint are libdmuser's (<dmuser.h>, linked statically); dmuserd adds
 * the backends (backend.c, the table of schemes), their callbacks (ops.c), the worker pool, the options,
 * the signals and the ready file.
 */
#include <dmuser.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "backend.h"
#include "backend_file.h"
#include "backend_metrics.h"
#include "log.h"
#include "options.h"
#include "ready.h"
#include "version.h"
#include "serve.h"

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2
#define KEEP_RUNNING (-1)		/* not an exit status: the main loop goes on */
#define WORKER_EXIT_WAIT_MS 10000	/* after removal, before forcing them */
#define WORKER_STOP_WAIT_MS 30000	/* for the requests in hand to finish */
#define WORKER_BUFFER (2u * 1024 * 1024)	/* payload bytes per channel */
#define MAPPER_DIR "/dev/mapper"

/* The live page (web.S), served at /. */
extern const char dmu_web_index_html[], dmu_web_index_html_end[];

struct daemon {
	struct dmu_options opt;
	struct dmu_backend *backend;
	struct dmu_pool pool;
	struct dmu_device *dev;
	_Atomic(struct dmu_device *) metrics_dev;	/* what /metrics renders, once there */
	struct dmu_metrics_opts metrics_opts;
	struct dmu_http *http;
	char metrics_text[96];
	bool created;		/* we created (or adopted) the device: remove it at exit */
	bool ready_written;
	int signal_fd;
	int watchdog_ms;	/* WATCHDOG=1 every this often; -1: no watchdog */
};

/* ---- 1. signals, and the process's memory (4) ---------------------------- */

static int setup_signals(struct daemon *d)
{
	sigset_t set;

	/*
	 * Blocked before any thread exists, so every thread inherits the
	 * mask: SIGINT/SIGTERM/SIGHUP only ever reach main's signalfd.
	 */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	if (pthread_sigmask(SIG_BLOCK, &set, NULL)) {
		dmu_error("cannot set up signals: %s", strerror(errno));
		return -1;
	}
	signal(SIGPIPE, SIG_IGN);
	d->signal_fd = signalfd(-1, &set, SFD_CLOEXEC);
	if (d->signal_fd < 0) {
		dmu_error("cannot create a signalfd: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * A daemon that serves a block device must never wait for memory that can
 * only be freed by writing to that same device.
 */
static void setup_memory(void)
{
	if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0))
		dmu_warn("prctl(PR_SET_IO_FLUSHER): %s (needs CAP_SYS_RESOURCE and Linux 5.6); reclaim may wait on this device",
			 strerror(errno));
	if (mlockall(MCL_CURRENT | MCL_FUTURE))
		dmu_warn("mlockall: %s; memory is not locked and may be paged out",
			 strerror(errno));
}

/* ---- 2 and 3. the backing file, and the device with --attach ---------- */

/* 0, or the exit status: a URI the backend finds bad is a usage error. */
static int open_backend(struct daemon *d)
{
	struct dmu_backend_args args = {
		.uri = d->opt.backend,
		.path = d->opt.file,
		.size = d->opt.size,
		.workers = d->opt.threads,
		.direct = d->opt.direct,
		.read_only = d->opt.read_only,
	};
	int err = d->opt.type->open(&args, &d->backend);

	if (err)
		d->backend = NULL;
	return err == -2 ? EXIT_USAGE : err ? EXIT_RUNTIME : 0;
}

/* --attach: the device's own size, control name and read-only state rule. */
static int attach_device(struct daemon *d)
{
	uint64_t dev_size;

	if (dmu_device_attach(d->opt.name, &d->dev))
		return -1;
	dev_size = dmu_device_size(d->dev);
	if (d->opt.size && d->opt.size != dev_size) {
		dmu_error("--size %llu differs from the size of device %s (%llu bytes)",
			  (unsigned long long)d->opt.size, d->opt.name,
			  (unsigned long long)dev_size);
		return -1;
	}
	if (dev_size > d->backend->size) {
		dmu_error("device %s is %llu bytes but %s only %llu",
			  d->opt.name, (unsigned long long)dev_size, d->opt.backend,
			  (unsigned long long)d->backend->size);
		return -1;
	}
	for (unsigned i = 0; i < d->opt.threads; i++)
		dmu_backend_for_worker(d->backend, i)->size = dev_size;
	if (dmu_device_read_only(d->dev) && !d->opt.read_only) {
		dmu_info("device %s is read-only; refusing writes", d->opt.name);
		d->opt.read_only = true;
	}
	atomic_store(&d->metrics_dev, d->dev);
	return 0;
}

/* ---- 4. metrics -------------------------------------------------------- */

/* /metrics before the device exists (a few milliseconds) closes the connection. */
static int render_metrics(void *arg, enum dmu_metrics_format format, char **buf, size_t *len)
{
	struct daemon *d = arg;
	struct dmu_device *dev = atomic_load(&d->metrics_dev);
	struct dmu_backend_counters c = { 0 };
	int err;

	if (!dev)
		return -EAGAIN;
	err = dmu_metrics_render(dev, format, &d->metrics_opts, buf, len);
	if (err)
		return err;
	if (d->backend->ops->counters)
		d->backend->ops->counters(d->backend, &c);
	err = dmu_backend_metrics_add(&c, format, buf, len);
	if (err) {
		free(*buf);
		*buf = NULL;
	}
	return err;
}

static int start_metrics(struct daemon *d)
{
	d->metrics_opts = (struct dmu_metrics_opts){
		.sz = sizeof(d->metrics_opts),
		.version = DMUSERD_VERSION,
		.backing_file = d->opt.file ? d->opt.file : d->opt.backend,
		.direct = d->opt.direct,
		.backend = d->opt.type->name,
	};
	if (!d->opt.metrics.enabled)
		return 0;

	DMU_OPTS(dmu_http_opts, o,
		 .render = render_metrics,
		 .render_arg = d,
		 .index_html = dmu_web_index_html,
		 .index_html_len = (size_t)(dmu_web_index_html_end - dmu_web_index_html));
	if (dmu_http_start(NULL, d->opt.metrics.text, &o, &d->http))
		return -1;
	/* The address bound, with the real port (--metrics 0 picks one). */
	snprintf(d->metrics_text, sizeof(d->metrics_text), "%s", dmu_http_address(d->http));
	return 0;
}

/* ---- 5 to 7. device and workers ---------------------------------------- */

/*
 * The reconnect window of a remote backend (NBD, RBD): --reconnect-ms, or else the table's
 * recovery_ms, read from the live table (the one dmuserd created, or the
 * one it attached to).  Again at each SIGHUP, which follows a
 * `dmsetup message NAME 0 recovery_ms MS`.
 */
static void set_reconnect_window(struct dmu_backend *b, const struct dmu_device *dev,
				 const struct dmu_options *o)
{
	char table[320];
	const char *at;
	unsigned long ms = 0;

	if (!b->ops->set_reconnect_ms)
		return;
	if (o->reconnect_ms_set) {
		ms = o->reconnect_ms;
	} else if (dmu_device_table(dev, table, sizeof(table)) == 0) {
		/* "<start> <sectors> <control> [<n> <key> <value> ...]" */
		at = strstr(table, " recovery_ms ");
		if (at)
			ms = strtoul(at + strlen(" recovery_ms "), NULL, 10);
	}
	if (ms > UINT32_MAX)
		ms = UINT32_MAX;
	b->ops->set_reconnect_ms(b, (uint32_t)ms);
	dmu_info("%s: a lost server is waited for %lu ms (%s)", o->type->name, ms,
		 o->reconnect_ms_set ? "--reconnect-ms" : "the table's recovery_ms");
}

static int open_channels(struct daemon *d)
{
	const struct dmu_backend_async_ops *async = d->backend->ops->async;

	set_reconnect_window(d->backend, d->dev, &d->opt);
	/*
	 * An asynchronous backend: async->depth slots of the device's
	 * largest request each (buffer_size 0), since an asynchronous
	 * channel answers a larger one with an error.
	 */
	DMU_OPTS(dmu_channel_opts, o,
		 .batch = d->opt.no_batch ? DMU_BATCH_OFF : DMU_BATCH_AUTO,
		 .buffer_size = async ? 0 : WORKER_BUFFER,
		 .async_depth = async ? async->depth : 0,
		 .mem_align = d->backend->mem_align,
		 .no_io_flusher = true,		/* setup_memory() did it for the process */
		 .poll_us = d->opt.poll_us);
	struct dmu_serve_ctx ctx = {
		.inject_delay_us = d->opt.inject_delay_us,
		.read_only = d->opt.read_only,
		.splice = !d->opt.no_splice,
	};

	for (unsigned i = 0; i < d->opt.threads; i++) {
		ctx.backend = dmu_backend_for_worker(d->backend, i);
		if (dmu_worker_open(&d->pool.workers[i], d->dev, &o, &ctx))
			return -1;
	}
	return 0;
}

/*
 * --adopt, when the name is taken: the device a dmuserd left when it died
 * (SIGKILL, a crash; Restart= starts us again) is served as with --attach,
 * and removed at exit as if we had created it.  Its table stays as it is.
 * It is ours to remove only once our workers serve it: removing it before
 * would wait for the requests it holds, which nobody would answer.
 */
static int adopt_device(struct daemon *d)
{
	dmu_info("device %s exists already (left by a dmuserd that stopped?); serving it (--adopt)",
		 d->opt.name);
	if (attach_device(d))
		return -1;
	if (open_channels(d) || dmu_pool_start(&d->pool))
		return -1;
	d->created = true;
	/*
	 * A device left suspended (a dmuserd that died during a resize) serves
	 * again.  One a dmuserd left between its create and its resume has no
	 * live table: attach_device() refused it above.
	 */
	return dmu_device_resume(d->dev);
}

static int bring_up(struct daemon *d)
{
	if (!d->opt.attach) {
		DMU_OPTS(dmu_device_opts, table,
			 .queue_depth = d->opt.queue_depth,
			 .timeout_ms = d->opt.timeout_ms,
			 .recovery_ms = d->opt.recovery_ms,
			 .read_only = d->opt.read_only);
		int err = dmu_device_create(d->opt.name, d->backend->size, &table, &d->dev);

		if (err == -EEXIST && d->opt.adopt)
			return adopt_device(d);
		if (err == -EEXIST)
			dmu_error("device %s already exists", d->opt.name);
		if (err)
			return -1;
		d->created = true;
		atomic_store(&d->metrics_dev, d->dev);
	}
	if (open_channels(d) || dmu_pool_start(&d->pool))
		return -1;
	if (!d->opt.attach && dmu_device_resume(d->dev))
		return -1;
	return 0;
}

/* ---- 8. the ready file ------------------------------------------------- */

static int write_ready_file(struct daemon *d)
{
	char text[1024];

	if (!d->opt.ready_file)
		return 0;
	snprintf(text, sizeof(text),
		 "pid=%d\nname=%s\ndevice=" MAPPER_DIR "/%s\ncontrol=%s\nmetrics=%s\n",
		 (int)getpid(), d->opt.name, d->opt.name, dmu_device_control_path(d->dev),
		 d->metrics_text);
	if (dmu_ready_write(d->opt.ready_file, text))
		return -1;
	d->ready_written = true;
	return 0;
}

/*
 * systemd (Type=notify): READY=1 once the device is live and every worker
 * serves, as the ready file.  With WatchdogSec=, the main loop pings at
 * half the interval: a main loop stuck (in a removal, say) gets the
 * daemon restarted.
 */
static void notify_ready(struct daemon *d)
{
	uint64_t usec = 0;

	sd_notifyf(0, "READY=1\nSTATUS=serving %s on " MAPPER_DIR "/%s", d->opt.backend,
		   d->opt.name);
	d->watchdog_ms = -1;
	if (sd_watchdog_enabled(0, &usec) > 0 && usec) {
		d->watchdog_ms = (int)(usec / 2000);
		if (d->watchdog_ms < 1)
			d->watchdog_ms = 1;
	}
}

/* ---- running and stopping ---------------------------------------------- */

/* Remove the device we created, with the workers still serving. */
static int remove_device(struct daemon *d)
{
	int err = dmu_device_remove(d->dev);

	if (err)
		return err;
	d->created = false;
	if (dmu_pool_wait(&d->pool, WORKER_EXIT_WAIT_MS, false)) {
		dmu_warn("workers did not see the target go; stopping them");
		dmu_pool_wait(&d->pool, WORKER_STOP_WAIT_MS, true);
	}
	return 0;
}

static int stop_workers(struct daemon *d)
{
	if (dmu_pool_wait(&d->pool, WORKER_STOP_WAIT_MS, true)) {
		dmu_error("a worker did not finish its request in %u s",
			  WORKER_STOP_WAIT_MS / 1000);
		return -1;
	}
	return 0;
}

/*
 * SIGHUP, the conventional "reload": dmuserd does not read its --config
 * again (nothing in it can change on a live device), it re-reads the
 * device's live table and says what it serves, in one line.  It does not stop.  Requests beyond the size it
 * serves are accepted once the backend has grown (probe_size, ops.c), so
 * a table reloaded larger needs nothing more.
 */
static void on_hangup(struct daemon *d)
{
	DMU_OPTS(dmu_target_status, ts);
	char table[320], status[200] = "unavailable";

	if (dmu_device_refresh(d->dev) || dmu_device_table(d->dev, table, sizeof(table))) {
		dmu_warn("SIGHUP: cannot read the table of %s; still serving", d->opt.name);
		return;
	}
	if (dmu_device_status(d->dev, &ts) == 0)
		snprintf(status, sizeof(status), "%llu %llu %llu %llu %llu %llu %llu",
			 (unsigned long long)ts.channels, (unsigned long long)ts.queued,
			 (unsigned long long)ts.in_flight, (unsigned long long)ts.completed,
			 (unsigned long long)ts.errors, (unsigned long long)ts.timeouts,
			 (unsigned long long)ts.requeues);

	uint64_t size = dmu_device_size(d->dev);
	dmu_info("SIGHUP: %s: table \"%s\" (%llu bytes%s), serving %llu bytes with %u of %u workers; status %s",
		 d->opt.name, table, (unsigned long long)size,
		 dmu_device_read_only(d->dev) ? ", read-only" : "",
		 (unsigned long long)size, dmu_pool_running(&d->pool), d->opt.threads, status);
	set_reconnect_window(d->backend, d->dev, &d->opt);
}

/* A signal: returns KEEP_RUNNING, or the exit status. */
static int on_signal(struct daemon *d)
{
	struct signalfd_siginfo si;

	if (read(d->signal_fd, &si, sizeof(si)) != sizeof(si))
		return KEEP_RUNNING;
	if (si.ssi_signo == SIGHUP) {
		on_hangup(d);
		return KEEP_RUNNING;
	}
	dmu_info("%s: shutting down", strsignal((int)si.ssi_signo));
	sd_notify(0, "STOPPING=1");
	if (d->opt.attach)
		return stop_workers(d) ? EXIT_RUNTIME : 0;

	int err = remove_device(d);
	if (err == -EBUSY) {
		dmu_error("device %s is busy (mounted or open); still serving it: close it and send SIGTERM again",
			  d->opt.name);
		return KEEP_RUNNING;
	}
	if (err) {
		stop_workers(d);
		return EXIT_RUNTIME;
	}
	return 0;
}

/* Workers ended by themselves: KEEP_RUNNING while some still run, or the exit status. */
static int on_worker_exit(struct daemon *d)
{
	dmu_pool_collect(&d->pool);
	if (d->pool.exited < dmu_pool_started(&d->pool))
		return KEEP_RUNNING;

	bool failed = false;
	for (unsigned i = 0; i < d->opt.threads; i++)
		failed |= atomic_load(&d->pool.workers[i].exit) == DMU_WORKER_FAILED;
	if (failed) {
		dmu_error("every worker has stopped; device %s is left in place (restart with --attach)",
			  d->opt.name);
		d->created = false;	/* removing it would wait for I/O nobody serves */
		return EXIT_RUNTIME;
	}
	dmu_info("device %s was removed; exiting", d->opt.name);
	d->created = false;
	return 0;
}

static int run(struct daemon *d)
{
	int status = KEEP_RUNNING;

	dmu_info("serving %s on " MAPPER_DIR "/%s (%llu bytes, %u thread%s)%s%s",
		 d->opt.backend, d->opt.name, (unsigned long long)d->backend->size,
		 d->opt.threads, d->opt.threads == 1 ? "" : "s",
		 d->http ? ", metrics on " : "", d->metrics_text);
	while (status == KEEP_RUNNING) {
		struct pollfd p[2] = {
			{ .fd = d->signal_fd, .events = POLLIN },
			{ .fd = d->pool.exit_fd, .events = POLLIN },
		};

		int n = poll(p, 2, d->watchdog_ms);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			dmu_error("poll: %s", strerror(errno));
			return EXIT_RUNTIME;
		}
		if (d->watchdog_ms >= 0)
			sd_notify(0, "WATCHDOG=1");
		if (n == 0)
			continue;
		if (p[0].revents)
			status = on_signal(d);
		else if (p[1].revents)
			status = on_worker_exit(d);
	}
	return status;
}

/* After a failed start-up, undo what was done. */
static void tear_down(struct daemon *d)
{
	if (d->created) {
		int err = remove_device(d);

		if (err == 0)
			return;
		if (err == -EBUSY)
			dmu_error("device %s is busy (opened already?) and is left in place",
				  d->opt.name);
	}
	if (dmu_pool_started(&d->pool))
		dmu_pool_wait(&d->pool, WORKER_STOP_WAIT_MS, true);
}

/*
 * dmuserd --resize: grow the backing file if asked, then reload and resume
 * the device with its new length.  The dmuserd serving it goes on: it
 * accepts requests beyond the size it started with once its backend has
 * grown (probe_size, ops.c).
 */
static int resize(const struct dmu_options *o)
{
	struct dmu_device *dev;
	int err;

	if (o->file && dmu_file_grow(o->file, o->resize))
		return EXIT_RUNTIME;
	if (dmu_device_attach(o->name, &dev))
		return EXIT_RUNTIME;
	err = dmu_device_resize(dev, o->resize);
	dmu_device_free(dev);
	if (err) {
		dmu_error("cannot resize %s to %llu bytes: %s", o->name,
			  (unsigned long long)o->resize, strerror(-err));
		return EXIT_RUNTIME;
	}
	dmu_info("%s resized to %llu bytes", o->name, (unsigned long long)o->resize);
	return 0;
}

/* The library's messages, under dmuserd's prefix. */
static void library_log(void *arg, int level, const char *msg)
{
	(void)arg;
	if (level <= DMU_LOG_ERROR)
		dmu_error("%s", msg);
	else if (level == DMU_LOG_WARNING)
		dmu_warn("%s", msg);
	else
		dmu_info("%s", msg);
}

int main(int argc, char **argv)
{
	static struct daemon d;
	int status = EXIT_RUNTIME;

	d.watchdog_ms = -1;
	switch (dmu_options_parse(argc, argv, &d.opt)) {
	case DMU_PARSE_EXIT:
		return 0;
	case DMU_PARSE_ERROR:
		return EXIT_USAGE;
	case DMU_PARSE_OK:
		break;
	}
	dmu_set_log(library_log, NULL, DMU_LOG_INFO);
	if (d.opt.resize)
		return resize(&d.opt);
	if (setup_signals(&d))
		return EXIT_RUNTIME;
	status = open_backend(&d);
	if (status)
		return status;
	status = EXIT_RUNTIME;
	if (dmu_pool_init(&d.pool, d.opt.threads))
		return EXIT_RUNTIME;

	if ((!d.opt.attach || attach_device(&d) == 0) && start_metrics(&d) == 0) {
		setup_memory();
		if (bring_up(&d) == 0 && write_ready_file(&d) == 0) {
			notify_ready(&d);
			status = run(&d);
		}
		else
			tear_down(&d);
	}

	/* Every worker, also one stuck in its backend, ends before anything is freed. */
	dmu_pool_join(&d.pool);
	dmu_http_stop(d.http);
	if (d.ready_written)
		unlink(d.opt.ready_file);
	if (d.dev)
		dmu_device_free(d.dev);
	if (d.backend)
		d.opt.type->close(d.backend);
	dmu_pool_free(&d.pool);
	dmu_options_free(&d.opt);
	return status;
}
