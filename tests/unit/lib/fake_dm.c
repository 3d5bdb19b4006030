// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The fake device-mapper: this test binary defines the libdevmapper calls
 * the library makes, so they resolve here (as ioctl() does, rig.c), and
 * no host test ever reaches the real device-mapper.  It knows one dm
 * device, fake_dm (rig.h): its name, its table's parameters and the
 * target's status line, which is what dmu_device_attach() and
 * dmu_metrics_render() read.  Everything else fails as with no dm device.
 */
#include <errno.h>
#include <libdevmapper.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rig.h"

struct fake_dm fake_dm;

struct dm_task {
	int type;
	char name[128];
	int err;
};

struct dm_task *dm_task_create(int type)
{
	struct dm_task *t = calloc(1, sizeof(*t));

	if (t)
		t->type = type;
	return t;
}

void dm_task_destroy(struct dm_task *t)
{
	free(t);
}

int dm_task_set_name(struct dm_task *t, const char *name)
{
	snprintf(t->name, sizeof(t->name), "%s", name);
	return 1;
}

static bool ours(const struct dm_task *t)
{
	return fake_dm.name && !strcmp(t->name, fake_dm.name);
}

int dm_task_run(struct dm_task *t)
{
	bool ok = false;

	switch (t->type) {
	case DM_DEVICE_INFO:
		ok = true;	/* "exists" says whether it does */
		break;
	case DM_DEVICE_TABLE:
		ok = ours(t) && fake_dm.table;
		break;
	case DM_DEVICE_STATUS:
		fake_dm.status_reads++;
		ok = ours(t) && fake_dm.status;
		break;
	}
	t->err = ok ? 0 : ENXIO;
	return ok;
}

int dm_task_get_errno(struct dm_task *t)
{
	return t->err;
}

int dm_task_get_info(struct dm_task *t, struct dm_info *info)
{
	memset(info, 0, sizeof(*info));
	if (!ours(t))
		return 1;
	info->exists = 1;
	info->live_table = 1;
	info->major = 253;
	info->minor = 7;
	info->read_only = fake_dm.read_only;
	info->target_count = 1;
	return 1;
}

void *dm_get_next_target(struct dm_task *t, void *next, uint64_t *start, uint64_t *length,
			 char **type, char **params)
{
	(void)next;
	*start = 0;
	*length = fake_dm.sectors;
	*type = (char *)"user";
	*params = (char *)(t->type == DM_DEVICE_STATUS ? fake_dm.status : fake_dm.table);
	return NULL;
}

/* What creating, loading, resuming, messaging and removing need: refused. */
int dm_task_set_cookie(struct dm_task *t, uint32_t *cookie, uint16_t flags)
{
	(void)t;
	(void)flags;
	*cookie = 0;
	return 1;
}

int dm_udev_wait(uint32_t cookie)
{
	(void)cookie;
	return 1;
}

int dm_task_add_target(struct dm_task *t, uint64_t start, uint64_t size, const char *ttype,
		       const char *params)
{
	(void)t, (void)start, (void)size, (void)ttype, (void)params;
	return 1;
}

int dm_task_set_ro(struct dm_task *t)
{
	(void)t;
	return 1;
}

int dm_task_set_sector(struct dm_task *t, uint64_t sector)
{
	(void)t, (void)sector;
	return 1;
}

int dm_task_set_message(struct dm_task *t, const char *message)
{
	(void)t, (void)message;
	return 1;
}

int dm_task_retry_remove(struct dm_task *t)
{
	(void)t;
	return 1;
}

void dm_log_with_errno_init(dm_log_with_errno_fn fn)
{
	(void)fn;
}
