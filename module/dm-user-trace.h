/* SPDX-License-Identifier: GPL-2.0+ */
/*
 * Tracepoints of the dm-user target.  Every argument is a scalar, so that BPF
 * programs attached to them need no type of this module.
 *
 * A request passes dm_user_map once, then dm_user_read and dm_user_write once
 * per daemon that takes it (more than once only if a channel died and the
 * request was requeued), dm_user_stall at most once, and dm_user_complete
 * exactly once.
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM dm_user

#if !defined(_DM_USER_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _DM_USER_TRACE_H

#include <linux/tracepoint.h>

/* How a request ended: the "how" field of dm_user_complete. */
#define DM_USER_END_REPLY	0	/* the daemon answered */
#define DM_USER_END_CLOSED	1	/* its channel closed, no recovery */
#define DM_USER_END_TIMEOUT	2	/* nobody answered in timeout_ms */
#define DM_USER_END_TEARDOWN	3	/* no daemon: suspend, orphaned target */
#define DM_USER_END_REJECTED	4	/* refused at map (unsupported op) */

TRACE_EVENT(dm_user_map,
	TP_PROTO(dev_t dev, u64 seq, u32 op, u64 flags, u64 sector, u32 bytes,
		 u32 queued, u32 in_flight),
	TP_ARGS(dev, seq, op, flags, sector, bytes, queued, in_flight),
	TP_STRUCT__entry(
		__field(dev_t, dev)
		__field(u64, seq)
		__field(u32, op)
		__field(u64, flags)
		__field(u64, sector)
		__field(u32, bytes)
		__field(u32, queued)
		__field(u32, in_flight)
	),
	TP_fast_assign(
		__entry->dev = dev;
		__entry->seq = seq;
		__entry->op = op;
		__entry->flags = flags;
		__entry->sector = sector;
		__entry->bytes = bytes;
		__entry->queued = queued;
		__entry->in_flight = in_flight;
	),
	TP_printk("dev %d:%d seq %llu op %u flags 0x%llx sector %llu bytes %u queued %u in_flight %u",
		  MAJOR(__entry->dev), MINOR(__entry->dev), __entry->seq,
		  __entry->op, __entry->flags, __entry->sector, __entry->bytes,
		  __entry->queued, __entry->in_flight)
);

TRACE_EVENT(dm_user_read,
	TP_PROTO(dev_t dev, u64 seq, u32 op, u32 channel),
	TP_ARGS(dev, seq, op, channel),
	TP_STRUCT__entry(
		__field(dev_t, dev)
		__field(u64, seq)
		__field(u32, op)
		__field(u32, channel)
	),
	TP_fast_assign(
		__entry->dev = dev;
		__entry->seq = seq;
		__entry->op = op;
		__entry->channel = channel;
	),
	TP_printk("dev %d:%d seq %llu op %u channel %u",
		  MAJOR(__entry->dev), MINOR(__entry->dev), __entry->seq,
		  __entry->op, __entry->channel)
);

TRACE_EVENT(dm_user_write,
	TP_PROTO(dev_t dev, u64 seq, u64 status),
	TP_ARGS(dev, seq, status),
	TP_STRUCT__entry(
		__field(dev_t, dev)
		__field(u64, seq)
		__field(u64, status)
	),
	TP_fast_assign(
		__entry->dev = dev;
		__entry->seq = seq;
		__entry->status = status;
	),
	TP_printk("dev %d:%d seq %llu status %llu",
		  MAJOR(__entry->dev), MINOR(__entry->dev), __entry->seq,
		  __entry->status)
);

/*
 * A daemon has held a request for stall_ms or longer: fired once per
 * request, from the target's clock, which leaves the request alone.  pid
 * and tid are the process and thread whose read() took it; age_us counts
 * from dm_user_map, held_us from that read().
 */
TRACE_EVENT(dm_user_stall,
	TP_PROTO(dev_t dev, u64 seq, u32 op, u32 channel, s32 pid, s32 tid,
		 u64 age_us, u64 held_us),
	TP_ARGS(dev, seq, op, channel, pid, tid, age_us, held_us),
	TP_STRUCT__entry(
		__field(dev_t, dev)
		__field(u64, seq)
		__field(u32, op)
		__field(u32, channel)
		__field(s32, pid)
		__field(s32, tid)
		__field(u64, age_us)
		__field(u64, held_us)
	),
	TP_fast_assign(
		__entry->dev = dev;
		__entry->seq = seq;
		__entry->op = op;
		__entry->channel = channel;
		__entry->pid = pid;
		__entry->tid = tid;
		__entry->age_us = age_us;
		__entry->held_us = held_us;
	),
	TP_printk("dev %d:%d seq %llu op %u channel %u pid %d tid %d age_us %llu held_us %llu",
		  MAJOR(__entry->dev), MINOR(__entry->dev), __entry->seq,
		  __entry->op, __entry->channel, __entry->pid, __entry->tid,
		  __entry->age_us, __entry->held_us)
);

/*
 * queue_ns, daemon_ns and total_ns are the request's time from dm_user_map to
 * its first dm_user_read, from its latest dm_user_read to the dm_user_write
 * that answered it, and from dm_user_map to here.  The target takes the
 * timestamps only while this event is enabled: a stage the request did not
 * pass, or a request mapped before, reports 0.
 */
TRACE_EVENT(dm_user_complete,
	TP_PROTO(dev_t dev, u64 seq, u32 op, u32 bytes, int error, u32 how,
		 u64 queue_ns, u64 daemon_ns, u64 total_ns),
	TP_ARGS(dev, seq, op, bytes, error, how, queue_ns, daemon_ns, total_ns),
	TP_STRUCT__entry(
		__field(dev_t, dev)
		__field(u64, seq)
		__field(u32, op)
		__field(u32, bytes)
		__field(int, error)
		__field(u32, how)
		__field(u64, queue_ns)
		__field(u64, daemon_ns)
		__field(u64, total_ns)
	),
	TP_fast_assign(
		__entry->dev = dev;
		__entry->seq = seq;
		__entry->op = op;
		__entry->bytes = bytes;
		__entry->error = error;
		__entry->how = how;
		__entry->queue_ns = queue_ns;
		__entry->daemon_ns = daemon_ns;
		__entry->total_ns = total_ns;
	),
	TP_printk("dev %d:%d seq %llu op %u bytes %u error %d how %u queue_ns %llu daemon_ns %llu total_ns %llu",
		  MAJOR(__entry->dev), MINOR(__entry->dev), __entry->seq,
		  __entry->op, __entry->bytes, __entry->error, __entry->how,
		  __entry->queue_ns, __entry->daemon_ns, __entry->total_ns)
);

#endif /* _DM_USER_TRACE_H */

#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE dm-user-trace
#include <trace/define_trace.h>
