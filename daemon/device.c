// SPDX-License-Identifier: GPL-2.0
#include "device.h"

#include <errno.h>
#include <libdevmapper.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"

#define TARGET_TYPE "user"
#define DM_LEVEL_MASK 0x0f	/* libdevmapper ORs flags above the level */
#define DM_LEVEL_ERR 3

static pthread_mutex_t dm_lock = PTHREAD_MUTEX_INITIALIZER;
static bool dm_quiet;		/* under dm_lock: expected failures stay silent */

__attribute__((format(printf, 5, 6)))
static void dm_log(int level, const char *file, int line, int dm_errno_or_class,
		   const char *f, ...)
{
	char msg[400];
	va_list ap;

	(void)file;
	(void)line;
	(void)dm_errno_or_class;
	if ((level & DM_LEVEL_MASK) > DM_LEVEL_ERR || dm_quiet)
		return;
	va_start(ap, f);
	vsnprintf(msg, sizeof(msg), f, ap);
	va_end(ap);
	dmu_error("libdevmapper: %s", msg);
}

void dmu_device_lib_init(void)
{
	dm_log_with_errno_init(dm_log);
	/*
	 * Without udev (the test guests have none) nothing would ever
	 * acknowledge a udev cookie; libdevmapper creates and removes the
	 * /dev/mapper nodes itself instead.
	 */
	dm_udev_set_sync_support(0);
}

void dmu_device_lib_exit(void)
{
	pthread_mutex_lock(&dm_lock);
	dm_lib_release();
	pthread_mutex_unlock(&dm_lock);
}

static struct dm_task *task(int type, const char *name)
{
	struct dm_task *t = dm_task_create(type);

	if (!t) {
		dmu_error("libdevmapper: cannot create a task (out of memory?)");
		return NULL;
	}
	if (name && !dm_task_set_name(t, name)) {
		dm_task_destroy(t);
		return NULL;
	}
	return t;
}

/* Run and destroy t.  Returns 0 or a negative errno (-EIO if unknown). */
static int run(struct dm_task *t)
{
	int err = 0;

	if (!dm_task_run(t)) {
		err = dm_task_get_errno(t);
		err = err > 0 ? -err : -EIO;
	}
	dm_task_destroy(t);
	return err;
}

static int get_info(const char *name, struct dm_info *info)
{
	struct dm_task *t = task(DM_DEVICE_INFO, name);
	int ok;

	if (!t)
		return -1;
	ok = dm_task_run(t) && dm_task_get_info(t, info);
	dm_task_destroy(t);
	if (!ok) {
		dmu_error("cannot query device-mapper (is dm-mod loaded? are you root?)");
		return -1;
	}
	return 0;
}

int dmu_device_exists(const char *name)
{
	struct dm_info info;
	int ret;

	pthread_mutex_lock(&dm_lock);
	ret = get_info(name, &info) ? -1 : info.exists != 0;
	pthread_mutex_unlock(&dm_lock);
	return ret;
}

static int remove_locked(const char *name)
{
	struct dm_task *t = task(DM_DEVICE_REMOVE, name);
	int err;

	if (!t)
		return -1;
	dm_task_retry_remove(t);	/* libdevmapper retries EBUSY for a few seconds */
	err = run(t);
	dm_task_update_nodes();
	if (err == -EBUSY)
		return -EBUSY;
	if (err) {
		dmu_error("cannot remove device %s: %s", name, strerror(-err));
		return -1;
	}
	return 0;
}

int dmu_table_params(char *buf, size_t len, const char *control_name,
		     uint64_t sectors, const struct dmu_table_opts *opts)
{
	static const struct dmu_table_opts none;
	const struct dmu_table_opts *o = opts ? opts : &none;
	const char *keys[3] = { "queue_depth", "timeout_ms", "recovery_ms" };
	uint32_t values[3] = { o->queue_depth, o->timeout_ms, o->recovery_ms };
	unsigned count = 0;
	size_t at;
	int n;

	for (unsigned i = 0; i < 3; i++)
		count += values[i] != 0;
	n = snprintf(buf, len, "0 %llu %s", (unsigned long long)sectors, control_name);
	if (n < 0 || (size_t)n >= len)
		return -1;
	at = (size_t)n;
	if (count) {
		n = snprintf(buf + at, len - at, " %u", count * 2);
		if (n < 0 || (size_t)n >= len - at)
			return -1;
		at += (size_t)n;
	}
	for (unsigned i = 0; i < 3; i++) {
		if (!values[i])
			continue;
		n = snprintf(buf + at, len - at, " %s %u", keys[i], values[i]);
		if (n < 0 || (size_t)n >= len - at)
			return -1;
		at += (size_t)n;
	}
	return 0;
}

static int load_table(const char *name, const char *control_name,
		      uint64_t sectors, bool read_only,
		      const struct dmu_table_opts *opts)
{
	struct dm_task *t;
	char params[256];
	int err;

	if (dmu_table_params(params, sizeof(params), control_name, sectors, opts)) {
		dmu_error("table parameters for %s too long", name);
		return -1;
	}
	t = task(DM_DEVICE_RELOAD, name);
	if (!t)
		return -1;
	if (!dm_task_add_target(t, 0, sectors, TARGET_TYPE, params) ||
	    (read_only && !dm_task_set_ro(t))) {
		dm_task_destroy(t);
		return -1;
	}
	err = run(t);
	if (err) {
		dmu_error("cannot load the table \"0 %llu %s %s\" for %s: %s (is dm-user.ko loaded? see dmesg)",
			  (unsigned long long)sectors, TARGET_TYPE, params, name,
			  strerror(-err));
		return -1;
	}
	return 0;
}

int dmu_device_create(const char *name, const char *control_name,
		      uint64_t sectors, bool read_only,
		      const struct dmu_table_opts *opts)
{
	struct dm_task *t;
	int err, ret = -1;

	pthread_mutex_lock(&dm_lock);
	t = task(DM_DEVICE_CREATE, name);
	if (!t)
		goto out;
	err = run(t);
	if (err) {
		if (err == -EBUSY)
			dmu_error("device %s already exists", name);
		else
			dmu_error("cannot create device %s: %s", name, strerror(-err));
		goto out;
	}
	if (load_table(name, control_name, sectors, read_only, opts)) {
		remove_locked(name);
		goto out;
	}
	ret = 0;
out:
	pthread_mutex_unlock(&dm_lock);
	return ret;
}

/* libdevmapper queues node creation; without udev, make sure it happened. */
static void ensure_node(const char *name)
{
	char path[256];
	struct stat st;

	dm_task_update_nodes();
	snprintf(path, sizeof(path), DMU_MAPPER_DIR "/%s", name);
	if (stat(path, &st) == 0)
		return;
	dm_mknodes(name);
	if (stat(path, &st))
		dmu_warn("%s did not appear; use /dev/dm-N instead", path);
}

int dmu_device_resume(const char *name)
{
	struct dm_task *t;
	int err = -1;

	pthread_mutex_lock(&dm_lock);
	t = task(DM_DEVICE_RESUME, name);
	if (t)
		err = run(t);
	if (err)
		dmu_error("cannot resume device %s: %s", name, strerror(err < 0 ? -err : EIO));
	else
		ensure_node(name);
	pthread_mutex_unlock(&dm_lock);
	return err ? -1 : 0;
}

int dmu_device_remove(const char *name)
{
	int ret;

	pthread_mutex_lock(&dm_lock);
	ret = remove_locked(name);
	pthread_mutex_unlock(&dm_lock);
	return ret;
}

/* The target's parameters are "<start> <sectors> <control-name> [options]". */
static int control_name_of(const char *params, char *out, size_t len)
{
	unsigned long long start, sectors;
	char name[128];

	if (sscanf(params, "%llu %llu %127s", &start, &sectors, name) != 3)
		return -1;
	snprintf(out, len, "%s", name);
	return 0;
}

static int inspect_table(const char *name, struct dmu_device_state *st)
{
	struct dm_task *t = task(DM_DEVICE_TABLE, name);
	uint64_t start, length;
	char *type = NULL, *params = NULL;
	int ret = -1;

	if (!t)
		return -1;
	if (!dm_task_run(t)) {
		dmu_error("cannot read the table of %s", name);
		goto out;
	}
	void *next = dm_get_next_target(t, NULL, &start, &length, &type, &params);
	if (next || !type || strcmp(type, TARGET_TYPE) || start != 0 || !params ||
	    control_name_of(params, st->control_name, sizeof(st->control_name))) {
		dmu_error("device %s is not a single \"%s\" target; cannot attach",
			  name, TARGET_TYPE);
		goto out;
	}
	st->sectors = length;
	snprintf(st->params, sizeof(st->params), "%s", params);
	ret = 0;
out:
	dm_task_destroy(t);
	return ret;
}

int dmu_device_inspect(const char *name, struct dmu_device_state *st)
{
	struct dm_info info;
	int ret = -1;

	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&dm_lock);
	if (get_info(name, &info))
		goto out;
	if (!info.exists) {
		dmu_error("device %s does not exist; cannot attach", name);
		goto out;
	}
	if (!info.live_table) {
		dmu_error("device %s has no live table; cannot attach", name);
		goto out;
	}
	st->read_only = info.read_only;
	ret = inspect_table(name, st);
out:
	pthread_mutex_unlock(&dm_lock);
	return ret;
}

/* Make the inactive table live; on failure, drop it.  Under dm_lock. */
static int resume_or_clear_locked(const char *name)
{
	struct dm_task *t = task(DM_DEVICE_RESUME, name);
	int err = t ? run(t) : -1;

	if (!err) {
		ensure_node(name);
		return 0;
	}
	dmu_error("cannot resume device %s with its new table: %s", name,
		  strerror(err < 0 ? -err : EIO));
	t = task(DM_DEVICE_CLEAR, name);
	if (t && run(t))
		dmu_error("cannot clear the inactive table of %s (dmsetup clear %s)",
			  name, name);
	return -1;
}

int dmu_device_resize(const char *name, uint64_t sectors)
{
	struct dm_info info;
	struct dm_task *t = NULL;
	uint64_t start, length;
	unsigned long long dev_start, dev_length;
	char *type = NULL, *params = NULL, new_params[512];
	int rest = 0, n, err, ret = -1;

	pthread_mutex_lock(&dm_lock);
	if (get_info(name, &info))
		goto out;
	if (!info.exists || !info.live_table) {
		dmu_error("device %s %s; cannot resize it", name,
			  info.exists ? "has no live table" : "does not exist");
		goto out;
	}
	t = task(DM_DEVICE_TABLE, name);
	if (!t)
		goto out;
	if (!dm_task_run(t)) {
		dmu_error("cannot read the table of %s", name);
		goto out;
	}
	/* "<dev-start> <dev-length> <control-name> [options]": keep all but the length. */
	void *next = dm_get_next_target(t, NULL, &start, &length, &type, &params);
	if (next || !type || strcmp(type, TARGET_TYPE) || start != 0 || !params ||
	    sscanf(params, "%llu %llu %n", &dev_start, &dev_length, &rest) != 2 ||
	    !params[rest]) {
		dmu_error("device %s is not a single \"%s\" target; cannot resize it",
			  name, TARGET_TYPE);
		goto out;
	}
	n = snprintf(new_params, sizeof(new_params), "%llu %llu %s", dev_start,
		     (unsigned long long)sectors, params + rest);
	if (n < 0 || (size_t)n >= sizeof(new_params)) {
		dmu_error("the table of %s is too long to resize", name);
		goto out;
	}
	dm_task_destroy(t);

	t = task(DM_DEVICE_RELOAD, name);
	if (!t)
		goto out;
	if (!dm_task_add_target(t, 0, sectors, TARGET_TYPE, new_params) ||
	    (info.read_only && !dm_task_set_ro(t)))
		goto out;
	err = run(t);
	t = NULL;
	if (err) {
		dmu_error("cannot load the table \"0 %llu %s %s\" for %s: %s (see dmesg; a dm-user that cannot hand its control device to a new table refuses the same control name with EBUSY)",
			  (unsigned long long)sectors, TARGET_TYPE, new_params, name,
			  strerror(-err));
		goto out;
	}
	ret = resume_or_clear_locked(name);
out:
	if (t)
		dm_task_destroy(t);
	pthread_mutex_unlock(&dm_lock);
	return ret;
}

int dmu_device_status(const char *name, char *buf, size_t len)
{
	struct dm_task *t;
	uint64_t start, length;
	char *type = NULL, *params = NULL;
	int ret = -1;

	pthread_mutex_lock(&dm_lock);
	dm_quiet = true;	/* during shutdown the device may be gone */
	t = task(DM_DEVICE_STATUS, name);
	if (t && dm_task_run(t)) {
		dm_get_next_target(t, NULL, &start, &length, &type, &params);
		if (params) {
			snprintf(buf, len, "%s", params);
			ret = 0;
		}
	}
	if (t)
		dm_task_destroy(t);
	dm_quiet = false;
	pthread_mutex_unlock(&dm_lock);
	return ret;
}
