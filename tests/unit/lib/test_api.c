// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The library as a product: version, argument checks, and checks of the
 * build made by tools.sh (exported symbols, ABI listing, USDT probes, man
 * page, make install with pkg-config, only the public header used outside
 * lib/).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rig.h"
#include "test.h"

TEST(version_matches_the_header)
{
	char want[32];

	snprintf(want, sizeof(want), "%d.%d.%d", DMU_VERSION_MAJOR, DMU_VERSION_MINOR,
		 DMU_VERSION_PATCH);
	CHECK_STR(dmu_version(), want);
}

TEST(device_arguments_are_checked)
{
	DMU_OPTS(dmu_device_opts, bad_ctl, .control_name = "a/b");
	DMU_OPTS(dmu_device_opts, long_ctl,
		 .control_name = "0123456789012345678901234567890123456789012345678901234567890123456789");
	DMU_OPTS(dmu_device_opts, small_io, .max_io_len = 4);
	DMU_OPTS(dmu_device_opts, ok, .control_name = "ctl", .max_io_len = 256);
	struct dmu_device *dev = (struct dmu_device *)1;

	CHECK_EQ(dmu_device_new("", 4096, NULL, &dev), -EINVAL);
	CHECK(dev == NULL);
	CHECK_EQ(dmu_device_new("a/b", 4096, NULL, &dev), -EINVAL);
	CHECK_EQ(dmu_device_new("x", 4097, NULL, &dev), -EINVAL);
	CHECK_EQ(dmu_device_new("x", 0, NULL, &dev), -EINVAL);
	CHECK_EQ(dmu_device_new("x", 4096, &bad_ctl, &dev), -EINVAL);
	CHECK_EQ(dmu_device_new("x", 4096, &long_ctl, &dev), -EINVAL);
	CHECK_EQ(dmu_device_new("x", 4096, &small_io, &dev), -EINVAL);
	REQUIRE(dmu_device_new("x", 1 << 20, &ok, &dev) == 0);
	CHECK_STR(dmu_device_name(dev), "x");
	CHECK_STR(dmu_device_control_path(dev), "/dev/dm-user/ctl");
	CHECK_EQ(dmu_device_size(dev), 1 << 20);
	CHECK_EQ(dmu_device_max_io(dev), 256 * 512);
	CHECK_EQ(dmu_device_devt(dev), 0);
	/* nothing behind it: the lifecycle calls say so */
	CHECK_EQ(dmu_device_resume(dev), -EOPNOTSUPP);
	CHECK_EQ(dmu_device_resize(dev, 2 << 20), -EOPNOTSUPP);
	CHECK_EQ(dmu_device_remove(dev), -EOPNOTSUPP);
	CHECK_EQ(dmu_device_set_timeout_ms(dev, 1), -EOPNOTSUPP);

	struct dmu_target_status st = { .sz = sizeof(st) };
	CHECK_EQ(dmu_device_status(dev, &st), -EOPNOTSUPP);

	/* channel options */
	int sv[2];
	struct dmu_channel *ch = (struct dmu_channel *)1;
	DMU_OPTS(dmu_channel_opts, odd, .buffer_size = 1000);
	REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
	CHECK_EQ(dmu_channel_open_fd(dev, sv[1], &odd, &ch), -EINVAL);
	CHECK(ch == NULL);
	CHECK(write(sv[1], "", 0) < 0);	/* the channel owned it: closed */
	close(sv[0]);

	/* an asynchronous call on a blocking channel, and the reverse */
	REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
	DMU_OPTS(dmu_channel_opts, o, .no_io_flusher = true);
	REQUIRE(dmu_channel_open_fd(dev, sv[1], &o, &ch) == 0);
	CHECK_EQ(dmu_channel_process(ch, NULL, NULL), -EINVAL);
	CHECK_EQ(dmu_device_free(dev), -EBUSY);
	CHECK_EQ(dmu_channel_close(ch), 0);
	close(sv[0]);
	CHECK_EQ(dmu_device_free(dev), 0);
}

/* tools.sh CHECK, from the repository root. */
static int tool(const char *check)
{
	char cmd[512];

	const char *root = getenv("DMU_ROOT") ? getenv("DMU_ROOT") : "../../..";

	snprintf(cmd, sizeof(cmd), "\"%s/tests/unit/lib/tools.sh\" %s", root, check);
	int status = system(cmd);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(exports_only_dmu_symbols)
{
	CHECK_EQ(tool("symbols"), 0);
}

TEST(exports_exactly_the_header_functions)
{
	CHECK_EQ(tool("header"), 0);
}

TEST(abi_matches_the_listing)
{
	CHECK_EQ(tool("abi"), 0);
}

TEST(usdt_probes_are_in_the_library)
{
	CHECK_EQ(tool("usdt"), 0);
}

TEST(man_page_is_clean_and_complete)
{
	CHECK_EQ(tool("man"), 0);
}

TEST(install_with_pkg_config)
{
	CHECK_EQ(tool("install"), 0);
}

/* dmuserd, the examples and the unit tests use only the public header (issue 16). */
TEST(only_the_public_header_outside_lib)
{
	CHECK_EQ(tool("public"), 0);
}
