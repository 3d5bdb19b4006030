// SPDX-License-Identifier: GPL-2.0
/*
 * dmuserd: serve a dm-user device from a file.
 *
 * Start-up, in this order, so that a failure at any step leaves nothing
 * behind and no request ever waits for a thread that is not there yet:
 *   1. signals routed to a signalfd
 *   2. backing file opened (and grown to --size)
 *   3. the name checked: free (create) or a "user" target (--attach)
 *   4. metrics listener, if asked for; then PR_SET_IO_FLUSHER, mlockall
 *   5. the device created with its table loaded, still suspended
 *   6. one channel opened per worker, workers started
 *   7. the device resumed: I/O may flow now
 *   8. the ready file written
 * SIGHUP re-reads the device's table and logs it; dmuserd goes on.
 * Shutdown on SIGINT/SIGTERM: the device is removed while the workers
 * still serve (dm completes in-flight I/O first), the workers see ENOTBLK
 * and exit, main joins them.  With --attach the device stays: the workers
 * finish the requests in hand, close their channels and exit.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "backend_file.h"
#include "device.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
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

struct daemon {
	struct dmu_options opt;
	struct dmu_file_backend backend;
	struct dmu_metrics metrics;
	struct dmu_pool pool;
	struct dmu_http *http;
	struct dmu_http_source http_src;
	char control_name[128];
	char control_path[256];
	char metrics_text[96];
	bool created;		/* we created the device: remove it at exit */
	bool ready_written;
	int signal_fd;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- 1. signals, and the process's memory (4) ---------------------------- */

static int setup_signals(struct daemon *d)
{
	sigset_t set;

	/*
	 * Blocked before any thread exists, so every thread inherits the
	 * mask: SIGINT/SIGTERM/SIGHUP only ever reach main's signalfd, SIGUSR1 only
	 * the workers that unblock it.
	 */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	if (pthread_sigmask(SIG_BLOCK, &set, NULL) || dmu_workers_init_signals()) {
		dmu_error("cannot set up signals: %s", strerror(errno));
		return -1;
	}
	signal(SIGPIPE, SIG_IGN);
	sigdelset(&set, SIGUSR1);
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

/* ---- 2 and 3. the backing file and the name ---------------------------- */

static int open_backend(struct daemon *d)
{
	struct dmu_file_open_args args = {
		.path = d->opt.file,
		.size = d->opt.size,
		.direct = d->opt.direct,
		.read_only = d->opt.read_only,
	};

	return dmu_file_backend_open(&d->backend, &args);
}

/* --attach: the device's own size and control name rule. */
static int adopt_device(struct daemon *d)
{
	struct dmu_device_state st;
	uint64_t dev_size;

	if (dmu_device_inspect(d->opt.name, &st))
		return -1;
	dev_size = st.sectors * 512;
	if (d->opt.size && d->opt.size != dev_size) {
		dmu_error("--size %llu differs from the size of device %s (%llu bytes)",
			  (unsigned long long)d->opt.size, d->opt.name,
			  (unsigned long long)dev_size);
		return -1;
	}
	if (dev_size > d->backend.base.size) {
		dmu_error("device %s is %llu bytes but %s only %llu",
			  d->opt.name, (unsigned long long)dev_size, d->opt.file,
			  (unsigned long long)d->backend.base.size);
		return -1;
	}
	d->backend.base.size = dev_size;
	if (st.read_only && !d->opt.read_only) {
		dmu_info("device %s is read-only; refusing writes", d->opt.name);
		d->opt.read_only = true;
	}
	snprintf(d->control_name, sizeof(d->control_name), "%s", st.control_name);
	return 0;
}

static int check_name(struct daemon *d)
{
	if (d->opt.attach)
		return adopt_device(d);

	int exists = dmu_device_exists(d->opt.name);
	if (exists < 0)
		return -1;
	if (exists) {
		dmu_error("device %s already exists", d->opt.name);
		return -1;
	}
	snprintf(d->control_name, sizeof(d->control_name), "%s", d->opt.name);
	return 0;
}

/* ---- 4. metrics -------------------------------------------------------- */

static int target_status(void *ctx, char *buf, size_t len)
{
	return dmu_device_status(ctx, buf, len);
}

static int start_metrics(struct daemon *d, uint64_t start_ns)
{
	struct dmu_http_source *src = &d->http_src;

	src->metrics = &d->metrics;
	src->start_ns = start_ns;
	src->info = (struct dmu_metrics_info){
		.version = DMUSERD_VERSION,
		.name = d->opt.name,
		.backing_file = d->opt.file,
		.control_path = d->control_path,
		.size_bytes = d->backend.base.size,
		.threads = d->opt.threads,
		.read_only = d->opt.read_only,
		.direct = d->opt.direct,
	};
	src->target_status = target_status;
	src->target_status_ctx = (void *)d->opt.name;
	if (!d->opt.metrics.enabled)
		return 0;

	d->http = dmu_http_start(&d->opt.metrics, src);
	if (!d->http)
		return -1;

	/* Report the port actually bound (--metrics 0 picks one). */
	const char *text = d->opt.metrics.text;
	size_t host_len = (size_t)(strrchr(text, ':') - text);
	snprintf(d->metrics_text, sizeof(d->metrics_text), "%.*s:%u",
		 (int)host_len, text, dmu_http_port(d->http));
	return 0;
}

/* ---- 5 to 7. device and workers ---------------------------------------- */

static int open_channels(struct daemon *d)
{
	for (unsigned i = 0; i < d->opt.threads; i++) {
		struct dmu_worker *w = &d->pool.workers[i];
		struct dmu_channel_config cfg = {
			.backend = &d->backend.base,
			.metrics = &d->metrics.thread[i],
			.capacity = DMU_CHANNEL_DEFAULT_CAPACITY,
			.read_only = d->opt.read_only,
			.batch = !d->opt.no_batch,
			.inject_delay_us = d->opt.inject_delay_us,
		};

		w->control_path = d->control_path;
		if (dmu_worker_open(w, &cfg))
			return -1;
	}
	return 0;
}

static int bring_up(struct daemon *d)
{
	snprintf(d->control_path, sizeof(d->control_path), DMU_CONTROL_DIR "/%s",
		 d->control_name);
	if (!d->opt.attach) {
		struct dmu_table_opts table = {
			.queue_depth = d->opt.queue_depth,
			.timeout_ms = d->opt.timeout_ms,
			.recovery_ms = d->opt.recovery_ms,
		};

		if (dmu_device_create(d->opt.name, d->control_name,
				      d->backend.base.size / 512, d->opt.read_only, &table))
			return -1;
		d->created = true;
	}
	if (open_channels(d) || dmu_pool_start(&d->pool))
		return -1;
	if (!d->opt.attach && dmu_device_resume(d->opt.name))
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
		 "pid=%d\nname=%s\ndevice=" DMU_MAPPER_DIR "/%s\ncontrol=%s\nmetrics=%s\n",
		 (int)getpid(), d->opt.name, d->opt.name, d->control_path, d->metrics_text);
	if (dmu_ready_write(d->opt.ready_file, text))
		return -1;
	d->ready_written = true;
	return 0;
}

/* ---- running and stopping ---------------------------------------------- */

/* Remove the device we created, with the workers still serving. */
static int remove_device(struct daemon *d)
{
	int err = dmu_device_remove(d->opt.name);

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
 * SIGHUP, the conventional "reload": dmuserd has no configuration file to
 * read again, so it re-reads the device's live table and says what it
 * serves, in one line.  It does not stop.  Requests beyond the size it
 * serves are accepted once the backend has grown (channel.c), so a table
 * reloaded larger needs nothing more.
 */
static void on_hangup(struct daemon *d)
{
	struct dmu_device_state st;
	char status[256] = "unavailable";

	if (dmu_device_inspect(d->opt.name, &st)) {
		dmu_warn("SIGHUP: cannot read the table of %s; still serving", d->opt.name);
		return;
	}
	dmu_device_status(d->opt.name, status, sizeof(status));
	dmu_info("SIGHUP: %s: table \"%s\" (%llu bytes%s), serving %llu bytes with %u of %u workers; status %s",
		 d->opt.name, st.params, (unsigned long long)st.sectors * 512,
		 st.read_only ? ", read-only" : "",
		 (unsigned long long)atomic_load(&d->backend.base.size),
		 dmu_pool_running(&d->pool), d->opt.threads, status);
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

	dmu_info("serving %s on " DMU_MAPPER_DIR "/%s (%llu bytes, %u thread%s)%s%s",
		 d->opt.file, d->opt.name, (unsigned long long)d->backend.base.size,
		 d->opt.threads, d->opt.threads == 1 ? "" : "s",
		 d->http ? ", metrics on " : "", d->metrics_text);
	while (status == KEEP_RUNNING) {
		struct pollfd p[2] = {
			{ .fd = d->signal_fd, .events = POLLIN },
			{ .fd = d->pool.exit_fd, .events = POLLIN },
		};

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			dmu_error("poll: %s", strerror(errno));
			return EXIT_RUNTIME;
		}
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
 * grown (channel.c).
 */
static int resize(const struct dmu_options *o)
{
	int err;

	if (o->file && dmu_file_grow(o->file, o->resize))
		return EXIT_RUNTIME;
	dmu_device_lib_init();
	err = dmu_device_resize(o->name, o->resize / 512);
	dmu_device_lib_exit();
	if (err)
		return EXIT_RUNTIME;
	dmu_info("%s resized to %llu bytes", o->name, (unsigned long long)o->resize);
	return 0;
}

int main(int argc, char **argv)
{
	static struct daemon d;
	uint64_t start_ns = now_ns();
	int status = EXIT_RUNTIME;

	switch (dmu_options_parse(argc, argv, &d.opt)) {
	case DMU_PARSE_EXIT:
		return 0;
	case DMU_PARSE_ERROR:
		return EXIT_USAGE;
	case DMU_PARSE_OK:
		break;
	}
	if (d.opt.resize)
		return resize(&d.opt);
	if (setup_signals(&d))
		return EXIT_RUNTIME;
	if (open_backend(&d))
		return EXIT_RUNTIME;
	if (dmu_pool_init(&d.pool, d.opt.threads))
		return EXIT_RUNTIME;
	if (dmu_metrics_init(&d.metrics, d.opt.threads)) {
		dmu_error("out of memory");
		return EXIT_RUNTIME;
	}
	dmu_device_lib_init();

	if (check_name(&d) == 0 && start_metrics(&d, start_ns) == 0) {
		setup_memory();
		if (bring_up(&d) == 0 && write_ready_file(&d) == 0)
			status = run(&d);
		else
			tear_down(&d);
	}

	/* Every worker, also one stuck in its backend, ends before anything is freed. */
	dmu_pool_join(&d.pool);
	dmu_http_stop(d.http);
	if (d.ready_written)
		unlink(d.opt.ready_file);
	dmu_device_lib_exit();
	dmu_file_backend_close(&d.backend);
	dmu_metrics_free(&d.metrics);
	dmu_pool_free(&d.pool);
	return status;
}
