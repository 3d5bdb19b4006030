/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The ready file (--ready-file): written once the device is live and every
 * worker serves, removed at exit.  Scripts wait for it instead of sleeping.
 */
#ifndef DMUSERD_READY_H
#define DMUSERD_READY_H

/*
 * Write text to path atomically: a new temporary file in path's directory
 * (mkostemp: a name nobody can predict, created O_EXCL, so a symlink
 * planted there is never followed), then rename() over path.  Mode 0644.
 * Returns 0, or -1 with a message printed.
 */
int dmu_ready_write(const char *path, const char *text);

#endif
