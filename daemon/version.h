/* SPDX-License-Identifier: GPL-2.0 */
#ifndef DMUSERD_VERSION_H
#define DMUSERD_VERSION_H

#define DMUSERD_VERSION "0.1.0"

#endif
