// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * dmu-libctl: libdmuser's device calls from the command line, for the VM
 * tests (the device is served by another process meanwhile).
 *   dmu-libctl info NAME            attach, print what the table says
 *   dmu-libctl status NAME          the target's counters (key=value lines; the six
 *                                   of a 1.5.0 target after fields=13)
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
			       "\nrequeues=%" PRIu64 "\nfields=%" PRIu32 "\n", st.channels, st.queued,
			       st.in_flight, st.completed, st.errors, st.timeouts, st.requeues,
			       st.fields);
		if (!err && st.fields >= 13)
			printf("depth_waits=%" PRIu64 "\ndepth_wait_us=%" PRIu64 "\nhwm_queued=%" PRIu64
			       "\nhwm_in_flight=%" PRIu64 "\nstalls=%" PRIu64 "\noldest_us=%" PRIu64 "\n",
			       st.depth_waits, st.depth_wait_us, st.hwm_queued, st.hwm_in_flight,
			       st.stalls, st.oldest_us);
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
