/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The dm device, through libdevmapper: create, attach, resume, remove and
 * status.  The table is one "user" target over the whole device:
 *   0 <sectors> user 0 <sectors> <control-name>
 * Every function prints its own error message.  Calls are serialised by a
 * mutex (libdevmapper keeps global state); none of them is on the request
 * path.
 */
#ifndef DMUSERD_DEVICE_H
#define DMUSERD_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DMU_CONTROL_DIR "/dev/dm-user"
#define DMU_MAPPER_DIR "/dev/mapper"

/* Route libdevmapper's messages through ours and manage /dev/mapper nodes
 * ourselves (no udev in the test guests). */
void dmu_device_lib_init(void);
/* Flush pending node operations and release libdevmapper. */
void dmu_device_lib_exit(void);

/* 1 if a dm device with this name exists, 0 if not, -1 on error. */
int dmu_device_exists(const char *name);

/* The table's optional arguments; 0 leaves one out (the target's default). */
struct dmu_table_opts {
	uint32_t queue_depth;
	uint32_t timeout_ms;
	uint32_t recovery_ms;
};

/*
 * Format the table's parameters after the target type:
 *   0 <sectors> <control-name> [<count> queue_depth N timeout_ms N recovery_ms N]
 * with only the options that are not 0.  Returns 0, or -1 if len is short.
 */
int dmu_table_params(char *buf, size_t len, const char *control_name,
		     uint64_t sectors, const struct dmu_table_opts *opts);

/*
 * Create the device and load its table, but leave it suspended: the
 * control device exists, no I/O can arrive yet.  On failure nothing is
 * left behind.  opts may be NULL.
 */
int dmu_device_create(const char *name, const char *control_name,
		      uint64_t sectors, bool read_only,
		      const struct dmu_table_opts *opts);

/* Make the loaded table live and make sure /dev/mapper/<name> exists. */
int dmu_device_resume(const char *name);

/*
 * Remove the device.  Retries for a few seconds while it is busy; returns
 * 0, -EBUSY if it stayed open (mounted, say), or -1 on another error.
 * The workers must keep serving meanwhile: dm completes in-flight I/O
 * before it destroys the target.
 */
int dmu_device_remove(const char *name);

struct dmu_device_state {
	uint64_t sectors;
	bool read_only;
	char control_name[128];
	char params[256];	/* the table line after "user" (truncated if longer) */
};

/* For --attach: check that name is a single "user" target and describe it. */
int dmu_device_inspect(const char *name, struct dmu_device_state *st);

/*
 * dmuserd --resize: reload the live table of name, a single "user" target,
 * with the length sectors (its start, control name and options kept) and
 * resume it; the target hands its control device and open channels to the
 * new table, so the serving daemon goes on.  On failure the device is left
 * as it was (a table that loaded but did not resume is cleared).
 */
int dmu_device_resize(const char *name, uint64_t sectors);

/* The target's status line (what "dmsetup status" prints after the type). */
int dmu_device_status(const char *name, char *buf, size_t len);

#endif
