// SPDX-License-Identifier: GPL-2.0
/*
 * A deliberately wrong module for the debug lane's self-test (make
 * check-debug): on load it takes two mutexes in one order, then in the
 * other.  No deadlock happens (one thread), but lockdep sees the inverted
 * order and reports "possible circular locking dependency detected"; the
 * lane must see the suite fail the test that loaded this and name lockdep.
 * Never built or loaded outside tests/debug/.
 */
#include <linux/module.h>
#include <linux/mutex.h>

static DEFINE_MUTEX(dmu_abba_a);
static DEFINE_MUTEX(dmu_abba_b);

static int __init dmu_abba_init(void)
{
	mutex_lock(&dmu_abba_a);
	mutex_lock(&dmu_abba_b);
	mutex_unlock(&dmu_abba_b);
	mutex_unlock(&dmu_abba_a);

	mutex_lock(&dmu_abba_b);
	mutex_lock(&dmu_abba_a);
	mutex_unlock(&dmu_abba_a);
	mutex_unlock(&dmu_abba_b);
	return 0;
}

static void __exit dmu_abba_exit(void)
{
}

module_init(dmu_abba_init);
module_exit(dmu_abba_exit);
MODULE_DESCRIPTION("dm-user debug lane self-test: AB-BA lock order");
MODULE_LICENSE("GPL");
