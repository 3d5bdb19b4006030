// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * dmu-libctl: libdmuser's device calls from the command line, for the VM
 * tests (the device is served by another process meanwhile).
 *   dmu-libctl info NAME            attach, print what the table says
 *   dmu-libctl status NAME          the target's counters
 *   dmu-libctl resize NAME BYTES    reload with a new length, same options
 *   dmu-libctl timeout NAME MS      set timeout_ms
 */
#include <dmuser.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	struct dmu_device *dev;
	int err;

	if (argc < 3) {
		fprintf(stderr, "usage: dmu-libctl info|status|resize|timeout NAME [VALUE]\n");
		return 2;
	}
	err = dmu_device_attach(argv[2], &dev);
	if (err) {
		fprintf(stderr, "dmu-libctl: attach %s: %s\n", argv[2], strerror(-err));
		return 1;
	}
	if (!strcmp(argv[1], "info")) {
		printf("name=%s\ncontrol=%s\nsize=%" PRIu64 "\nmax_io=%" PRIu64
		       "\nread_only=%d\ndevt=%" PRIu32 "\n", dmu_device_name(dev),
		       dmu_device_control_path(dev), dmu_device_size(dev), dmu_device_max_io(dev),
		       dmu_device_read_only(dev), dmu_device_devt(dev));
	} else if (!strcmp(argv[1], "status")) {
		struct dmu_target_status st = { .sz = sizeof(st) };

		err = dmu_device_status(dev, &st);
		if (!err)
			printf("channels=%" PRIu64 "\nqueued=%" PRIu64 "\nin_flight=%" PRIu64
			       "\ncompleted=%" PRIu64 "\nerrors=%" PRIu64 "\ntimeouts=%" PRIu64
			       "\nrequeues=%" PRIu64 "\n", st.channels, st.queued, st.in_flight,
			       st.completed, st.errors, st.timeouts, st.requeues);
	} else if (!strcmp(argv[1], "resize") && argc == 4) {
		err = dmu_device_resize(dev, strtoull(argv[3], NULL, 0));
	} else if (!strcmp(argv[1], "timeout") && argc == 4) {
		err = dmu_device_set_timeout_ms(dev, (uint32_t)strtoul(argv[3], NULL, 0));
	} else {
		fprintf(stderr, "dmu-libctl: bad command\n");
		err = -22;
	}
	if (err)
		fprintf(stderr, "dmu-libctl: %s %s: %s\n", argv[1], argv[2], strerror(-err));
	dmu_device_free(dev);
	return err ? 1 : 0;
}
