// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The dm device, through libdevmapper: create, attach, resume, resize,
 * messages, remove and status.  The table is one "user" target over the
 * whole device:
 *   0 <sectors> user <dev-start> <sectors> <control-name> [<n> <options>]
 *
 * udev is honoured as dmsetup does: every task that makes or removes a
 * node carries a udev cookie and is waited for with dm_udev_wait().  The
 * create does not: it makes no node (that is the resume's job), Linux 6.12
 * sends no uevent for a device without a table, and libdevmapper (1.02.185)
 * then waits for ever on the cookie (seen under systemd, with udev running).
 * libdevmapper itself decides whether udev synchronisation is used (not
 * when udev is not running, nor with DM_DISABLE_UDEV set in the
 * environment, in which case it makes the /dev/mapper nodes itself).
 *
 * libdevmapper keeps global state: every call is serialised by dm_lock.
 * None of this is on the request path.
 */
#include <ctype.h>
#include <errno.h>
#include <libdevmapper.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define TARGET_TYPE "user"
#define DM_LEVEL_MASK 0x0f	/* libdevmapper ORs flags above the level */
#define DM_LEVEL_ERR 3

static pthread_mutex_t dm_lock = PTHREAD_MUTEX_INITIALIZER;
static bool dm_quiet;		/* under dm_lock: expected failures stay silent */
static bool dm_log_set;		/* under dm_lock */

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
	dmu__err("libdevmapper: %s", msg);
}

static void lock_dm(void)
{
	pthread_mutex_lock(&dm_lock);
	if (!dm_log_set) {
		dm_log_with_errno_init(dm_log);
		dm_log_set = true;
	}
}

static void unlock_dm(void)
{
	pthread_mutex_unlock(&dm_lock);
}

static struct dm_task *task(int type, const char *name)
{
	struct dm_task *t = dm_task_create(type);

	if (!t)
		return NULL;
	if (name && !dm_task_set_name(t, name)) {
		dm_task_destroy(t);
		return NULL;
	}
	return t;
}

/*
 * Run and destroy t, with a udev cookie when it makes or removes nodes.
 * Returns 0 or a negative errno (-EIO if libdevmapper does not say).
 */
static int run(struct dm_task *t, bool udev)
{
	uint32_t cookie = 0;
	int err = 0;

	if (udev && !dm_task_set_cookie(t, &cookie, 0)) {
		dm_task_destroy(t);
		return -EIO;
	}
	if (!dm_task_run(t)) {
		err = dm_task_get_errno(t);
		err = err > 0 ? -err : -EIO;
	}
	if (udev)
		dm_udev_wait(cookie);
	dm_task_destroy(t);
	return err;
}

static int get_info(const char *name, struct dm_info *info)
{
	struct dm_task *t = task(DM_DEVICE_INFO, name);
	int ok;

	if (!t)
		return -ENOMEM;
	ok = dm_task_run(t) && dm_task_get_info(t, info);
	dm_task_destroy(t);
	if (!ok) {
		dmu__err("cannot query device-mapper (is dm-mod loaded? are you root?)");
		return -EIO;
	}
	return 0;
}

/* ---- handles ----------------------------------------------------------- */

static bool valid_name(const char *name, size_t max)
{
	size_t len = name ? strlen(name) : 0;

	return len >= 1 && len <= max && !strchr(name, '/') &&
	       strcmp(name, ".") && strcmp(name, "..");
}

static int new_handle(const char *name, uint64_t size,
		      const struct dmu_device_opts *opts, struct dmu_device **devp)
{
	struct dmu_device_opts o;
	struct dmu_device *dev;
	const char *control;

	OPTS_COPY(o, opts);
	control = o.control_name ? o.control_name : name;
	*devp = NULL;
	if (!valid_name(name, DEVICE_NAME_MAX) || !valid_name(control, CONTROL_NAME_MAX) ||
	    !size || size % 512 || (o.max_io_len && o.max_io_len < 8))
		return -EINVAL;
	dev = calloc(1, sizeof(*dev));
	if (!dev)
		return -ENOMEM;
	snprintf(dev->name, sizeof(dev->name), "%s", name);
	snprintf(dev->control_name, sizeof(dev->control_name), "%.64s", control);
	snprintf(dev->control_path, sizeof(dev->control_path), CONTROL_DIR "/%.64s", control);
	atomic_init(&dev->size, size);
	dev->queue_depth = o.queue_depth;
	dev->timeout_ms = o.timeout_ms;
	dev->recovery_ms = o.recovery_ms;
	dev->max_io_len = o.max_io_len;
	dev->read_only = o.read_only;
	dev->start_ns = dmu__now_ns();
	dev->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (dev->stop_fd < 0) {
		int err = -errno;

		free(dev);
		return err;
	}
	pthread_mutex_init(&dev->lock, NULL);
	*devp = dev;
	return 0;
}

static void free_handle(struct dmu_device *dev)
{
	close(dev->stop_fd);
	pthread_mutex_destroy(&dev->lock);
	free(dev);
}

DMU_API int dmu_device_new(const char *name, uint64_t size,
			   const struct dmu_device_opts *opts,
			   struct dmu_device **devp)
{
	return new_handle(name, size, opts, devp);
}

DMU_API int dmu_device_free(struct dmu_device *dev)
{
	if (!dev)
		return 0;
	pthread_mutex_lock(&dev->lock);
	unsigned n = dev->nchannels;
	pthread_mutex_unlock(&dev->lock);
	if (n) {
		dmu__err("%s: %u channel(s) still open; not freeing the device handle",
			 dev->name, n);
		return -EBUSY;
	}
	free_handle(dev);
	return 0;
}

/* ---- the table --------------------------------------------------------- */

/* "<dev-start> <sectors> <control> [<n> <options>]" */
static void format_params(const struct dmu_device *dev, uint64_t sectors,
			  char *buf, size_t len)
{
	char opts[160] = "";
	unsigned n = 0;
	size_t used = 0;

#define OPT(field, key)								\
	if (dev->field) {							\
		used += (size_t)snprintf(opts + used, sizeof(opts) - used,	\
					 " " key " %u", dev->field);		\
		n += 2;								\
	}
	OPT(queue_depth, "queue_depth")
	OPT(timeout_ms, "timeout_ms")
	OPT(recovery_ms, "recovery_ms")
	OPT(max_io_len, "max_io_len")
#undef OPT
	if (n)
		snprintf(buf, len, "%llu %llu %s %u%s", (unsigned long long)dev->dev_start,
			 (unsigned long long)sectors, dev->control_name, n, opts);
	else
		snprintf(buf, len, "%llu %llu %s", (unsigned long long)dev->dev_start,
			 (unsigned long long)sectors, dev->control_name);
}

DMU_API int dmu_device_table(const struct dmu_device *dev, char *buf, size_t len)
{
	char params[320];

	if (!dev || !buf)
		return -EINVAL;
	format_params(dev, atomic_load(&dev->size) / 512, params, sizeof(params));
	if (strlen(params) >= len)
		return -ENOSPC;
	memcpy(buf, params, strlen(params) + 1);
	return 0;
}

static int load_table(const struct dmu_device *dev, uint64_t sectors)
{
	struct dm_task *t = task(DM_DEVICE_RELOAD, dev->name);
	char params[320];
	int err;

	if (!t)
		return -ENOMEM;
	format_params(dev, sectors, params, sizeof(params));
	if (!dm_task_add_target(t, 0, sectors, TARGET_TYPE, params) ||
	    (dev->read_only && !dm_task_set_ro(t))) {
		dm_task_destroy(t);
		return -ENOMEM;
	}
	err = run(t, false);
	if (err)
		dmu__err("cannot load the table \"0 %llu " TARGET_TYPE " %s\" for %s: %s (is dm-user.ko loaded? see dmesg)",
			 (unsigned long long)sectors, params, dev->name, strerror(-err));
	return err;
}

static int remove_locked(const char *name)
{
	struct dm_task *t = task(DM_DEVICE_REMOVE, name);

	if (!t)
		return -ENOMEM;
	dm_task_retry_remove(t);	/* libdevmapper retries EBUSY for a few seconds */
	return run(t, true);
}

static void set_devt(struct dmu_device *dev, const struct dm_info *info)
{
	dev->devt = ((uint32_t)info->major << 20) | (uint32_t)info->minor;
}

DMU_API int dmu_device_create(const char *name, uint64_t size,
			      const struct dmu_device_opts *opts,
			      struct dmu_device **devp)
{
	struct dmu_device *dev;
	struct dm_task *t;
	struct dm_info info;
	int err = new_handle(name, size, opts, devp);

	if (err)
		return err;
	dev = *devp;
	*devp = NULL;
	dev->managed = true;

	lock_dm();
	t = task(DM_DEVICE_CREATE, name);
	err = t ? run(t, false) : -ENOMEM;
	if (err) {
		if (err == -EBUSY)
			err = -EEXIST;
		dmu__err("cannot create device %s: %s", name, strerror(-err));
		goto out;
	}
	err = load_table(dev, size / 512);
	if (!err)
		err = get_info(name, &info);
	if (err) {
		remove_locked(name);
		goto out;
	}
	set_devt(dev, &info);
out:
	unlock_dm();
	if (err) {
		free_handle(dev);
		return err;
	}
	*devp = dev;
	return 0;
}

/* Parses "<dev-start> <length> <control> [<n> <key> <value>...]". */
static int parse_params(struct dmu_device *dev, const char *params)
{
	unsigned long long start, length;
	char control[CONTROL_NAME_MAX + 2];
	int used = 0;
	unsigned n = 0;

	if (sscanf(params, "%llu %llu %65s%n", &start, &length, control, &used) != 3 ||
	    !valid_name(control, CONTROL_NAME_MAX))
		return -EINVAL;
	params += used;
	if (sscanf(params, " %u%n", &n, &used) == 1) {
		params += used;
		if (n % 2)
			return -EINVAL;	/* every option is a key and a value */
		for (unsigned i = 0; i < n; i += 2) {
			char key[32];
			unsigned value;

			if (sscanf(params, " %31s %u%n", key, &value, &used) != 2)
				return -EINVAL;
			params += used;
			if (!strcmp(key, "queue_depth"))
				dev->queue_depth = value;
			else if (!strcmp(key, "timeout_ms"))
				dev->timeout_ms = value;
			else if (!strcmp(key, "recovery_ms"))
				dev->recovery_ms = value;
			else if (!strcmp(key, "max_io_len"))
				dev->max_io_len = value;
			else
				return -EINVAL;	/* an option we could not keep on resize */
		}
	}
	dev->dev_start = start;
	snprintf(dev->control_name, sizeof(dev->control_name), "%.64s", control);
	snprintf(dev->control_path, sizeof(dev->control_path), CONTROL_DIR "/%.64s", control);
	return 0;
}

static int inspect_table(struct dmu_device *dev)
{
	struct dm_task *t = task(DM_DEVICE_TABLE, dev->name);
	uint64_t start, length;
	char *type = NULL, *params = NULL;
	int err = -EINVAL;

	if (!t)
		return -ENOMEM;
	if (!dm_task_run(t)) {
		dmu__err("cannot read the table of %s", dev->name);
		err = -EIO;
		goto out;
	}
	void *next = dm_get_next_target(t, NULL, &start, &length, &type, &params);
	if (next || !type || strcmp(type, TARGET_TYPE) || start != 0 || !params ||
	    parse_params(dev, params)) {
		dmu__err("device %s is not a single \"" TARGET_TYPE "\" target; cannot attach",
			 dev->name);
		goto out;
	}
	atomic_store(&dev->size, length * 512);
	err = 0;
out:
	dm_task_destroy(t);
	return err;
}

DMU_API int dmu_device_attach(const char *name, struct dmu_device **devp)
{
	struct dmu_device *dev;
	struct dm_info info;
	int err = new_handle(name, 512, NULL, devp);

	if (err)
		return err;
	dev = *devp;
	*devp = NULL;
	dev->managed = true;
	lock_dm();
	err = get_info(name, &info);
	if (!err && !info.exists) {
		dmu__err("device %s does not exist; cannot attach", name);
		err = -ENODEV;
	} else if (!err && !info.live_table) {
		dmu__err("device %s has no live table; cannot attach", name);
		err = -EINVAL;
	}
	if (!err) {
		dev->read_only = info.read_only;
		set_devt(dev, &info);
		err = inspect_table(dev);
	}
	unlock_dm();
	if (err) {
		free_handle(dev);
		return err;
	}
	*devp = dev;
	return 0;
}

DMU_API int dmu_device_refresh(struct dmu_device *dev)
{
	struct dmu_device copy;
	struct dm_info info;
	int err;

	if (!dev->managed)
		return -EOPNOTSUPP;
	lock_dm();
	/* Parsed into a copy: the handle changes only if all of it is read. */
	memcpy(copy.name, dev->name, sizeof(copy.name));
	copy.queue_depth = copy.timeout_ms = copy.recovery_ms = copy.max_io_len = 0;
	err = get_info(dev->name, &info);
	if (!err && (!info.exists || !info.live_table))
		err = -ENODEV;
	if (!err)
		err = inspect_table(&copy);
	if (!err && strcmp(copy.control_name, dev->control_name))
		err = -EINVAL;	/* another control device: not the one served */
	if (!err) {
		dev->queue_depth = copy.queue_depth;
		dev->timeout_ms = copy.timeout_ms;
		dev->recovery_ms = copy.recovery_ms;
		dev->max_io_len = copy.max_io_len;
		dev->dev_start = copy.dev_start;
		dev->read_only = info.read_only;
		atomic_store(&dev->size, atomic_load(&copy.size));
	}
	unlock_dm();
	return err;
}

/* libdevmapper makes the node (or udev does); say so if neither did. */
static void check_node(const char *name)
{
	char path[sizeof(MAPPER_DIR) + DEVICE_NAME_MAX + 1];
	struct stat st;

	snprintf(path, sizeof(path), MAPPER_DIR "/%s", name);
	if (stat(path, &st))
		dmu__warn("%s did not appear; use /dev/dm-N instead", path);
}

static int resume_locked(struct dmu_device *dev)
{
	struct dm_task *t = task(DM_DEVICE_RESUME, dev->name);
	int err = t ? run(t, true) : -ENOMEM;

	if (err)
		dmu__err("cannot resume device %s: %s", dev->name, strerror(-err));
	else
		check_node(dev->name);
	return err;
}

DMU_API int dmu_device_resume(struct dmu_device *dev)
{
	int err;

	if (!dev->managed)
		return -EOPNOTSUPP;
	lock_dm();
	err = resume_locked(dev);
	unlock_dm();
	return err;
}

DMU_API int dmu_device_resize(struct dmu_device *dev, uint64_t size)
{
	uint64_t old = atomic_load(&dev->size);
	int err;

	if (!dev->managed)
		return -EOPNOTSUPP;
	if (!size || size % 512)
		return -EINVAL;
	lock_dm();
	err = load_table(dev, size / 512);
	if (err)
		goto out;
	/*
	 * Requests past the old end arrive only after the resume: accept
	 * them from now on.  Requests in the part cut off may still be in
	 * flight until the resume's suspend: serve them until it returns.
	 */
	if (size > old)
		atomic_store(&dev->size, size);
	err = resume_locked(dev);
	if (err) {
		struct dm_task *t = task(DM_DEVICE_CLEAR, dev->name);

		if (t)
			run(t, false);	/* drop the inactive table; the live one stays */
		atomic_store(&dev->size, old);
		goto out;
	}
	atomic_store(&dev->size, size);
out:
	unlock_dm();
	return err;
}

static int message(struct dmu_device *dev, const char *key, uint32_t value)
{
	struct dm_task *t;
	char msg[64];
	int err;

	if (!dev->managed)
		return -EOPNOTSUPP;
	snprintf(msg, sizeof(msg), "%s %u", key, value);
	lock_dm();
	t = task(DM_DEVICE_TARGET_MSG, dev->name);
	if (!t || !dm_task_set_sector(t, 0) || !dm_task_set_message(t, msg)) {
		if (t)
			dm_task_destroy(t);
		unlock_dm();
		return -ENOMEM;
	}
	err = run(t, false);
	unlock_dm();
	if (err)
		dmu__err("%s: message \"%s\" failed: %s", dev->name, msg, strerror(-err));
	return err;
}

DMU_API int dmu_device_set_timeout_ms(struct dmu_device *dev, uint32_t ms)
{
	int err = message(dev, "timeout_ms", ms);

	if (!err)
		dev->timeout_ms = ms;
	return err;
}

DMU_API int dmu_device_set_recovery_ms(struct dmu_device *dev, uint32_t ms)
{
	int err = message(dev, "recovery_ms", ms);

	if (!err)
		dev->recovery_ms = ms;
	return err;
}

DMU_API int dmu_device_remove(struct dmu_device *dev)
{
	int err;

	if (!dev->managed)
		return -EOPNOTSUPP;
	lock_dm();
	err = remove_locked(dev->name);
	unlock_dm();
	if (err && err != -EBUSY)
		dmu__err("cannot remove device %s: %s", dev->name, strerror(-err));
	return err;
}

DMU_API void dmu_device_stop(struct dmu_device *dev)
{
	uint64_t one = 1;

	atomic_store(&dev->stopping, true);
	ssize_t ignored = write(dev->stop_fd, &one, sizeof(one));
	(void)ignored;
}

int dmu__status_line(struct dmu_device *dev, char *buf, size_t len)
{
	struct dm_task *t;
	uint64_t start, length;
	char *type = NULL, *params = NULL;
	int err = -EIO;

	if (!dev->managed)
		return -EOPNOTSUPP;
	lock_dm();
	dm_quiet = true;	/* during removal the device may be gone */
	t = task(DM_DEVICE_STATUS, dev->name);
	if (t && dm_task_run(t)) {
		dm_get_next_target(t, NULL, &start, &length, &type, &params);
		if (params && type && !strcmp(type, TARGET_TYPE)) {
			snprintf(buf, len, "%s", params);
			err = 0;
		}
	}
	if (t)
		dm_task_destroy(t);
	dm_quiet = false;
	unlock_dm();
	return err;
}

DMU_API int dmu_device_status(struct dmu_device *dev, struct dmu_target_status *st)
{
	uint64_t v[13] = { 0 };
	uint32_t n = 0;
	char line[512];
	const char *p = line;
	int err;

	if (!dev || !st)
		return -EINVAL;
	err = dmu__status_line(dev, line, sizeof(line));
	if (err)
		return err;
	/* the numbers the line starts with: 7, or 13 from target 1.5.0 */
	for (;;) {
		unsigned long long x;
		char *end;

		while (isspace((unsigned char)*p))
			p++;
		if (!isdigit((unsigned char)*p))
			break;
		errno = 0;
		x = strtoull(p, &end, 10);
		if (errno || (*end && !isspace((unsigned char)*end)))
			break;
		if (n < 13)
			v[n] = x;
		n++;
		p = end;
	}
	if (n < 7)
		return -EPROTO;

	struct dmu_target_status s = {
		.sz = sizeof(s), .channels = v[0], .queued = v[1], .in_flight = v[2],
		.completed = v[3], .errors = v[4], .timeouts = v[5], .requeues = v[6],
		.fields = n,
		.depth_waits = v[7], .depth_wait_us = v[8], .hwm_queued = v[9],
		.hwm_in_flight = v[10], .stalls = v[11], .oldest_us = v[12],
	};
	size_t len = st->sz < sizeof(s) ? st->sz : sizeof(s);

	memcpy(st, &s, len);
	st->sz = len;
	return 0;
}

/* ---- getters and the channel list -------------------------------------- */

DMU_API const char *dmu_device_name(const struct dmu_device *dev)
{
	return dev->name;
}

DMU_API const char *dmu_device_control_path(const struct dmu_device *dev)
{
	return dev->control_path;
}

DMU_API uint64_t dmu_device_size(const struct dmu_device *dev)
{
	return atomic_load(&dev->size);
}

DMU_API bool dmu_device_read_only(const struct dmu_device *dev)
{
	return dev->read_only;
}

DMU_API uint64_t dmu_device_max_io(const struct dmu_device *dev)
{
	return (uint64_t)(dev->max_io_len ? dev->max_io_len : DEFAULT_MAX_IO_SECTORS) * 512;
}

DMU_API uint32_t dmu_device_devt(const struct dmu_device *dev)
{
	return dev->devt;
}

void dmu__device_add_channel(struct dmu_device *dev, struct dmu_channel *ch)
{
	pthread_mutex_lock(&dev->lock);
	ch->next_in_dev = dev->channels;
	dev->channels = ch;
	dev->nchannels++;
	pthread_mutex_unlock(&dev->lock);
}

void dmu__device_del_channel(struct dmu_device *dev, struct dmu_channel *ch)
{
	pthread_mutex_lock(&dev->lock);
	for (struct dmu_channel **p = &dev->channels; *p; p = &(*p)->next_in_dev) {
		if (*p == ch) {
			*p = ch->next_in_dev;
			dev->nchannels--;
			dmu__m_add(&dev->retired, &ch->m, false);
			break;
		}
	}
	pthread_mutex_unlock(&dev->lock);
}

void dmu__device_snapshot(struct dmu_device *dev, struct metrics_snapshot *s)
{
	pthread_mutex_lock(&dev->lock);
	*s = dev->retired;
	for (struct dmu_channel *ch = dev->channels; ch; ch = ch->next_in_dev)
		dmu__m_add(s, &ch->m, true);
	s->channels = dev->nchannels;
	pthread_mutex_unlock(&dev->lock);
}
