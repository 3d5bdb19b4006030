// SPDX-License-Identifier: GPL-2.0+
/*
 * dm-user: a device-mapper target that hands every BIO to a userspace daemon.
 *
 * Based on the dm-user RFC by Palmer Dabbelt <palmerdabbelt@google.com>,
 * rewritten for current kernels; the wire protocol is unchanged.
 *
 * Objects and their lifetimes
 *
 *  - struct dmu_target: one per control device /dev/dm-user/<control-name>,
 *    which it registers when the first table naming it is loaded.  It holds
 *    the queues, the channels and the counters.  It is reference counted:
 *    every table that holds it (below) and every open channel holds one, and
 *    it is freed when the last of these goes.  When the last table lets go
 *    (its dtr), the control device goes away and the target is dead.
 *
 *  - struct dmu_instance: ti->private, one per "user" target in a loaded
 *    table, with that table's arguments.  A table loaded for a device whose
 *    live table has a target of the same control name (dmsetup reload)
 *    shares that dmu_target; its arguments become the target's when it is
 *    resumed (user_resume()), and the table it replaced then lets go.  So
 *    a reload resizes a device or changes its options with its daemon and
 *    requests in place: dm suspends the device, and waits for every BIO,
 *    before it swaps tables.
 *
 *  - struct dmu_channel: one per open() of the control device.  A daemon
 *    reads requests from a channel and must answer each request on the
 *    channel it read it from.  A channel is in service from open() until it
 *    is refused (a protocol error) or released; it lives until it is
 *    released, and then one RCU grace period more: map() and the readers
 *    look at the channels in service through t->chans, an RCU-protected
 *    array edited in place (dmu_chans()), so that taking a channel out of
 *    service never allocates.  t->channels lists every open channel, in
 *    service or refused, for the timeout work.
 *
 *  - struct dmu_msg: the per-bio data of every BIO that reaches map().  Being
 *    per-bio data, it needs no allocation and lives exactly as long as the
 *    BIO: it ends with bio_endio().  A message is in exactly one state:
 *
 *      QUEUED    on a channel's queue, where map() put it, or on
 *                target->backlog (no channel yet, or handed back by a
 *                channel that left service), waiting for a daemon to read it
 *      READING   taken by a read() on a channel: channel->rd_cur when a
 *                daemon has its header but not all of its payload yet
 *      SENT      on channel->sent (in the order it was read) and in
 *                channel->seqs (by seq): fully read, waiting for the reply
 *      REPLYING  channel->wr_cur: the reply header arrived, its payload is
 *                still being copied in
 *
 *    A channel's queue, sent list and seqs change under channel->lock
 *    (seqs also under its own xa_lock, inside it), the backlog under
 *    target->lock.  Whoever takes a message off a list or out
 *    of a slot owns it, and only its owner ends the BIO.  A READING or
 *    REPLYING message is owned by the read() or write() copying it, which
 *    holds the channel's rd_lock or wr_lock, never a spinlock, while it
 *    copies.  The timeout work takes rd_cur and wr_cur only with a trylock
 *    of that mutex, and dev_release() only when no call can run; both do it
 *    under channel->lock, which orders them.
 *
 *    A request's age counts from map(): timeout_ms, whenever it was set,
 *    ends a request older than that in any of these states.
 *
 *    channel->seqs, an xarray indexed by seq, is how a reply finds its
 *    request in O(1) (xarray height: at most 11 levels of 64 slots for a
 *    64-bit seq), and how the timeout work finds the expired SENT messages
 *    without visiting the others (in seq order, marked DMU_XA_SENT; see
 *    dmu_expire_sent()).  An entry is one of: a SENT message (marked); a
 *    reserved slot (reads as NULL), taken by the read() that took the
 *    message, before it copies anything, so that the message enters the
 *    index under channel->lock with no allocation there; or a value, the
 *    record of a request that timed out after this channel read it (a
 *    READ's len, else 0), so that its late reply is accepted, never a
 *    protocol error.  The entry goes with the message: erased when a reply
 *    takes it, or when the channel leaves service with it (a requeue or a
 *    failure), turned into a record when it times out (a store over an
 *    entry, which allocates nothing), released when a read() puts it back.
 *    Records live until their late reply or the channel's release; the
 *    xarray is destroyed with the channel.
 *
 * The data path takes no lock that all channels share.  map() puts a BIO on
 * one channel's queue under that channel's lock: a busy reader's, else the
 * last reader's, else the next in turn (see "Readers busy" below); a read()
 * takes from its own queue and, when that is empty (or it reads batches),
 * from the other channels' (so a busy or stuck reader does not hold
 * requests back while another waits); a write() finds the request by seq
 * in its channel's seqs, under that channel's lock.  Counters are atomics.
 * A read() sleeps on its own channel's wait queue, and map() wakes one
 * sleeping reader, the chosen channel's or another that will take the
 * request over, unless a reader it woke is still coming (see
 * dmu_reader_wake()).  target->lock guards the
 * backlog, the channel set and list, the live arguments and the target's
 * state (orphaned, recovering, suspending, dead): what changes when a
 * daemon comes or goes, not per request.
 *
 * Lock order (outer to inner)
 *
 *  0. a pipe's mutex: splice() holds it around dev_splice_read(), and
 *     around dev_write() when it splices into the control device
 *  1. dmu_targets_lock (the control names: ctr and dtr)
 *  2. misc_mtx (the misc core's, around (de)registration and dev_open())
 *  3. channel->rd_lock, channel->wr_lock (never both)
 *  4. target->lock (a spinlock: map() takes no sleeping lock)
 *  5. channel->lock (a spinlock; never two channels' at once)
 *  6. channel->seqs's xa_lock (alone, in read()'s reservation)
 *
 * The timeout work, under target->lock, may trylock a channel's rd_lock or
 * wr_lock; a trylock never waits, so it takes no part in this order.
 *
 * Memory: map() and the paths that end requests (a reply, a refusal, a
 * release, the timeout and recovery work, presuspend) allocate nothing they
 * would wait for.  Only read() and splice() allocate, and under no
 * spinlock: the xarray nodes of their reservations (GFP_NOIO; see
 * dmu_reserve_seqs()), and a splice's pages for headers and for payload
 * pages it cannot reference (GFP_NOIO; see dmu_splice_out()).  A pipe
 * buffer holds a reference to a page of a WRITE's BIO; it keeps the page,
 * not the message, and nothing in the module looks at it again.
 * The work runs on dmu_wq, a WQ_MEM_RECLAIM workqueue, so it makes progress
 * when reclaim is waiting on this very device.
 *
 * Device-mapper suspends a device, and waits for every BIO it has mapped,
 * before it calls the destructor, so no message exists when the last dtr
 * runs.  What keeps a suspend from waiting forever on a daemon that is gone
 * is presuspend: with no channel in service, it ends every queued request
 * with an error; and timeout_ms, which ends requests a daemon holds.
 *
 * The RFC's open questions (its FIXMEs), and how this version answers them
 *
 *  - A mutex on the map path: map() takes one channel's spinlock, held for
 *    a list_add, and allocates nothing (the message is per-bio data), so it
 *    cannot deadlock on memory pressure.
 *  - Queue size and throttling: the queue needs no memory of its own, so it
 *    is unbounded by default; the queue_depth argument makes the submitter
 *    wait (REQ_NOWAIT gets BLK_STS_AGAIN), which is the push-back the RFC
 *    looked for in DM_MAPIO_REQUEUE (bio-based dm only honours that during a
 *    noflush suspend).
 *  - DM_MAPIO_KILL or a later error: an op the protocol cannot carry ends in
 *    map() with BLK_STS_NOTSUPP, which is what KILL would do with a more
 *    precise status; everything else is handed to the daemon.
 *  - Flush ordering: the block layer does not order BIOs around a flush; the
 *    submitter waits for what must precede it.  A FLUSH (or PREFLUSH/FUA)
 *    request must not be answered before the writes the daemon has already
 *    answered are durable; that is the daemon's contract, in the UAPI.
 *  - Early termination of iov copies: copy_page_{to,from}_iter() return
 *    short on a fault; the copy stops there, and the call reports the bytes
 *    moved, or EFAULT if there were none.
 *  - A misc device per target: kept, as /dev/dm-user/<control-name>;
 *    duplicate names fail in ctr with a clear error instead of in sysfs.
 *  - Replies bound to the channel that read the request: kept.  It is what
 *    lets a dying channel hand its requests back (recovery_ms) instead of
 *    failing them.
 */

#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/debugfs.h>
#include <linux/device-mapper.h>
#include <linux/fs.h>
#include <linux/kref.h>
#include <linux/list_sort.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/percpu.h>
#include <linux/pipe_fs_i.h>
#include <linux/poll.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/spinlock.h>
#include <linux/splice.h>
#include <linux/uio.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>

#include "include/uapi/linux/dm-user.h"

#define CREATE_TRACE_POINTS
#include "dm-user-trace.h"

#define DM_MSG_PREFIX "user"

#define DMU_CTL_NAME_MAX	64
#define DMU_MAX_DISCARD_SECTORS	BIT(21)		/* 1 GiB: len fits in u32 */
#define DMU_TICK_MS_MAX		1000U
#define DMU_CHANSET_MIN		4	/* slots of the first channel set */

/* Defaults of the optional table arguments. */
#define DMU_DEFAULT_QUEUE_DEPTH	0	/* unlimited */
#define DMU_DEFAULT_TIMEOUT_MS	0	/* no timeout */
#define DMU_DEFAULT_RECOVERY_MS	0	/* fail at once when a daemon dies */
#define DMU_DEFAULT_STALL_MS	0	/* no stall events */
#define DMU_DEFAULT_MAX_IO_LEN	2048	/* sectors: 1 MiB */

struct dmu_target;
struct dmu_channel;

struct dmu_msg {
	struct dm_user_message hdr;	/* the request as the daemon sees it */
	struct bio *bio;
	struct list_head node;		/* on a queue, or channel->sent */
	struct bvec_iter data;		/* position in the BIO's data */
	size_t pos;			/* bytes of header + payload moved */
	unsigned long mapped;		/* jiffies at map(): its age's origin */
	/*
	 * The daemon thread whose read() last took it, and when (jiffies):
	 * stored at the take, read only by the in-flight table and the stall
	 * check.  Meaningless while the message is QUEUED.
	 */
	unsigned long taken;
	pid_t tid;			/* task_pid_nr(): the thread */
	pid_t tgid;			/* task_tgid_nr(): its process */
	bool stalled;			/* dm_user_stall fired for it */
	/*
	 * ktime_get_ns() at the stages dm_user_complete reports, taken only
	 * while it is traced: 0 when not taken.
	 */
	u64 map_ns;			/* mapped; 0: this request is not timed */
	u64 read_ns;			/* first taken by a daemon */
	u64 taken_ns;			/* last taken by a daemon */
	u64 reply_ns;			/* answered */
};

/*
 * The channels in service, as map() and readers see them.  Slots are edited
 * in place under target->lock, and a set is replaced (by a larger one) only
 * when it is full, so closing a channel never allocates; see dmu_chans().
 */
struct dmu_chanset {
	struct rcu_head rcu;
	unsigned int cap;
	unsigned int nr;
	struct dmu_channel *ch[];
};

/* The table arguments of one "user" target in one table. */
struct dmu_args {
	sector_t begin;
	unsigned int queue_depth;
	unsigned int timeout_ms;
	unsigned int recovery_ms;
	unsigned int max_io_len;
	unsigned int stall_ms;
};

struct dmu_target {
	spinlock_t lock;		/* backlog, chans, channels, state below */
	struct dmu_chanset __rcu *chans;	/* channels in service */
	struct list_head channels;	/* every open channel, refused ones too */
	struct list_head backlog;	/* QUEUED on no channel, oldest first */
	unsigned int __percpu *rotor;	/* map()'s turn among the channels */
	wait_queue_head_t space_wait;	/* map() waiting for queue_depth */
	atomic64_t next_seq;
	atomic_t nr_queued;		/* QUEUED */
	atomic_t nr_pending;		/* mapped and not ended */
	atomic_t nr_coming;		/* channels whose reader is coming */
	unsigned long coming_since;	/* jiffies of the latest such wakeup */
	unsigned int nr_channels;	/* in service: chans->nr */
	u32 next_channel_id;
	u32 hot_id;			/* channel whose reader took last */
	bool dead;			/* the last table's dtr has run */
	bool orphaned;			/* no daemon: map() fails at once */
	bool recovering;		/* no daemon, inside recovery_ms */
	bool suspending;
	unsigned long orphan_deadline;	/* jiffies, while recovering */

	/* The live table's arguments, set at resume; see user_resume(). */
	struct dmu_args args;

	/* Counters for status. */
	atomic64_t completed;
	atomic64_t errors;
	atomic64_t timeouts;
	atomic64_t requeues;
	atomic64_t depth_waits;		/* map()s that waited for queue_depth */
	atomic64_t depth_wait_ns;	/* and for how long in all */
	atomic_t hwm_queued;		/* the most QUEUED since reset_hwm */
	atomic_t hwm_in_flight;		/* the most held by daemons since then */
	atomic64_t stalls;		/* dm_user_stall events */

	dev_t dev;
	struct delayed_work work;	/* timeouts and the recovery window */
	struct kref kref;
	unsigned int nr_tables;		/* instances: tables that hold it */
	struct list_head instances;	/* under dmu_targets_lock */
	struct miscdevice misc;
	struct list_head node;		/* on dmu_targets */
	char ctl_name[DMU_CTL_NAME_MAX + 1];
	char misc_name[sizeof("dm-user/") + DMU_CTL_NAME_MAX];
	/* debugfs dm-user/<ctl_name>/, removed before the control device */
	struct dentry *debugfs;
};

/* ti->private: one "user" target of one table, and the target it drives. */
struct dmu_instance {
	struct dmu_target *t;
	struct dm_target *ti;
	struct dmu_args args;		/* this table's, until it is live */
	struct list_head node;		/* on t->instances */
};

struct dmu_channel {
	struct dmu_target *t;
	u32 id;
	spinlock_t lock;		/* queue, sent, detached; see dmu_work() */
	struct list_head queue;		/* QUEUED messages map() gave it */
	struct list_head sent;		/* SENT messages */
	struct list_head node;		/* on target->channels */
	wait_queue_head_t rd_wait;	/* its readers and pollers */
	bool detached;			/* out of service: map() must pick another */
	atomic_t coming;		/* a reader woken has not looked yet */
	/*
	 * The thread that reads this channel (the first one that took a
	 * message; a reference, put when the channel is freed), and whether
	 * it is busy: it took messages and has not waited since (see "Readers
	 * busy" above).  A second
	 * thread reading the channel makes it shared: then it is never
	 * counted on (see dmu_reader_busy()).
	 */
	struct task_struct *reader;
	bool reader_shared;
	bool busy;
	unsigned long busy_since;	/* jiffies: when it took them */
	unsigned int last_take;		/* how many its last take took */
	u64 flags;			/* DM_USER_CHANNEL_* */
	struct rcu_head rcu;
	struct mutex rd_lock;		/* serialises read() on this file */
	struct mutex wr_lock;		/* serialises write() on this file */
	struct dmu_msg *rd_cur;		/* READING message */
	struct dmu_msg *wr_cur;		/* REPLYING message */
	/* A READING message that timed out: the rest of it, payload zeroed. */
	struct dm_user_message gone;
	size_t gone_pos;
	size_t gone_len;
	struct dm_user_message reply;	/* reply header being assembled */
	size_t reply_pos;
	u64 drain;			/* late reply payload bytes to discard */
	bool broken;			/* protocol error: the channel is refused */
	/*
	 * The requests this channel has read and not seen answered, by seq
	 * (see the comment at the top): a SENT message (marked DMU_XA_SENT),
	 * a reserved slot for one its read() has taken and not finished
	 * copying, or a value, for one that timed out after it was read: a
	 * READ's len, else 0.
	 */
	struct xarray seqs;
};

/* The mark of a SENT message in channel->seqs: the timeout work's walk. */
#define DMU_XA_SENT	XA_MARK_0

/* Control names in use, so a duplicate fails in ctr, not in sysfs. */
static LIST_HEAD(dmu_targets);
static DEFINE_MUTEX(dmu_targets_lock);

/*
 * Own caches: slabinfo shows exactly what is live, and a leak makes
 * kmem_cache_destroy() complain at rmmod.  Messages need no cache: they
 * are per-bio data.
 */
static struct kmem_cache *dmu_target_cache;
static struct kmem_cache *dmu_channel_cache;

/* Runs every target's clock (dmu_work()). */
static struct workqueue_struct *dmu_wq;

/* ---- protocol helpers ---------------------------------------------------- */

static int dmu_req_type(struct bio *bio, u64 *type)
{
	switch (bio_op(bio)) {
	case REQ_OP_READ:
		*type = DM_USER_REQ_MAP_READ;
		return 0;
	case REQ_OP_WRITE:
		/* dm sends flushes as empty writes with REQ_PREFLUSH. */
		if ((bio->bi_opf & REQ_PREFLUSH) && !bio->bi_iter.bi_size)
			*type = DM_USER_REQ_MAP_FLUSH;
		else
			*type = DM_USER_REQ_MAP_WRITE;
		return 0;
	case REQ_OP_FLUSH:
		*type = DM_USER_REQ_MAP_FLUSH;
		return 0;
	case REQ_OP_DISCARD:
		*type = DM_USER_REQ_MAP_DISCARD;
		return 0;
	case REQ_OP_SECURE_ERASE:
		*type = DM_USER_REQ_MAP_SECURE_ERASE;
		return 0;
	case REQ_OP_WRITE_ZEROES:
		*type = DM_USER_REQ_MAP_WRITE_ZEROES;
		return 0;
	case REQ_OP_ZONE_OPEN:
		*type = DM_USER_REQ_MAP_ZONE_OPEN;
		return 0;
	case REQ_OP_ZONE_CLOSE:
		*type = DM_USER_REQ_MAP_ZONE_CLOSE;
		return 0;
	case REQ_OP_ZONE_FINISH:
		*type = DM_USER_REQ_MAP_ZONE_FINISH;
		return 0;
	case REQ_OP_ZONE_APPEND:
		*type = DM_USER_REQ_MAP_ZONE_APPEND;
		return 0;
	case REQ_OP_ZONE_RESET:
		*type = DM_USER_REQ_MAP_ZONE_RESET;
		return 0;
	case REQ_OP_ZONE_RESET_ALL:
		*type = DM_USER_REQ_MAP_ZONE_RESET_ALL;
		return 0;
	default:
		/* Passthrough (REQ_OP_DRV_*) and anything newer. */
		return -EOPNOTSUPP;
	}
}

/*
 * Request flags as the daemon sees them.  Flags with no protocol bit (those
 * the block layer keeps for itself, like REQ_ALLOC_CACHE) are not passed on:
 * they say nothing the daemon could act on.
 */
static u64 dmu_req_flags(struct bio *bio)
{
	static const struct {
		blk_opf_t req;
		u64 user;
	} map[] = {
		{ REQ_FAILFAST_DEV, DM_USER_REQ_MAP_FLAG_FAILFAST_DEV },
		{ REQ_FAILFAST_TRANSPORT, DM_USER_REQ_MAP_FLAG_FAILFAST_TRANSPORT },
		{ REQ_FAILFAST_DRIVER, DM_USER_REQ_MAP_FLAG_FAILFAST_DRIVER },
		{ REQ_SYNC, DM_USER_REQ_MAP_FLAG_SYNC },
		{ REQ_META, DM_USER_REQ_MAP_FLAG_META },
		{ REQ_PRIO, DM_USER_REQ_MAP_FLAG_PRIO },
		{ REQ_NOMERGE, DM_USER_REQ_MAP_FLAG_NOMERGE },
		{ REQ_IDLE, DM_USER_REQ_MAP_FLAG_IDLE },
		{ REQ_INTEGRITY, DM_USER_REQ_MAP_FLAG_INTEGRITY },
		{ REQ_FUA, DM_USER_REQ_MAP_FLAG_FUA },
		{ REQ_PREFLUSH, DM_USER_REQ_MAP_FLAG_PREFLUSH },
		{ REQ_RAHEAD, DM_USER_REQ_MAP_FLAG_RAHEAD },
		{ REQ_BACKGROUND, DM_USER_REQ_MAP_FLAG_BACKGROUND },
		{ REQ_NOWAIT, DM_USER_REQ_MAP_FLAG_NOWAIT },
#ifdef REQ_CGROUP_PUNT
		{ REQ_CGROUP_PUNT, DM_USER_REQ_MAP_FLAG_CGROUP_PUNT },
#endif
		{ REQ_NOUNMAP, DM_USER_REQ_MAP_FLAG_NOUNMAP },
		{ REQ_POLLED, DM_USER_REQ_MAP_FLAG_HIPRI },
		{ REQ_DRV, DM_USER_REQ_MAP_FLAG_DRV },
		{ REQ_SWAP, DM_USER_REQ_MAP_FLAG_SWAP },
	};
	u64 flags = 0;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(map); i++)
		if (bio->bi_opf & map[i].req)
			flags |= map[i].user;
	return flags;
}

/* Only a WRITE request carries a payload to the daemon. */
static size_t dmu_bytes_to_user(const struct dmu_msg *m)
{
	size_t n = sizeof(m->hdr);

	if (m->hdr.type == DM_USER_REQ_MAP_WRITE)
		n += m->hdr.len;
	return n;
}

/* Only a successful READ reply carries a payload from the daemon. */
static bool dmu_reply_has_data(const struct dmu_msg *m, u64 status)
{
	return m->hdr.type == DM_USER_REQ_MAP_READ &&
	       status == DM_USER_RESP_SUCCESS && m->hdr.len;
}

static blk_status_t dmu_reply_status(u64 status)
{
	switch (status) {
	case DM_USER_RESP_SUCCESS:
		return BLK_STS_OK;
	case DM_USER_RESP_UNSUPPORTED:
		return BLK_STS_NOTSUPP;
	case DM_USER_RESP_NOSPC:
		return BLK_STS_NOSPC;
	default:
		return BLK_STS_IOERR;
	}
}

/*
 * Copy between the BIO's data, from m->data on, and a user iterator.  The
 * BIO's own iterator is never advanced, so a requeued message can start over.
 */
static size_t dmu_copy_bio(struct dmu_msg *m, struct iov_iter *iter,
			   bool to_user)
{
	size_t done = 0;

	while (m->data.bi_size && iov_iter_count(iter)) {
		struct bio_vec bv = bio_iter_iovec(m->bio, m->data);
		size_t n;

		if (to_user)
			n = copy_page_to_iter(bv.bv_page, bv.bv_offset,
					      bv.bv_len, iter);
		else
			n = copy_page_from_iter(bv.bv_page, bv.bv_offset,
						bv.bv_len, iter);
		bio_advance_iter_single(m->bio, &m->data, n);
		done += n;
		if (n < bv.bv_len)
			break;	/* end of the user buffer, or a fault */
	}
	return done;
}

/* ---- message lifecycle -------------------------------------------------- */

static void dmu_msg_reset(struct dmu_msg *m)
{
	m->data = m->bio->bi_iter;
	m->pos = 0;
}

/*
 * The channels in service.  The caller holds the RCU read lock or
 * target->lock, and reads the count with dmu_chans_nr() before the slots
 * below it.  Writers hold target->lock: they fill a slot before they
 * publish a larger count, and move the last channel into a leaving one's
 * slot before they publish a smaller count.  So a reader sees only
 * channels that were in service during its read-side section (a channel is
 * freed a grace period after it left), possibly one of them twice.
 */
static struct dmu_chanset *dmu_chans(struct dmu_target *t)
{
	return rcu_dereference_check(t->chans, lockdep_is_held(&t->lock));
}

static unsigned int dmu_chans_nr(struct dmu_chanset *cs)
{
	/* Pairs with the release in dmu_chans_add/del_locked(). */
	return cs ? smp_load_acquire(&cs->nr) : 0;
}

static struct dmu_channel *dmu_chans_at(struct dmu_chanset *cs, unsigned int i)
{
	return READ_ONCE(cs->ch[i]);
}

static unsigned int dmu_nr_channels_locked(struct dmu_target *t)
{
	return dmu_chans_nr(dmu_chans(t));
}

/* Puts @c in service; target->lock held, and the set has room. */
static void dmu_chans_add_locked(struct dmu_target *t, struct dmu_channel *c)
{
	struct dmu_chanset *cs = dmu_chans(t);

	WRITE_ONCE(cs->ch[cs->nr], c);
	/* The slot is filled before a reader can count it; see dmu_chans(). */
	smp_store_release(&cs->nr, cs->nr + 1);
}

/* Takes @c out of service, in place; target->lock held.  Allocates nothing. */
static void dmu_chans_del_locked(struct dmu_target *t, struct dmu_channel *c)
{
	struct dmu_chanset *cs = dmu_chans(t);
	unsigned int i, last = cs->nr - 1;

	for (i = 0; i < cs->nr && cs->ch[i] != c; i++)
		;
	if (WARN_ON_ONCE(i == cs->nr))
		return;
	WRITE_ONCE(cs->ch[i], cs->ch[last]);
	/* The last channel is moved before a reader stops counting its slot. */
	smp_store_release(&cs->nr, last);
}

/*
 * Traces the end of @m with the time it spent in each stage: queued until
 * first taken, with the daemon that answered it, and in all.  A stage not
 * passed, or not timed because dm_user_complete was not traced when @m was
 * mapped, reports 0.
 */
static void dmu_trace_complete(struct dmu_target *t, struct dmu_msg *m,
			       blk_status_t status, u32 how)
{
	u64 queue_ns = 0, daemon_ns = 0, total_ns = 0;

	if (m->map_ns) {
		total_ns = ktime_get_ns() - m->map_ns;
		if (m->read_ns)
			queue_ns = m->read_ns - m->map_ns;
		if (m->reply_ns)
			daemon_ns = m->reply_ns - m->taken_ns;
	}
	trace_dm_user_complete(t->dev, m->hdr.seq, m->hdr.type, m->hdr.len,
			       blk_status_to_errno(status), how, queue_ns,
			       daemon_ns, total_ns);
}

/* Stamps a stage of @m, if it is timed (see dmu_trace_complete()). */
static void dmu_stamp_taken(struct dmu_msg *m)
{
	if (!m->map_ns)
		return;
	m->taken_ns = ktime_get_ns();
	if (!m->read_ns)
		m->read_ns = m->taken_ns;
	m->reply_ns = 0;
}

/* Counts a request that ended, mapped or not. */
static void dmu_count_end(struct dmu_target *t, blk_status_t status, u32 how)
{
	atomic64_inc(&t->completed);
	if (status)
		atomic64_inc(&t->errors);
	if (how == DM_USER_END_TIMEOUT)
		atomic64_inc(&t->timeouts);
}

/*
 * Raises a high-water mark to @v.  A plain read first: once the mark is
 * reached, the data path only reads it.
 */
static void dmu_hwm(atomic_t *hwm, int v)
{
	int old = atomic_read(hwm);

	while (v > old && !atomic_try_cmpxchg(hwm, &old, v))
		;
}

/* Requests held by daemons: mapped, not queued, not ended. */
static int dmu_in_flight(struct dmu_target *t, int queued)
{
	return max(atomic_read(&t->nr_pending) - queued, 0);
}

/* Ends a message its caller owns; takes no lock. */
static void dmu_end(struct dmu_target *t, struct dmu_msg *m,
		    blk_status_t status, u32 how)
{
	struct bio *bio = m->bio;

	if (trace_dm_user_complete_enabled())
		dmu_trace_complete(t, m, status, how);
	dmu_count_end(t, status, how);
	atomic_dec(&t->nr_pending);
	/* Pairs with the barrier in map()'s wait: it sees the room or is woken. */
	if (t->args.queue_depth && wq_has_sleeper(&t->space_wait))
		wake_up(&t->space_wait);
	bio->bi_status = status;
	bio_endio(bio);
}

static void dmu_end_list(struct dmu_target *t, struct list_head *list,
			 blk_status_t status, u32 how)
{
	struct dmu_msg *m, *tmp;

	list_for_each_entry_safe(m, tmp, list, node) {
		list_del_init(&m->node);
		dmu_end(t, m, status, how);
	}
}

/*
 * Readers "coming".  A reader woken in dev_read() is coming until it looks
 * at the queues again, which is the next thing it does; while one is,
 * dmu_wake_reader() wakes nobody else, since that reader will take what was
 * queued meanwhile (all of it, on a batched channel).  Under load this makes
 * one wakeup serve many requests instead of each request waking a reader of
 * its own.  A reader that looks and leaves work queued wakes the next one
 * (dmu_hand_off()), so work never waits on a reader that took something
 * else and went back to userspace.  A reader that has not looked within
 * DMU_COMING_JIFFIES (starved of CPU) is no longer waited for.
 *
 * Readers "busy".  A reader that took messages is busy with them until it
 * waits again (dmu_idle(): in read() or poll(), on the wait queue); a
 * reader whose poll() finds messages is busy from then on too
 * (dmu_reader_polled()), since it will read() them: a poller woken is
 * neither waiting nor coming, and without this map() would wake another
 * reader for every message queued between its wakeup and its read().  While
 * it is busy, on a CPU or runnable (not blocked in its backend, a disk or a
 * server; on PREEMPT_RT a spinlock's wait counts as running), and took
 * within DMU_COMING_JIFFIES or keeps up (no more queued than it took last),
 * it will come back soon and take what was queued meanwhile (all of it, on
 * a batched channel): map() queues on its channel and wakes nobody
 * (dmu_pick_channel(), dmu_reader_busy()).  When none is, map() wakes the
 * reader that took last (t->hot_id), so that a light load keeps to one daemon thread instead of
 * waking each in turn: on a machine with few CPUs every extra thread woken
 * costs a context switch, which is what made more daemon threads slower
 * than one.  More readers join when the busy ones block or fall behind (a
 * channel without batches: more than one message queued; past the bound:
 * more than the last take), and through dmu_hand_off(), which on a batched
 * channel hands off only what is queued elsewhere than on the busy reader's
 * own channel (that, it takes itself on its next read()).
 *
 * The counter pairs two barriers: dmu_looked() drops it and then reads the
 * queues, dmu_wake_reader() queues and then reads it; so either the reader
 * sees the message, or the waker sees nobody coming and wakes a reader.
 * The busy flag pairs the same way: dmu_idle() clears it, on the wait
 * queue, and then the reader looks; map() queues and then reads it.
 */
#define DMU_COMING_JIFFIES	2

struct dmu_waiter {
	struct wait_queue_entry wq;
	struct dmu_channel *c;
};

/* Wake function of a reader sleeping in dev_read(): marks it coming. */
static int dmu_reader_wake(struct wait_queue_entry *wq, unsigned int mode,
			   int sync, void *key)
{
	struct dmu_waiter *w = container_of(wq, struct dmu_waiter, wq);
	struct dmu_target *t = w->c->t;
	int r = autoremove_wake_function(wq, mode, sync, key);

	if (r && !atomic_xchg(&w->c->coming, 1)) {
		WRITE_ONCE(t->coming_since, jiffies);
		atomic_inc(&t->nr_coming);
	}
	return r;
}

/* @c's reader is about to look at the queues: it is no longer coming. */
static void dmu_looked(struct dmu_channel *c)
{
	if (atomic_read(&c->coming) && atomic_xchg(&c->coming, 0)) {
		atomic_dec(&c->t->nr_coming);
		/* Drop the count before the look; see above. */
		smp_mb__after_atomic();
	}
}

/*
 * @c's reader is about to wait (in read() or poll()): it is no longer busy,
 * and looks at the queues once more.  The barrier pairs with the one in
 * dmu_wake_reader(): either the reader sees the message, or map() sees it
 * not busy (and waiting: this runs after it is on the wait queue).
 */
static void dmu_idle(struct dmu_channel *c)
{
	if (READ_ONCE(c->busy)) {
		WRITE_ONCE(c->busy, false);
		/* Not busy before the look; see above. */
		smp_mb();
	}
}

/*
 * @c's reader is busy from now: it polled and found messages, which it
 * will read() (without this a reader woken in poll() is neither busy nor
 * waiting from its wakeup until its read(), and map() would wake another
 * reader for each message queued meanwhile), or it took some.
 */
static void dmu_reader_polled(struct dmu_channel *c)
{
	WRITE_ONCE(c->busy_since, jiffies);
	WRITE_ONCE(c->busy, true);
}

/* After a take that returns messages: @c's reader is busy with them. */
static void dmu_reader_took(struct dmu_channel *c)
{
	if (!c->reader)
		c->reader = get_task_struct(current);
	else if (c->reader != current)
		WRITE_ONCE(c->reader_shared, true);
	dmu_reader_polled(c);
	WRITE_ONCE(c->t->hot_id, c->id);
}

/*
 * @c's reader is busy with messages it took, on a CPU or runnable, not
 * blocked: it will look again soon and take what was queued since, so
 * nobody else need be woken for it: within DMU_COMING_JIFFIES of its take,
 * and after that while no more are queued than its last take took (it
 * keeps up: a slow kernel, costly requests).  A reader blocked in
 * its backend (a disk, a server) is not counted on.  Lockless, a heuristic:
 * a reader that blocks just after leaves what it was given to the next
 * map() that finds it blocked (which wakes another reader, who takes over
 * the whole queue on a batched channel) or to its own return.
 */
static bool dmu_reader_busy(struct dmu_channel *c)
{
	struct task_struct *p = READ_ONCE(c->reader);
	unsigned int state;

	if (!READ_ONCE(c->busy) || !p || READ_ONCE(c->reader_shared))
		return false;
	/*
	 * Running, or on PREEMPT_RT waiting for a spinlock (which sleeps
	 * there: a map() holding the channel's lock is enough): not blocked.
	 */
	state = READ_ONCE(p->__state);
	if (state != TASK_RUNNING && state != TASK_RTLOCK_WAIT)
		return false;
	/* A batch takes all that is queued; else one per read(). */
	if (time_before(jiffies, READ_ONCE(c->busy_since) + DMU_COMING_JIFFIES))
		return (READ_ONCE(c->flags) & DM_USER_CHANNEL_BATCH) ||
		       atomic_read(&c->t->nr_queued) <= 1;
	/* Longer (a slow kernel, a costly request): while it keeps up. */
	return atomic_read(&c->t->nr_queued) <= READ_ONCE(c->last_take);
}

static bool dmu_reader_coming(struct dmu_target *t)
{
	return atomic_read(&t->nr_coming) &&
	       time_before(jiffies, READ_ONCE(t->coming_since) +
				    DMU_COMING_JIFFIES);
}

/*
 * Wakes one reader that sleeps and could take a message just queued on
 * @first (NULL: on the backlog, or anywhere), unless one is coming:
 * @first's own, or else any other channel's in service, which will take it
 * over.  The barrier pairs with the one in set_current_state() of a reader
 * going to sleep, and with the one in dmu_looked(): either that reader sees
 * the message, or this sees it waiting or not coming.
 */
static void dmu_wake_reader(struct dmu_target *t, struct dmu_channel *first)
{
	struct dmu_chanset *cs;
	struct dmu_channel *c;
	unsigned int i, nr;

	/* Orders the queueing before the checks below. */
	smp_mb();
	if (dmu_reader_coming(t))
		return;
	/* Lockless: see above; a reader that was not seen sees the message. */
	if (first && waitqueue_active(&first->rd_wait)) {
		wake_up(&first->rd_wait);
		return;
	}
	if (first && dmu_reader_busy(first))
		return;
	rcu_read_lock();
	cs = rcu_dereference(t->chans);
	nr = dmu_chans_nr(cs);
	for (i = 0; i < nr; i++) {
		c = dmu_chans_at(cs, i);
		/* Lockless, as above. */
		if (waitqueue_active(&c->rd_wait)) {
			wake_up(&c->rd_wait);
			break;
		}
	}
	rcu_read_unlock();
}

/* Wakes every reader and poller in service; target->lock held. */
static void dmu_wake_all_locked(struct dmu_target *t)
{
	struct dmu_chanset *cs = dmu_chans(t);
	unsigned int i, nr = dmu_chans_nr(cs);

	for (i = 0; i < nr; i++)
		wake_up_all(&cs->ch[i]->rd_wait);
}

static int dmu_seq_cmp(void *priv, const struct list_head *a,
		       const struct list_head *b)
{
	return list_entry(a, struct dmu_msg, node)->hdr.seq >
	       list_entry(b, struct dmu_msg, node)->hdr.seq;
}

/*
 * Puts messages back on the backlog, in seq order, ahead of everything
 * mapped since: those a channel held (@held: they count as requeued) or
 * had queued.  @list is in no particular order (a sent list is in the
 * order its daemon read them): a merge sort, then one merge into the
 * backlog (in seq order), which stops where the last of them goes:
 * O(n log n) for n messages, plus the backlog ahead of them.  Called with
 * target->lock held; list_sort() allocates nothing.
 */
static void dmu_requeue_locked(struct dmu_target *t, struct list_head *list,
			       bool held)
{
	struct list_head *pos = t->backlog.next;
	struct dmu_msg *m, *tmp;

	list_sort(NULL, list, dmu_seq_cmp);
	list_for_each_entry_safe(m, tmp, list, node) {
		dmu_msg_reset(m);
		/* Past the queued messages with a smaller seq. */
		while (pos != &t->backlog &&
		       list_entry(pos, struct dmu_msg, node)->hdr.seq < m->hdr.seq)
			pos = pos->next;
		list_move_tail(&m->node, pos);
		if (held) {
			dmu_hwm(&t->hwm_queued,
				atomic_inc_return(&t->nr_queued));
			atomic64_inc(&t->requeues);
		}
	}
}

/*
 * Moves every QUEUED message to @list.  Called with target->lock held and
 * no channel in service: then the backlog holds them all.
 */
static void dmu_take_queue_locked(struct dmu_target *t, struct list_head *list)
{
	struct dmu_msg *m;

	list_for_each_entry(m, &t->backlog, node)
		atomic_dec(&t->nr_queued);
	list_splice_tail_init(&t->backlog, list);
	wake_up_all(&t->space_wait);
}

static void dmu_schedule_work_locked(struct dmu_target *t)
{
	unsigned long delay = msecs_to_jiffies(DMU_TICK_MS_MAX);
	unsigned int timeout_ms = t->args.timeout_ms;
	unsigned int stall_ms = t->args.stall_ms;

	if (t->dead)
		return;
	if (timeout_ms)
		delay = min(delay, msecs_to_jiffies(max(timeout_ms / 4, 1U)));
	if (stall_ms)
		delay = min(delay, msecs_to_jiffies(max(stall_ms / 4, 1U)));
	if (t->recovering)
		delay = min(delay, time_after(t->orphan_deadline, jiffies) ?
				   t->orphan_deadline - jiffies : 0UL);
	mod_delayed_work(dmu_wq, &t->work, max(delay, 1UL));
}

/*
 * The clock runs while requests could time out or stall, or a daemon may
 * return.
 */
static bool dmu_needs_work_locked(struct dmu_target *t)
{
	return ((t->args.timeout_ms || t->args.stall_ms) &&
		atomic_read(&t->nr_pending)) || t->recovering;
}

/* A request's age, from map(), against a timeout of @tmo jiffies. */
static bool dmu_expired(const struct dmu_msg *m, unsigned long tmo)
{
	return time_after_eq(jiffies, m->mapped + tmo);
}

/*
 * What channel->seqs keeps of a request that timed out after the channel
 * read it, so that its late reply is accepted (a READ's data discarded)
 * rather than refused, however many others timed out since: the bytes of
 * data that reply may carry.  The record lives until that reply or the
 * channel's release.
 */
static void *dmu_expired_entry(const struct dmu_msg *m)
{
	return xa_mk_value(m->hdr.type == DM_USER_REQ_MAP_READ ? m->hdr.len : 0);
}

/*
 * Moves the messages of queue @from older than @tmo to @to and returns how
 * many.
 */
static unsigned int dmu_collect_expired(struct list_head *from,
					struct list_head *to,
					unsigned long tmo)
{
	struct dmu_msg *m, *tmp;
	unsigned int n = 0;

	list_for_each_entry_safe(m, tmp, from, node) {
		if (dmu_expired(m, tmo)) {
			list_move_tail(&m->node, to);
			n++;
		}
	}
	return n;
}

/*
 * Moves @c's SENT messages older than @tmo to @to, each replaced in
 * c->seqs by its record for a late reply.  The walk is bounded: it visits
 * the SENT messages (the marked entries, skipping the records) in seq
 * order and stops at the first one that is not expired, because a higher
 * seq was mapped no earlier, with one exception: map() stamps a request's
 * age before it takes its seq, and may wait for queue_depth in between, so
 * a request that waited (or was preempted there) can have a higher seq
 * than one mapped after it; it then ends when that one has ended or
 * expired, which is at most that wait later: no later than timeout_ms after
 * it took its seq.  Replacing an
 * entry never allocates.  Called with @c's lock held.
 */
static void dmu_expire_sent(struct dmu_channel *c, struct list_head *to,
			    unsigned long tmo)
{
	XA_STATE(xas, &c->seqs, 0);
	struct dmu_msg *m;

	xas_lock(&xas);
	xas_for_each_marked(&xas, m, ULONG_MAX, DMU_XA_SENT) {
		if (!dmu_expired(m, tmo))
			break;
		xas_clear_mark(&xas, DMU_XA_SENT);
		xas_store(&xas, dmu_expired_entry(m));
		list_move_tail(&m->node, to);
	}
	xas_unlock(&xas);
}

/*
 * The messages whose header or reply @c's read() or write() is copying
 * belong to that call, which holds rd_lock or wr_lock.  Past its timeout
 * such a message is taken away from the channel, unless a call is copying
 * it right now (the next tick looks again): the trylock makes it the
 * work's, and @c's lock orders that against dev_release(), which takes
 * them without the mutexes.  The channel stays in step with the daemon:
 * the rest of a request it was reading reads as that request's header and
 * a zeroed payload, and the rest of a reply it was writing is discarded.
 * Called with target->lock held (so @c is not released meanwhile); a
 * trylock takes no part in lock order.
 */
static void dmu_expire_current(struct dmu_channel *c, unsigned long tmo,
			       struct list_head *to)
{
	struct dmu_msg *m;

	if (READ_ONCE(c->rd_cur) && mutex_trylock(&c->rd_lock)) {
		spin_lock(&c->lock);
		m = c->rd_cur;
		if (m && dmu_expired(m, tmo)) {
			WRITE_ONCE(c->rd_cur, NULL);
			c->gone = m->hdr;
			WRITE_ONCE(c->gone_pos, m->pos);
			WRITE_ONCE(c->gone_len, dmu_bytes_to_user(m));
			/* Into its reserved slot: allocates nothing. */
			xa_store(&c->seqs, (unsigned long)m->hdr.seq,
				 dmu_expired_entry(m), GFP_NOWAIT);
			list_add_tail(&m->node, to);
		}
		spin_unlock(&c->lock);
		mutex_unlock(&c->rd_lock);
	}
	if (READ_ONCE(c->wr_cur) && mutex_trylock(&c->wr_lock)) {
		spin_lock(&c->lock);
		m = c->wr_cur;
		if (m && dmu_expired(m, tmo)) {
			WRITE_ONCE(c->wr_cur, NULL);
			c->drain = m->data.bi_size;
			list_add_tail(&m->node, to);
		}
		spin_unlock(&c->lock);
		mutex_unlock(&c->wr_lock);
	}
}

/* A request's age, from map(), in microseconds. */
static u64 dmu_age_us(const struct dmu_msg *m, unsigned long now, u64 now_ns)
{
	if (m->map_ns && now_ns > m->map_ns)
		return div_u64(now_ns - m->map_ns, NSEC_PER_USEC);
	return (u64)jiffies_to_msecs(now - m->mapped) * USEC_PER_MSEC;
}

/*
 * Fires dm_user_stall, once in its life, for a request @c's daemon has held
 * for @thr jiffies or more; the request itself is left alone.  Returns
 * false if it has not been held that long.
 */
static bool dmu_stall_check(struct dmu_channel *c, struct dmu_msg *m,
			    unsigned long thr)
{
	unsigned long now = jiffies;

	if (time_before(now, m->taken + thr))
		return false;
	if (!m->stalled) {
		m->stalled = true;
		atomic64_inc(&c->t->stalls);
		trace_dm_user_stall(c->t->dev, m->hdr.seq, m->hdr.type, c->id,
				    m->tgid, m->tid,
				    dmu_age_us(m, now, m->map_ns ? ktime_get_ns() : 0),
				    (u64)jiffies_to_msecs(now - m->taken) *
				    USEC_PER_MSEC);
	}
	return true;
}

/*
 * The stall check of one channel: what it is reading, what it has read
 * (c->sent, in the order it took them, so the walk stops at the first
 * request not held @thr yet: it visits the stalled ones and one more) and
 * what it is answering (only if no write() is copying it right now; the
 * next tick looks again).  Called with target->lock held, as
 * dmu_expire_current() is, and for the same reasons.
 */
static void dmu_check_stalls(struct dmu_channel *c, unsigned long thr)
{
	struct dmu_msg *m;

	spin_lock(&c->lock);
	if (c->rd_cur)
		dmu_stall_check(c, c->rd_cur, thr);
	list_for_each_entry(m, &c->sent, node)
		if (!dmu_stall_check(c, m, thr))
			break;
	spin_unlock(&c->lock);
	if (READ_ONCE(c->wr_cur) && mutex_trylock(&c->wr_lock)) {
		if (c->wr_cur)
			dmu_stall_check(c, c->wr_cur, thr);
		mutex_unlock(&c->wr_lock);
	}
}

/*
 * The target's clock, on dmu_wq (WQ_MEM_RECLAIM: it must run when reclaim
 * waits on this very device): reports the requests a daemon has held
 * longer than stall_ms, then ends requests older than timeout_ms, in
 * whatever state, and the requests of a daemon that did not come back
 * within recovery_ms.  It allocates nothing it waits for.
 */
static void dmu_work(struct work_struct *work)
{
	struct dmu_target *t = container_of(to_delayed_work(work),
					    struct dmu_target, work);
	struct dmu_channel *c;
	unsigned int queued;
	unsigned long tmo;
	LIST_HEAD(expired);
	LIST_HEAD(orphans);

	spin_lock(&t->lock);
	if (t->args.stall_ms) {
		tmo = msecs_to_jiffies(t->args.stall_ms);
		list_for_each_entry(c, &t->channels, node)
			dmu_check_stalls(c, tmo);
	}
	if (t->args.timeout_ms) {
		tmo = msecs_to_jiffies(t->args.timeout_ms);
		queued = dmu_collect_expired(&t->backlog, &expired, tmo);
		list_for_each_entry(c, &t->channels, node) {
			spin_lock(&c->lock);
			queued += dmu_collect_expired(&c->queue, &expired, tmo);
			dmu_expire_sent(c, &expired, tmo);
			spin_unlock(&c->lock);
			dmu_expire_current(c, tmo, &expired);
		}
		atomic_sub(queued, &t->nr_queued);
	}
	if (t->recovering && time_after_eq(jiffies, t->orphan_deadline)) {
		t->recovering = false;
		WRITE_ONCE(t->orphaned, true);
		dmu_take_queue_locked(t, &orphans);
	}
	spin_unlock(&t->lock);

	dmu_end_list(t, &expired, BLK_STS_IOERR, DM_USER_END_TIMEOUT);
	dmu_end_list(t, &orphans, BLK_STS_IOERR, DM_USER_END_TEARDOWN);

	spin_lock(&t->lock);
	if (dmu_needs_work_locked(t))
		dmu_schedule_work_locked(t);
	spin_unlock(&t->lock);
}

static void dmu_target_free(struct kref *kref)
{
	struct dmu_target *t = container_of(kref, struct dmu_target, kref);

	/* Every channel and table is gone. */
	kfree(rcu_access_pointer(t->chans));
	free_percpu(t->rotor);
	kmem_cache_free(dmu_target_cache, t);
}

static void dmu_target_put(struct dmu_target *t)
{
	kref_put(&t->kref, dmu_target_free);
}

/* ---- channel: the control device's file operations ---------------------- */

static int dev_open(struct inode *inode, struct file *file)
{
	/*
	 * The misc core calls this under misc_mtx with private_data pointing
	 * at our miscdevice.  The last dtr deregisters it under the same
	 * mutex before it drops its reference, so the target is alive here.
	 */
	struct dmu_target *t = container_of(file->private_data,
					    struct dmu_target, misc);
	struct dmu_chanset *old, *cs = NULL, *stale = NULL;
	struct dmu_channel *c;
	unsigned int cap;

	c = kmem_cache_zalloc(dmu_channel_cache, GFP_KERNEL);
	if (!c)
		return -ENOMEM;

	c->t = t;
	spin_lock_init(&c->lock);
	INIT_LIST_HEAD(&c->queue);
	INIT_LIST_HEAD(&c->sent);
	init_waitqueue_head(&c->rd_wait);
	mutex_init(&c->rd_lock);
	mutex_init(&c->wr_lock);
	xa_init(&c->seqs);

	/* Room in the set for one more; it grows here and only here. */
	spin_lock(&t->lock);
	for (;;) {
		old = dmu_chans(t);
		if (old && old->nr < old->cap)
			break;
		if (cs && cs->cap > dmu_chans_nr(old)) {
			cs->nr = dmu_chans_nr(old);
			if (old)
				memcpy(cs->ch, old->ch,
				       flex_array_size(cs, ch, cs->nr));
			rcu_assign_pointer(t->chans, cs);
			stale = old;
			cs = NULL;
			break;
		}
		cap = old ? 2 * old->cap : DMU_CHANSET_MIN;
		spin_unlock(&t->lock);
		kfree(cs);
		cs = kmalloc(struct_size(cs, ch, cap), GFP_KERNEL);
		if (!cs) {
			mutex_destroy(&c->rd_lock);
			mutex_destroy(&c->wr_lock);
			kmem_cache_free(dmu_channel_cache, c);
			return -ENOMEM;
		}
		cs->cap = cap;
		spin_lock(&t->lock);
	}
	kref_get(&t->kref);
	c->id = t->next_channel_id++;
	list_add_tail(&c->node, &t->channels);
	dmu_chans_add_locked(t, c);
	WRITE_ONCE(t->orphaned, false);
	t->recovering = false;
	spin_unlock(&t->lock);
	kfree(cs);
	if (stale)
		kfree_rcu(stale, rcu);

	file->private_data = c;
	return stream_open(inode, file);
}

static void dmu_channel_free_rcu(struct rcu_head *rcu)
{
	struct dmu_channel *c = container_of(rcu, struct dmu_channel, rcu);

	if (c->reader)
		put_task_struct(c->reader);
	kmem_cache_free(dmu_channel_cache, c);
}

/*
 * Takes @c out of service: map() and the other channels' readers no longer
 * see it, and what map() queued on it goes back to the backlog for the
 * others.  What it read and has not answered (@closing: also what it is
 * reading or answering right now) is requeued when the target has a
 * recovery window, and otherwise moved to @failed.  When it was the last
 * channel in service, the recovery window starts, or the queue fails too.
 * Called with target->lock held, when the channel is refused or closed;
 * allocates nothing.
 */
static void dmu_detach_locked(struct dmu_channel *c, bool closing,
			      struct list_head *failed)
{
	struct dmu_target *t = c->t;
	bool was_in_service = !c->detached;
	struct dmu_msg *m;
	LIST_HEAD(unread);
	LIST_HEAD(held);

	/* Out of the set before map() can find it detached: it retries. */
	if (was_in_service)
		dmu_chans_del_locked(t, c);
	spin_lock(&c->lock);
	c->detached = true;
	dmu_looked(c);
	list_splice_tail_init(&c->queue, &unread);
	/* Their replies are no longer expected here: erasing frees only. */
	list_for_each_entry(m, &c->sent, node)
		xa_erase(&c->seqs, (unsigned long)m->hdr.seq);
	list_splice_tail_init(&c->sent, &held);
	if (closing && c->rd_cur) {
		xa_erase(&c->seqs, (unsigned long)c->rd_cur->hdr.seq);
		list_add_tail(&c->rd_cur->node, &held);
		WRITE_ONCE(c->rd_cur, NULL);
	}
	if (closing && c->wr_cur) {
		list_add_tail(&c->wr_cur->node, &held);
		WRITE_ONCE(c->wr_cur, NULL);
	}
	spin_unlock(&c->lock);

	dmu_requeue_locked(t, &unread, false);
	if (t->args.recovery_ms && !t->dead && !t->orphaned)
		dmu_requeue_locked(t, &held, true);
	else
		list_splice_tail_init(&held, failed);
	if (was_in_service && !dmu_nr_channels_locked(t)) {
		if (t->args.recovery_ms && !t->dead) {
			t->recovering = true;
			t->orphan_deadline = jiffies +
				msecs_to_jiffies(t->args.recovery_ms);
			dmu_schedule_work_locked(t);
		} else {
			WRITE_ONCE(t->orphaned, true);
			dmu_take_queue_locked(t, failed);
		}
	}
	if (!list_empty(&t->backlog))
		dmu_wake_all_locked(t);
}

/*
 * The last reference to a channel is gone, so no read() or write() runs on
 * it: it leaves service (if a refusal did not take it out already) with
 * everything it holds.
 */
static int dev_release(struct inode *inode, struct file *file)
{
	struct dmu_channel *c = file->private_data;
	struct dmu_target *t = c->t;
	LIST_HEAD(failed);

	spin_lock(&t->lock);
	list_del(&c->node);
	dmu_detach_locked(c, true, &failed);
	spin_unlock(&t->lock);

	dmu_end_list(t, &failed, BLK_STS_IOERR, DM_USER_END_CLOSED);
	xa_destroy(&c->seqs);
	mutex_destroy(&c->rd_lock);
	mutex_destroy(&c->wr_lock);
	call_rcu(&c->rcu, dmu_channel_free_rcu);
	dmu_target_put(t);
	return 0;
}

/*
 * Moves queued messages from @q to @to for @c to read: the first whatever
 * its size when @first, then, in batch mode, as long as the next one fits
 * whole in what is left of @room bytes.  Called with @q's lock held.
 */
static unsigned int dmu_take_locked(struct dmu_channel *c, struct list_head *q,
				    struct list_head *to, size_t *room,
				    bool *first, bool batch)
{
	struct dmu_msg *m, *tmp;
	unsigned int n = 0;
	size_t need;

	list_for_each_entry_safe(m, tmp, q, node) {
		if (!*first && !batch)
			break;
		need = dmu_bytes_to_user(m);
		if (!*first && need > *room)
			break;
		list_move_tail(&m->node, to);
		*room -= min(need, *room);
		*first = false;
		n++;
		m->taken = jiffies;
		m->tid = task_pid_nr(current);
		m->tgid = task_tgid_nr(current);
		dmu_stamp_taken(m);
		trace_dm_user_read(c->t->dev, m->hdr.seq, m->hdr.type, c->id);
	}
	return n;
}

/*
 * Takes queued messages for @c into @to: handed-back ones first (they are
 * the oldest), then its own, and only when it has none, another channel's.
 * Returns how many, or -EAGAIN if there was none, or -ENOTBLK after dtr.
 */
static int dmu_take(struct dmu_channel *c, struct list_head *to, size_t room,
		    bool first, bool batch)
{
	struct dmu_target *t = c->t;
	struct dmu_chanset *cs;
	struct dmu_channel *o;
	unsigned int n = 0, i, nr;

	if (READ_ONCE(t->dead))
		return -ENOTBLK;
	if (!list_empty_careful(&t->backlog)) {
		spin_lock(&t->lock);
		n += dmu_take_locked(c, &t->backlog, to, &room, &first, batch);
		spin_unlock(&t->lock);
	}
	if ((first || batch) && !list_empty_careful(&c->queue)) {
		spin_lock(&c->lock);
		n += dmu_take_locked(c, &c->queue, to, &room, &first, batch);
		spin_unlock(&c->lock);
	}
	/* A batch takes over all it can: fewer readers need waking. */
	if (!n || batch) {
		rcu_read_lock();
		cs = rcu_dereference(t->chans);
		nr = dmu_chans_nr(cs);
		for (i = 0; i < nr && (!n || batch); i++) {
			o = dmu_chans_at(cs, i);
			if (o == c || list_empty_careful(&o->queue))
				continue;
			spin_lock(&o->lock);
			n += dmu_take_locked(c, &o->queue, to, &room, &first,
					     batch);
			spin_unlock(&o->lock);
		}
		rcu_read_unlock();
	}
	if (!n)
		return -EAGAIN;
	WRITE_ONCE(c->last_take, n);
	dmu_hwm(&t->hwm_in_flight,
		dmu_in_flight(t, atomic_sub_return(n, &t->nr_queued)));
	return n;
}

/*
 * Is a message queued where @c's reader may take it, other than @c's own
 * queue: the backlog, another channel's queue?  Lockless, as dmu_readable().
 */
static bool dmu_queued_elsewhere(struct dmu_channel *c)
{
	struct dmu_target *t = c->t;
	struct dmu_chanset *cs;
	struct dmu_channel *x;
	unsigned int i, nr;
	bool r = false;

	if (!list_empty_careful(&t->backlog))
		return true;
	rcu_read_lock();
	cs = rcu_dereference(t->chans);
	nr = dmu_chans_nr(cs);
	for (i = 0; i < nr && !r; i++) {
		x = dmu_chans_at(cs, i);
		r = x != c && !list_empty_careful(&x->queue);
	}
	rcu_read_unlock();
	return r;
}

/*
 * Is there anything for @c to read, from any channel, or an error to
 * report?  A refused channel reads nothing more, but its reader must wake.
 */
static bool dmu_readable(struct dmu_channel *c)
{
	return READ_ONCE(c->t->dead) || READ_ONCE(c->broken) ||
	       !list_empty_careful(&c->queue) || dmu_queued_elsewhere(c);
}

/*
 * Sleeps until dmu_readable(@c), as wait_event_interruptible_exclusive()
 * would, but with dmu_reader_wake() so that map() knows this reader is
 * coming.  Returns 0 or -ERESTARTSYS.
 */
static int dmu_wait_readable(struct dmu_channel *c)
{
	struct dmu_waiter w = { .c = c };
	int r = 0;

	init_wait(&w.wq);
	w.wq.func = dmu_reader_wake;
	for (;;) {
		prepare_to_wait_exclusive(&c->rd_wait, &w.wq, TASK_INTERRUPTIBLE);
		dmu_idle(c);
		dmu_looked(c);
		if (dmu_readable(c))
			break;
		if (signal_pending(current)) {
			r = -ERESTARTSYS;
			break;
		}
		schedule();
	}
	finish_wait(&c->rd_wait, &w.wq);
	/* Woken after the last look: it does not come back here. */
	dmu_looked(c);
	return r;
}

/*
 * After a take: wakes a reader for what is still queued, unless one comes.
 * A batched reader that took is busy (dmu_reader_busy()): what was queued on
 * its own channel since its take, it takes itself on its next read(), as
 * map() counted on when it queued there without a wakeup; waking another
 * reader for it would only spread one load over threads that then compete
 * for the CPUs.  So it hands off only what is queued elsewhere.
 */
static void dmu_hand_off(struct dmu_channel *c, bool batch)
{
	/* dmu_looked() ordered our look; this one is as late as theirs. */
	if ((batch && dmu_reader_busy(c)) ? dmu_queued_elsewhere(c) : dmu_readable(c))
		dmu_wake_reader(c->t, NULL);
}

/* Copies what is left of @m's header and payload to @to; returns bytes. */
static size_t dmu_copy_out(struct dmu_msg *m, struct iov_iter *to)
{
	size_t total = dmu_bytes_to_user(m), r = 0, want, n;

	if (m->pos < sizeof(m->hdr)) {
		/*
		 * The message lives in the bio slab, which hardened usercopy
		 * rightly refuses to expose: copy out from the stack.
		 */
		struct dm_user_message h = m->hdr;

		want = sizeof(h) - m->pos;
		n = copy_to_iter((u8 *)&h + m->pos, want, to);
		m->pos += n;
		r += n;
		if (n < want)
			return r;
	}
	if (m->pos < total) {
		n = dmu_copy_bio(m, to, true);
		m->pos += n;
		r += n;
	}
	return r;
}

/*
 * The rest of a request that timed out while @c's daemon was reading it
 * (see dmu_expire_current()): its header, then zeros for its payload.
 * Called with rd_lock held.
 */
static size_t dmu_copy_gone(struct dmu_channel *c, struct iov_iter *to)
{
	size_t r = 0, n;

	if (c->gone_pos < sizeof(c->gone)) {
		/* Out of the slab through the stack, as in dmu_copy_out(). */
		struct dm_user_message h = c->gone;

		n = copy_to_iter((u8 *)&h + c->gone_pos,
				 sizeof(h) - c->gone_pos, to);
		WRITE_ONCE(c->gone_pos, c->gone_pos + n);
		r += n;
		if (c->gone_pos < sizeof(h))
			return r;
	}
	n = iov_iter_zero(min_t(size_t, c->gone_len - c->gone_pos,
				iov_iter_count(to)), to);
	WRITE_ONCE(c->gone_pos, c->gone_pos + n);
	return r + n;
}

static bool dmu_gone_left(struct dmu_channel *c)
{
	return READ_ONCE(c->gone_pos) < READ_ONCE(c->gone_len);
}

/*
 * Reserves a slot in c->seqs for each message a read() has taken, before
 * any of it is copied, so that it becomes SENT under c->lock without an
 * allocation there.  This runs in the daemon's own read(), which holds only
 * rd_lock and may sleep (its copy to user memory may fault in pages), so
 * it may wait for memory; GFP_NOIO, since the I/O reclaim would start
 * could be this device's.  On failure no slot is left reserved and the
 * read() copies nothing more: the messages go back on the queue.  (Where
 * unsigned long is 32 bits, a seq 2^32 from one still outstanding finds its
 * slot taken, and fails the same way.)
 */
static int dmu_reserve_seqs(struct dmu_channel *c, struct list_head *list)
{
	struct dmu_msg *m;
	int err;

	list_for_each_entry(m, list, node) {
		/* A NULL entry reserves the slot. */
		err = xa_insert(&c->seqs, (unsigned long)m->hdr.seq, NULL,
				GFP_NOIO | __GFP_NOWARN);
		if (err)
			goto undo;
	}
	return 0;
undo:
	list_for_each_entry_continue_reverse(m, list, node)
		xa_release(&c->seqs, (unsigned long)m->hdr.seq);
	DMERR_LIMIT("%s: channel %u: cannot index the requests read: %d",
		    c->t->ctl_name, c->id, err);
	return -ENOMEM;
}

/* @m is SENT: into its reserved slot, marked.  Called with @c's lock held. */
static void dmu_index_sent(struct dmu_channel *c, struct dmu_msg *m)
{
	XA_STATE(xas, &c->seqs, (unsigned long)m->hdr.seq);

	xas_lock(&xas);
	xas_store(&xas, m);
	/* The slot was reserved: the store allocates nothing, and cannot fail. */
	if (!WARN_ON_ONCE(xas_error(&xas)))
		xas_set_mark(&xas, DMU_XA_SENT);
	xas_unlock(&xas);
}

/*
 * read(): one request per call, header first, then a WRITE's payload.  A
 * short buffer gets the rest of the same request on the next call, as the
 * original protocol allows.  With DM_USER_CHANNEL_BATCH, as many more whole
 * requests as fit follow the first.
 */
/*
 * Where a read() or a splice() puts what it takes: a read()'s user buffer,
 * or a splice()'s pipe (see dmu_splice_out()).  The caller of a splice
 * holds the pipe's mutex throughout.
 */
struct dmu_sink {
	struct iov_iter *iter;		/* read() */
	struct pipe_inode_info *pipe;	/* splice() */
	size_t len;			/* splice(): bytes it may still move */
	struct page *hdrs;		/* splice(): the page headers go to */
	unsigned int hdrs_used;
	int err;			/* splice(): why it stopped, if not full */
};

static size_t dmu_sink_room(const struct dmu_sink *s)
{
	return s->iter ? iov_iter_count(s->iter) : s->len;
}

/*
 * A page a pipe may hold a reference to instead of a copy: not slab memory,
 * which is not reference counted, and not a page already being freed.
 * Kept out of line, where a kretprobe can count its answers: nothing else
 * shows which pages were copied (tests/e2e/032-splice-slab-pages.sh).
 */
static noinline bool dmu_page_refable(struct page *page)
{
	return !PageSlab(page) && page_count(page) >= 1;
}

/* Hands one buffer to s->pipe; it owns the page reference from then on. */
static int dmu_pipe_add(struct dmu_sink *s, struct page *page,
			unsigned int offset, unsigned int len)
{
	struct pipe_buffer buf = {
		.page = page,
		.offset = offset,
		.len = len,
		.ops = &nosteal_pipe_buf_ops,
	};
	ssize_t n = add_to_pipe(s->pipe, &buf);

	return n < 0 ? n : 0;
}

/* The pipe buffers @m takes in a splice: its header's, one per page after. */
static unsigned int dmu_pipe_slots(const struct dmu_msg *m)
{
	struct bvec_iter it = m->data;
	unsigned int n = 1;

	if (m->hdr.type != DM_USER_REQ_MAP_WRITE)
		return n;
	while (it.bi_size) {
		struct bio_vec bv = bio_iter_iovec(m->bio, it);

		bio_advance_iter_single(m->bio, &it, bv.bv_len);
		n++;
	}
	return n;
}

/*
 * splice(): moves the whole of @m, not yet read, into the pipe, or nothing
 * (0) if it does not fit in what the splice may still move or in the free
 * pipe buffers.  The header is copied, into a page shared by the headers
 * of one splice; a WRITE's payload is not: each pipe buffer holds a
 * reference to a page of the BIO, as FUSE's splice does, except a page
 * that cannot be referenced (dmu_page_refable()), which is copied.  A
 * daemon that consumes them after its reply, or after the request timed
 * out, sees whatever the pages hold then; the references keep them
 * allocated.  Everything that can fail (the allocations) comes before the
 * first buffer goes in, and adding cannot fail under the pipe's mutex once
 * it has readers and room, so a request goes in whole or not at all.
 * Returns the bytes moved; 0 with s->err set on failure.
 */
static size_t dmu_splice_out(struct dmu_msg *m, struct dmu_sink *s)
{
	struct pipe_inode_info *pipe = s->pipe;
	size_t total = dmu_bytes_to_user(m);
	unsigned int slots = pipe->max_usage -
			     pipe_occupancy(pipe->head, pipe->tail);
	bool payload = total > sizeof(m->hdr);
	struct page *page, *next;
	LIST_HEAD(copies);
	struct bvec_iter it;
	int err = 0;

	if (total > s->len || dmu_pipe_slots(m) > slots)
		return 0;
	if (!s->hdrs || s->hdrs_used + sizeof(m->hdr) > PAGE_SIZE) {
		if (s->hdrs)
			put_page(s->hdrs);
		s->hdrs = alloc_page(GFP_NOIO | __GFP_NOWARN);
		s->hdrs_used = 0;
		if (!s->hdrs) {
			s->err = -ENOMEM;
			return 0;
		}
	}
	for (it = m->data; payload && it.bi_size;) {
		struct bio_vec bv = bio_iter_iovec(m->bio, it);

		bio_advance_iter_single(m->bio, &it, bv.bv_len);
		if (dmu_page_refable(bv.bv_page))
			continue;
		page = alloc_page(GFP_NOIO | __GFP_NOWARN);
		if (!page) {
			list_for_each_entry_safe(page, next, &copies, lru)
				__free_page(page);
			s->err = -ENOMEM;
			return 0;
		}
		memcpy_page(page, 0, bv.bv_page, bv.bv_offset, bv.bv_len);
		list_add_tail(&page->lru, &copies);
	}

	memcpy_to_page(s->hdrs, s->hdrs_used, (const char *)&m->hdr,
		       sizeof(m->hdr));
	get_page(s->hdrs);
	err = dmu_pipe_add(s, s->hdrs, s->hdrs_used, sizeof(m->hdr));
	s->hdrs_used += sizeof(m->hdr);
	for (it = m->data; payload && it.bi_size;) {
		struct bio_vec bv = bio_iter_iovec(m->bio, it);
		unsigned int off = bv.bv_offset;

		bio_advance_iter_single(m->bio, &it, bv.bv_len);
		if (dmu_page_refable(bv.bv_page)) {
			page = bv.bv_page;
			get_page(page);
		} else {
			page = list_first_entry(&copies, struct page, lru);
			list_del(&page->lru);
			off = 0;
		}
		/* On failure add_to_pipe() has put the reference. */
		if (!err)
			err = dmu_pipe_add(s, page, off, bv.bv_len);
		else
			put_page(page);
	}
	if (WARN_ON_ONCE(err)) {
		/* Not expected: see above.  The stream is now torn. */
		s->err = err;
		return 0;
	}
	m->pos = total;
	s->len -= total;
	return total;
}

/* Moves what is left of @m to @s; returns bytes. */
static size_t dmu_sink_out(struct dmu_msg *m, struct dmu_sink *s)
{
	return s->iter ? dmu_copy_out(m, s->iter) : dmu_splice_out(m, s);
}

/*
 * read() and splice(): take requests and move them to @s.  A read() may
 * end inside a request (the next read() continues it: rd_cur); a splice
 * moves whole requests only, and fails with EBUSY while a read() has left
 * one partly read.
 */
static ssize_t dmu_read(struct dmu_channel *c, struct dmu_sink *s,
			bool nonblock)
{
	struct dmu_target *t = c->t;
	bool batch = READ_ONCE(c->flags) & DM_USER_CHANNEL_BATCH;
	struct dmu_msg *m, *tmp;
	LIST_HEAD(reading);
	LIST_HEAD(done);
	unsigned int back = 0;
	ssize_t r;
	int err = 0;

	if (!dmu_sink_room(s))
		return 0;

	for (;;) {
		if (mutex_lock_interruptible(&c->rd_lock))
			return -ERESTARTSYS;
		if (c->broken) {
			r = -EIO;
			goto out;
		}
		if (!s->iter && (c->rd_cur || dmu_gone_left(c))) {
			r = -EBUSY;
			goto out;
		}
		if (dmu_gone_left(c)) {
			r = dmu_copy_gone(c, s->iter) ?: -EFAULT;
			goto out;
		}
		if (c->rd_cur)
			break;
		dmu_looked(c);
		r = dmu_take(c, &reading, dmu_sink_room(s), true, batch);
		if (r > 0) {
			dmu_hand_off(c, batch);
			break;
		}
		if (r != -EAGAIN)
			goto out;
		mutex_unlock(&c->rd_lock);
		if (nonblock)
			return -EAGAIN;
		if (dmu_wait_readable(c))
			return -ERESTARTSYS;
	}

	r = 0;
	m = c->rd_cur;
	if (m) {
		r += dmu_copy_out(m, s->iter);
		if (m->pos < dmu_bytes_to_user(m))
			goto sent;
		WRITE_ONCE(c->rd_cur, NULL);
		list_add_tail(&m->node, &done);
		if (batch && iov_iter_count(s->iter))
			dmu_take(c, &reading, iov_iter_count(s->iter), false,
				 true);
	}
	err = dmu_reserve_seqs(c, &reading);
	if (err)
		goto sent;
	list_for_each_entry_safe(m, tmp, &reading, node) {
		size_t n = dmu_sink_out(m, s);

		if (m->pos == dmu_bytes_to_user(m)) {
			list_move_tail(&m->node, &done);
			r += n;
			continue;
		}
		/*
		 * The buffer ended or faulted.  A request partly copied, or
		 * the first, stays with this channel for the next read();
		 * those after it go back on its queue.  A splice leaves
		 * none partly moved: they all go back.
		 */
		if (s->iter && (m->pos || !r)) {
			list_del_init(&m->node);
			WRITE_ONCE(c->rd_cur, m);
		}
		r += n;
		break;
	}
	if (!s->iter && !r && !s->err)
		s->err = -EMSGSIZE;	/* the first does not fit the pipe */
	err = err ?: s->err;

sent:
	if (!list_empty(&done))
		dmu_reader_took(c);
	if (!list_empty(&done) || !list_empty(&reading)) {
		list_for_each_entry(m, &reading, node) {
			dmu_msg_reset(m);
			/* None, if the reservation failed: a no-op then. */
			xa_release(&c->seqs, (unsigned long)m->hdr.seq);
			back++;
		}
		spin_lock(&c->lock);
		list_for_each_entry(m, &done, node)
			dmu_index_sent(c, m);
		list_splice_tail(&done, &c->sent);
		list_splice(&reading, &c->queue);
		spin_unlock(&c->lock);
	}
	if (back) {
		dmu_hwm(&t->hwm_queued, atomic_add_return(back, &t->nr_queued));
		dmu_wake_reader(t, NULL);
	}
	if (!r)
		r = err ?: -EFAULT;
out:
	mutex_unlock(&c->rd_lock);
	return r;
}

static ssize_t dev_read(struct kiocb *iocb, struct iov_iter *to)
{
	struct dmu_sink s = { .iter = to };

	return dmu_read(iocb->ki_filp->private_data, &s,
			(iocb->ki_filp->f_flags & O_NONBLOCK) ||
			(iocb->ki_flags & IOCB_NOWAIT));
}

/*
 * splice() from the control device into a pipe: as read(), but whole
 * requests only, as many as fit in @len and in the pipe's free buffers
 * (one for each header, one for each page of a WRITE's payload), and a
 * WRITE's payload by reference (dmu_splice_out()).  A request that would
 * not fit even in an empty pipe fails the call with EMSGSIZE; it stays
 * queued.  Waiting for requests, it holds the pipe's mutex, as FUSE's
 * device does.
 */
static ssize_t dev_splice_read(struct file *in, loff_t *ppos,
			       struct pipe_inode_info *pipe, size_t len,
			       unsigned int flags)
{
	struct dmu_sink s = { .pipe = pipe, .len = len };
	ssize_t r;

	if (!pipe->readers) {
		send_sig(SIGPIPE, current, 0);
		return -EPIPE;
	}
	r = dmu_read(in->private_data, &s,
		     (in->f_flags & O_NONBLOCK) || (flags & SPLICE_F_NONBLOCK));
	if (s.hdrs)
		put_page(s.hdrs);
	return r;
}

/*
 * Finds what c->reply answers, by its seq, in c->seqs: a SENT message,
 * which it takes (its caller owns it), or the record of one that timed out
 * after this channel read it (see dmu_expired_entry()), which it forgets.
 * Returns the entry, or NULL when the channel expects no such reply (a slot
 * reserved by a read() under way reads as NULL too).  Called with wr_lock
 * held.
 */
static void *dmu_find_reply(struct dmu_channel *c)
{
	XA_STATE(xas, &c->seqs, (unsigned long)c->reply.seq);
	struct dmu_msg *m;
	void *e;

	spin_lock(&c->lock);
	xas_lock(&xas);
	e = xas_load(&xas);
	if (xa_is_zero(e) || (e && !xa_is_value(e) &&
			      ((struct dmu_msg *)e)->hdr.seq != c->reply.seq)) {
		/* Reserved, or (32-bit) another seq with the same index. */
		e = NULL;
	} else if (e) {
		xas_store(&xas, NULL);
		if (!xa_is_value(e)) {
			m = e;
			list_del_init(&m->node);
		}
	}
	xas_unlock(&xas);
	spin_unlock(&c->lock);
	return e;
}

/*
 * A reply to a request that timed out after this channel read it is late,
 * not wrong: it is accepted, and a READ's data are discarded.  @e is the
 * request's record in c->seqs.  Called with wr_lock held.
 */
static void dmu_late_reply(struct dmu_channel *c, void *e)
{
	if (c->reply.type == DM_USER_RESP_SUCCESS)
		c->drain = xa_to_value(e);
	trace_dm_user_write(c->t->dev, c->reply.seq, c->reply.type);
}

/* Ends a REPLYING message with the daemon's status. */
static void dmu_finish_reply(struct dmu_channel *c, struct dmu_msg *m,
			     u64 status)
{
	dmu_end(c->t, m, dmu_reply_status(status), DM_USER_END_REPLY);
}

/*
 * A protocol error refuses this channel only, at once: it leaves service as
 * if it had closed, except for a request its read() is in the middle of
 * (that one ends by its timeout or with the file).  Every later read() and
 * write() on it fails with EIO, poll() reports EPOLLERR, and its pollers and
 * readers are woken to see it.  Other channels go on.  Called with wr_lock
 * held.
 */
static void dmu_refuse(struct dmu_channel *c, const char *why, u64 seq)
{
	struct dmu_target *t = c->t;
	LIST_HEAD(failed);

	DMERR_LIMIT("%s: channel %u refused: %s (seq %llu)",
		    t->ctl_name, c->id, why, seq);
	WRITE_ONCE(c->broken, true);
	spin_lock(&t->lock);
	dmu_detach_locked(c, false, &failed);
	spin_unlock(&t->lock);
	wake_up_all(&c->rd_wait);
	dmu_end_list(t, &failed, BLK_STS_IOERR, DM_USER_END_CLOSED);
}

/*
 * write(): reply headers, each followed by a successful READ's payload.  Any
 * split into calls is fine, and replies may come in any order.  A call that
 * reaches a reply the channel must refuse returns the bytes it applied
 * before that reply, or EINVAL if there were none.
 */
static ssize_t dev_write(struct kiocb *iocb, struct iov_iter *from)
{
	struct dmu_channel *c = iocb->ki_filp->private_data;
	struct dmu_target *t = c->t;
	ssize_t done = 0;
	size_t n;

	if (!iov_iter_count(from))
		return 0;
	if (mutex_lock_interruptible(&c->wr_lock))
		return -ERESTARTSYS;
	if (c->broken) {
		done = -EIO;
		goto out;
	}

	while (iov_iter_count(from)) {
		struct dmu_msg *m = c->wr_cur;
		void *e;

		if (c->drain) {
			n = iov_iter_count(from);
			if (n > c->drain)
				n = c->drain;
			iov_iter_advance(from, n);
			c->drain -= n;
			done += n;
			continue;
		}
		if (!m) {
			size_t want = sizeof(c->reply) - c->reply_pos;

			n = copy_from_iter((u8 *)&c->reply + c->reply_pos,
					   want, from);
			c->reply_pos += n;
			done += n;
			if (n < want)
				break;
			c->reply_pos = 0;

			e = dmu_find_reply(c);
			if (xa_is_value(e)) {
				dmu_late_reply(c, e);
				continue;
			} else if (!e) {
				dmu_refuse(c, c->reply.seq < (u64)atomic64_read(&t->next_seq) ?
					   "reply to a request not outstanding on this channel" :
					   "reply to a request never issued",
					   c->reply.seq);
				done = done > n ? done - n : -EINVAL;
				goto out;
			}
			m = e;
			if (m->map_ns)
				m->reply_ns = ktime_get_ns();
			trace_dm_user_write(t->dev, m->hdr.seq, c->reply.type);
			if (!dmu_reply_has_data(m, c->reply.type)) {
				dmu_finish_reply(c, m, c->reply.type);
				continue;
			}
			m->data = m->bio->bi_iter;
			WRITE_ONCE(c->wr_cur, m);
			continue;
		}

		n = dmu_copy_bio(m, from, false);
		done += n;
		if (!m->data.bi_size) {
			WRITE_ONCE(c->wr_cur, NULL);
			dmu_finish_reply(c, m, DM_USER_RESP_SUCCESS);
		} else if (!n) {
			break;
		}
	}
	if (!done)
		done = -EFAULT;
out:
	mutex_unlock(&c->wr_lock);
	return done;
}

static __poll_t dev_poll(struct file *file, poll_table *wait)
{
	struct dmu_channel *c = file->private_data;
	struct dmu_target *t = c->t;
	__poll_t mask = EPOLLOUT | EPOLLWRNORM;

	poll_wait(file, &c->rd_wait, wait);
	dmu_idle(c);
	if (READ_ONCE(c->broken))
		return EPOLLERR;
	if (READ_ONCE(t->dead)) {
		mask |= EPOLLHUP | EPOLLIN | EPOLLRDNORM;
	} else if (READ_ONCE(c->rd_cur) || dmu_gone_left(c) || dmu_readable(c)) {
		mask |= EPOLLIN | EPOLLRDNORM;
		/* Its reader will read(): busy again (see "Readers busy"). */
		if (READ_ONCE(c->reader) == current)
			dmu_reader_polled(c);
	}
	return mask;
}

#define DMU_CHANNEL_FLAGS	DM_USER_CHANNEL_BATCH

static long dev_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct dmu_channel *c = file->private_data;
	u64 __user *p = (u64 __user *)arg;
	u64 flags;

	switch (cmd) {
	case DM_USER_IOC_SET_FLAGS:
		if (get_user(flags, p))
			return -EFAULT;
		if (flags & ~DMU_CHANNEL_FLAGS)
			return -EINVAL;
		WRITE_ONCE(c->flags, flags);
		return 0;
	case DM_USER_IOC_GET_FLAGS:
		return put_user(READ_ONCE(c->flags), p);
	default:
		return -ENOTTY;
	}
}

static const struct file_operations dmu_fops = {
	.owner = THIS_MODULE,
	.open = dev_open,
	.release = dev_release,
	.read_iter = dev_read,
	.write_iter = dev_write,
	.splice_read = dev_splice_read,
	.splice_write = iter_file_splice_write,
	.poll = dev_poll,
	.unlocked_ioctl = dev_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

/* ---- the in-flight table (debugfs) -------------------------------------- */

/*
 * /sys/kernel/debug/dm-user/<ctl_name>/inflight lists every request the
 * target holds, one line each, oldest (lowest seq) first.  Reading it costs
 * the I/O path nothing but the three stores of dmu_take_locked(); the file
 * takes a snapshot under the target's and each channel's lock, as the
 * timeout work does, and formats it with no lock held.
 *
 * A request is shown in the state the comment at the top names: queued (on
 * the backlog, channel -1, or on a channel's queue), reading, sent, or
 * replying (shown only when no write() is copying its reply at that
 * instant: the trylock below).  A request that a read() has taken and not
 * yet put on its channel's sent list, or that a write() has matched and is
 * ending, is in no list for that moment, and not shown.
 *
 * Lifetime: the file is removed, under dmu_targets_lock, before the last
 * table lets go of the target; debugfs_remove() waits for a show() under
 * way, and later reads of a file still open fail with EIO.  show() takes
 * only target->lock and channel->lock, never dmu_targets_lock.
 */
enum dmu_state {
	DMU_STATE_QUEUED,
	DMU_STATE_READING,
	DMU_STATE_SENT,
	DMU_STATE_REPLYING,
};

static const char *const dmu_state_names[] = {
	[DMU_STATE_QUEUED] = "queued",
	[DMU_STATE_READING] = "reading",
	[DMU_STATE_SENT] = "sent",
	[DMU_STATE_REPLYING] = "replying",
};

struct dmu_inflight {
	u64 seq;
	u64 sector;
	u64 age_us;
	u64 held_us;			/* since a daemon took it; 0 if QUEUED */
	u32 op;
	u32 bytes;
	s32 channel;			/* -1: the backlog */
	pid_t pid;			/* 0 while QUEUED */
	pid_t tid;
	enum dmu_state state;
};

struct dmu_snapshot {
	struct dmu_inflight *r;
	unsigned int nr;
	unsigned int cap;
	bool full;			/* more requests than cap */
	unsigned long now;
	u64 now_ns;
};

static void dmu_snap_add(struct dmu_snapshot *s, const struct dmu_msg *m,
			 const struct dmu_channel *c, enum dmu_state state)
{
	struct dmu_inflight *r;

	if (s->nr == s->cap) {
		s->full = true;
		return;
	}
	r = &s->r[s->nr++];
	r->seq = m->hdr.seq;
	r->sector = m->hdr.sector;
	r->op = m->hdr.type;
	r->bytes = m->hdr.len;
	r->age_us = dmu_age_us(m, s->now, s->now_ns);
	r->channel = c ? (s32)c->id : -1;
	r->state = state;
	if (state == DMU_STATE_QUEUED) {
		r->pid = 0;
		r->tid = 0;
		r->held_us = 0;
	} else {
		r->pid = m->tgid;
		r->tid = m->tid;
		r->held_us = (u64)jiffies_to_msecs(s->now - m->taken) *
			     USEC_PER_MSEC;
	}
}

static void dmu_snap_list(struct dmu_snapshot *s, struct list_head *list,
			  const struct dmu_channel *c, enum dmu_state state)
{
	struct dmu_msg *m;

	list_for_each_entry(m, list, node)
		dmu_snap_add(s, m, c, state);
}

/*
 * Copies what the target holds into @s.  A READING message is owned by a
 * read(), but leaves rd_cur only under channel->lock (to the sent list, to
 * the timeout work, to a release), so that lock keeps it alive here.  A
 * REPLYING message can end without channel->lock, so it is looked at only
 * under a trylock of wr_lock, which target->lock orders against the
 * timeout work and dev_release() as in dmu_expire_current().
 */
static void dmu_snapshot(struct dmu_target *t, struct dmu_snapshot *s)
{
	struct dmu_channel *c;

	spin_lock(&t->lock);
	s->now = jiffies;
	s->now_ns = ktime_get_ns();
	dmu_snap_list(s, &t->backlog, NULL, DMU_STATE_QUEUED);
	list_for_each_entry(c, &t->channels, node) {
		spin_lock(&c->lock);
		dmu_snap_list(s, &c->queue, c, DMU_STATE_QUEUED);
		if (c->rd_cur)
			dmu_snap_add(s, c->rd_cur, c, DMU_STATE_READING);
		dmu_snap_list(s, &c->sent, c, DMU_STATE_SENT);
		spin_unlock(&c->lock);
		if (READ_ONCE(c->wr_cur) && mutex_trylock(&c->wr_lock)) {
			if (c->wr_cur)
				dmu_snap_add(s, c->wr_cur, c,
					     DMU_STATE_REPLYING);
			mutex_unlock(&c->wr_lock);
		}
	}
	spin_unlock(&t->lock);
}

static void dmu_oldest_one(const struct dmu_msg *m, unsigned long now,
			   u64 now_ns, u64 *age)
{
	if (m)
		*age = max(*age, dmu_age_us(m, now, now_ns));
}

/*
 * The age of the oldest request the target holds, in microseconds (0: none),
 * for status: O(channels), not O(requests).  It looks at what
 * dmu_snapshot() looks at, but only at the first request of each list: the
 * backlog and a channel's queue are in seq order, and c->sent in the order
 * it took them, so a request a daemon keeps comes first there once those
 * before it are answered.
 */
static u64 dmu_oldest_us(struct dmu_target *t)
{
	struct dmu_channel *c;
	unsigned long now;
	u64 now_ns, age = 0;

	spin_lock(&t->lock);
	now = jiffies;
	now_ns = ktime_get_ns();
	dmu_oldest_one(list_first_entry_or_null(&t->backlog, struct dmu_msg,
						node), now, now_ns, &age);
	list_for_each_entry(c, &t->channels, node) {
		spin_lock(&c->lock);
		dmu_oldest_one(list_first_entry_or_null(&c->queue,
							struct dmu_msg, node),
			       now, now_ns, &age);
		dmu_oldest_one(c->rd_cur, now, now_ns, &age);
		dmu_oldest_one(list_first_entry_or_null(&c->sent,
							struct dmu_msg, node),
			       now, now_ns, &age);
		spin_unlock(&c->lock);
		if (READ_ONCE(c->wr_cur) && mutex_trylock(&c->wr_lock)) {
			dmu_oldest_one(c->wr_cur, now, now_ns, &age);
			mutex_unlock(&c->wr_lock);
		}
	}
	spin_unlock(&t->lock);
	return age;
}

static int dmu_inflight_cmp(const void *a, const void *b)
{
	const struct dmu_inflight *x = a, *y = b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

#define DMU_SNAPSHOT_TRIES	3

static int dmu_inflight_show(struct seq_file *sf, void *unused)
{
	struct dmu_target *t = sf->private;
	struct dmu_snapshot s = { };
	unsigned int cap, i, tries;
	struct dmu_inflight *r;

	/* Room for what is pending now, and more if it grew meanwhile. */
	cap = max(atomic_read(&t->nr_pending), 0) + 16;
	for (tries = 1; ; tries++) {
		s.r = kvmalloc_array(cap, sizeof(*s.r), GFP_KERNEL);
		if (!s.r)
			return -ENOMEM;
		s.cap = cap;
		s.nr = 0;
		s.full = false;
		dmu_snapshot(t, &s);
		if (!s.full || tries == DMU_SNAPSHOT_TRIES)
			break;
		kvfree(s.r);
		cap = 2 * max_t(unsigned int, cap,
				max(atomic_read(&t->nr_pending), 0));
	}
	sort(s.r, s.nr, sizeof(*s.r), dmu_inflight_cmp, NULL);

	seq_puts(sf, "# dev seq op sector bytes state channel pid tid age_us held_us\n");
	for (i = 0; i < s.nr; i++) {
		r = &s.r[i];
		seq_printf(sf, "%u:%u %llu %u %llu %u %s %d %d %d %llu %llu\n",
			   MAJOR(t->dev), MINOR(t->dev), r->seq, r->op,
			   r->sector, r->bytes, dmu_state_names[r->state],
			   r->channel, r->pid, r->tid, r->age_us, r->held_us);
	}
	if (s.full)
		seq_puts(sf, "# truncated\n");
	kvfree(s.r);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(dmu_inflight);

/* debugfs dm-user/, or an error pointer, which debugfs takes as "none". */
static struct dentry *dmu_debugfs_root;

static void dmu_debugfs_add(struct dmu_target *t)
{
	t->debugfs = debugfs_create_dir(t->ctl_name, dmu_debugfs_root);
	debugfs_create_file("inflight", 0400, t->debugfs, t,
			    &dmu_inflight_fops);
}

/* ---- target: the device-mapper interface -------------------------------- */

static bool dmu_ctl_name_valid(const char *name)
{
	size_t len = strlen(name);

	return len && len <= DMU_CTL_NAME_MAX && !strchr(name, '/') &&
	       strcmp(name, ".") && strcmp(name, "..");
}

static int dmu_parse_options(struct dmu_args *args, struct dm_arg_set *as,
			     char **error)
{
	static const struct dm_arg count = {
		0, 10, "Invalid number of optional arguments"
	};
	unsigned int argc, value;
	const char *key;
	int r;

	if (!as->argc)
		return 0;
	r = dm_read_arg_group(&count, as, &argc, error);
	if (r)
		return r;

	while (argc) {
		key = dm_shift_arg(as);
		argc--;
		if (!argc) {
			*error = "Optional argument is missing its value";
			return -EINVAL;
		}
		if (kstrtouint(dm_shift_arg(as), 10, &value)) {
			*error = "Optional argument value is not a number";
			return -EINVAL;
		}
		argc--;
		if (!strcasecmp(key, "queue_depth")) {
			args->queue_depth = value;
		} else if (!strcasecmp(key, "timeout_ms")) {
			args->timeout_ms = value;
		} else if (!strcasecmp(key, "recovery_ms")) {
			args->recovery_ms = value;
		} else if (!strcasecmp(key, "stall_ms")) {
			args->stall_ms = value;
		} else if (!strcasecmp(key, "max_io_len")) {
			if (value < PAGE_SECTORS) {
				*error = "max_io_len must be at least a page";
				return -EINVAL;
			}
			args->max_io_len = value;
		} else {
			*error = "Unknown optional argument";
			return -EINVAL;
		}
	}
	return 0;
}

/* A new target: the control device appears now, with the table's load. */
static struct dmu_target *dmu_target_create(const char *name, dev_t dev,
					    char **error)
{
	struct dmu_target *t;
	int r;

	t = kmem_cache_zalloc(dmu_target_cache, GFP_KERNEL);
	if (!t)
		goto nomem;
	t->rotor = alloc_percpu(unsigned int);
	if (!t->rotor) {
		kmem_cache_free(dmu_target_cache, t);
		goto nomem;
	}
	spin_lock_init(&t->lock);
	INIT_LIST_HEAD(&t->channels);
	INIT_LIST_HEAD(&t->backlog);
	INIT_LIST_HEAD(&t->instances);
	init_waitqueue_head(&t->space_wait);
	INIT_DELAYED_WORK(&t->work, dmu_work);
	kref_init(&t->kref);
	t->dev = dev;
	strscpy(t->ctl_name, name, sizeof(t->ctl_name));
	snprintf(t->misc_name, sizeof(t->misc_name), "dm-user/%s", name);
	t->misc.minor = MISC_DYNAMIC_MINOR;
	t->misc.name = t->misc_name;
	t->misc.fops = &dmu_fops;
	t->misc.mode = 0600;
	r = misc_register(&t->misc);
	if (r) {
		*error = "Cannot register control device";
		dmu_target_put(t);
		return ERR_PTR(r);
	}
	dmu_debugfs_add(t);
	return t;

nomem:
	*error = "Cannot allocate target";
	return ERR_PTR(-ENOMEM);
}

/*
 * The target that @ti drives: a new one, or, when a table is loaded for a
 * device whose live table has a target with the same control name (dmsetup
 * reload), that one, which the new table takes over at resume with its
 * control device, open channels and requests.  Called with
 * dmu_targets_lock held.
 */
static struct dmu_target *dmu_target_get(struct dm_target *ti,
					 const char *name, char **error)
{
	dev_t dev = disk_devt(dm_disk(dm_table_get_md(ti->table)));
	struct dmu_instance *inst;
	struct dmu_target *t;

	list_for_each_entry(t, &dmu_targets, node) {
		if (strcmp(t->ctl_name, name))
			continue;
		if (t->dev != dev) {
			*error = "Control name already in use";
			return ERR_PTR(-EBUSY);
		}
		list_for_each_entry(inst, &t->instances, node) {
			if (inst->ti->table == ti->table) {
				*error = "Control name used twice in one table";
				return ERR_PTR(-EBUSY);
			}
		}
		kref_get(&t->kref);
		return t;
	}
	t = dmu_target_create(name, dev, error);
	if (!IS_ERR(t))
		list_add_tail(&t->node, &dmu_targets);
	return t;
}

/*
 * <start> <length> <control-name> [<#opt_args> <opt_args>...]
 *
 * <start>: sector the daemon sees for the first sector of this target.
 * <length>: must equal the target's length.
 * <control-name>: the daemon opens /dev/dm-user/<control-name>.
 * Optional: queue_depth <n>, timeout_ms <ms>, recovery_ms <ms>,
 * max_io_len <sectors>, stall_ms <ms>.
 */
static int user_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	struct dm_arg_set as = { .argc = argc, .argv = argv };
	struct dmu_instance *inst;
	unsigned long long start, len;
	struct dmu_target *t;
	char dummy;
	int r;

	if (argc < 3) {
		ti->error = "Invalid argument count: <start> <length> <control-name> [opts]";
		return -EINVAL;
	}
	/* Byte offsets of the whole range must fit the protocol's u64. */
	if (sscanf(argv[0], "%llu%c", &start, &dummy) != 1 ||
	    start > (U64_MAX >> SECTOR_SHIFT) - ti->len) {
		ti->error = "Invalid start sector";
		return -EINVAL;
	}
	if (sscanf(argv[1], "%llu%c", &len, &dummy) != 1 || len != ti->len) {
		ti->error = "Length must equal the target length";
		return -EINVAL;
	}
	if (!dmu_ctl_name_valid(argv[2])) {
		ti->error = "Invalid control name";
		return -EINVAL;
	}

	inst = kzalloc(sizeof(*inst), GFP_KERNEL);
	if (!inst) {
		ti->error = "Cannot allocate target";
		return -ENOMEM;
	}
	inst->ti = ti;
	inst->args.begin = start;
	inst->args.queue_depth = DMU_DEFAULT_QUEUE_DEPTH;
	inst->args.timeout_ms = DMU_DEFAULT_TIMEOUT_MS;
	inst->args.recovery_ms = DMU_DEFAULT_RECOVERY_MS;
	inst->args.max_io_len = DMU_DEFAULT_MAX_IO_LEN;
	inst->args.stall_ms = DMU_DEFAULT_STALL_MS;

	as.argc -= 3;
	as.argv += 3;
	r = dmu_parse_options(&inst->args, &as, &ti->error);
	if (r)
		goto bad;
	if (as.argc) {
		ti->error = "Invalid argument count: unexpected trailing arguments";
		r = -EINVAL;
		goto bad;
	}
	r = dm_set_target_max_io_len(ti, inst->args.max_io_len);
	if (r)
		goto bad;

	mutex_lock(&dmu_targets_lock);
	t = dmu_target_get(ti, argv[2], &ti->error);
	if (IS_ERR(t)) {
		mutex_unlock(&dmu_targets_lock);
		r = PTR_ERR(t);
		goto bad;
	}
	/* A new target takes its arguments now; a shared one at resume. */
	if (list_empty(&t->instances))
		t->args = inst->args;
	inst->t = t;
	list_add_tail(&inst->node, &t->instances);
	mutex_unlock(&dmu_targets_lock);

	ti->private = inst;
	ti->per_io_data_size = sizeof(struct dmu_msg);
	ti->num_flush_bios = 1;
	ti->flush_supported = true;
	ti->num_discard_bios = 1;
	ti->discards_supported = true;
	return 0;

bad:
	kfree(inst);
	return r;
}

/*
 * The last table that holds the target takes it down; an earlier one (the
 * table a reload replaced, or one loaded and cleared) only lets go.
 */
static void user_dtr(struct dm_target *ti)
{
	struct dmu_instance *inst = ti->private;
	struct dmu_target *t = inst->t;
	LIST_HEAD(left);
	bool last;

	/* After this no open() can reach the target; open channels remain. */
	mutex_lock(&dmu_targets_lock);
	list_del(&inst->node);
	last = list_empty(&t->instances);
	if (last) {
		list_del(&t->node);
		/* Waits for a reader of the in-flight table; see there. */
		debugfs_remove(t->debugfs);
		t->debugfs = NULL;
		misc_deregister(&t->misc);
	}
	mutex_unlock(&dmu_targets_lock);
	kfree(inst);

	if (last) {
		spin_lock(&t->lock);
		WRITE_ONCE(t->dead, true);
		/* Suspend drained every BIO; anything left would be a bug. */
		WARN_ON_ONCE(atomic_read(&t->nr_pending));
		dmu_take_queue_locked(t, &left);
		dmu_wake_all_locked(t);
		spin_unlock(&t->lock);

		cancel_delayed_work_sync(&t->work);
		dmu_end_list(t, &left, BLK_STS_IOERR, DM_USER_END_TEARDOWN);
	}
	dmu_target_put(t);
}

/* With no daemon to make room, map() must not wait for it. */
static bool dmu_depth_bypass(struct dmu_target *t)
{
	return READ_ONCE(t->orphaned) || READ_ONCE(t->suspending) ||
	       READ_ONCE(t->dead);
}

/* Counts a mapped BIO against queue_depth, if there is room for it. */
static bool dmu_reserve(struct dmu_target *t)
{
	unsigned int depth = t->args.queue_depth;
	int old;

	if (!depth) {
		atomic_inc(&t->nr_pending);
		return true;
	}
	old = atomic_read(&t->nr_pending);
	do {
		if (old >= depth && !dmu_depth_bypass(t))
			return false;
	} while (!atomic_try_cmpxchg(&t->nr_pending, &old, old + 1));
	return true;
}

static bool dmu_has_room(struct dmu_target *t)
{
	return atomic_read(&t->nr_pending) < t->args.queue_depth ||
	       dmu_depth_bypass(t);
}

/*
 * Waits, counted and timed for status, until queue_depth has room for one
 * more request, and counts it.  Only a submitter that must wait reads the
 * clock.
 */
static void dmu_wait_depth(struct dmu_target *t)
{
	u64 start = ktime_get_ns();

	atomic64_inc(&t->depth_waits);
	do
		wait_event_idle(t->space_wait, dmu_has_room(t));
	while (!dmu_reserve(t));
	atomic64_add(ktime_get_ns() - start, &t->depth_wait_ns);
}

static void dmu_trace_map(struct dmu_target *t, struct dmu_msg *m)
{
	int queued;

	/* The depths are volatile reads: skip them while nobody traces. */
	if (!trace_dm_user_map_enabled())
		return;
	queued = atomic_read(&t->nr_queued);
	trace_dm_user_map(t->dev, m->hdr.seq, m->hdr.type, m->hdr.flags,
			  m->hdr.sector, m->hdr.len, queued,
			  max(atomic_read(&t->nr_pending) - queued, 0));
}

/* Starts the clock for timeout_ms or stall_ms, if it is not running. */
static void dmu_start_clock(struct dmu_target *t)
{
	if ((!READ_ONCE(t->args.timeout_ms) && !READ_ONCE(t->args.stall_ms)) ||
	    delayed_work_pending(&t->work))
		return;
	spin_lock(&t->lock);
	dmu_schedule_work_locked(t);
	spin_unlock(&t->lock);
}

/*
 * The channel for a new message: one whose reader is busy and will take
 * it without a wakeup (dmu_reader_busy()), else the one whose reader took
 * last, if it sleeps (woken for it: the same thread, so that light load
 * keeps to one), else another whose reader sleeps, else the next in turn.
 * Under rcu_read_lock().
 */
static struct dmu_channel *dmu_pick_channel(struct dmu_target *t,
					    struct dmu_chanset *cs,
					    unsigned int nr)
{
	unsigned int start = this_cpu_inc_return(*t->rotor), i;
	struct dmu_channel *c, *hot = NULL, *sleeping = NULL;
	u32 hot_id = READ_ONCE(t->hot_id);

	for (i = 0; i < nr; i++) {
		c = dmu_chans_at(cs, (start + i) % nr);
		if (dmu_reader_busy(c))
			return c;
		/* Lockless: dmu_wake_reader() looks again, after a barrier. */
		if (!waitqueue_active(&c->rd_wait))
			continue;
		if (c->id == hot_id)
			hot = c;
		else if (!sleeping)
			sleeping = c;
	}
	return hot ?: sleeping ?: dmu_chans_at(cs, start % nr);
}

/*
 * Queues @m on a channel in service (dmu_pick_channel()); a channel that left
 * service meanwhile sends it to the next.  Returns false when none is.
 */
static bool dmu_queue_on_channel(struct dmu_target *t, struct dmu_msg *m)
{
	struct dmu_chanset *cs;
	struct dmu_channel *c;
	unsigned int nr;

	rcu_read_lock();
	for (;;) {
		cs = rcu_dereference(t->chans);
		nr = dmu_chans_nr(cs);
		if (!nr) {
			rcu_read_unlock();
			return false;
		}
		c = dmu_pick_channel(t, cs, nr);
		spin_lock(&c->lock);
		if (!c->detached)
			break;
		/* dmu_detach_locked() took c out of the set before this. */
		spin_unlock(&c->lock);
	}
	list_add_tail(&m->node, &c->queue);
	dmu_hwm(&t->hwm_queued, atomic_inc_return(&t->nr_queued));
	dmu_trace_map(t, m);
	spin_unlock(&c->lock);
	dmu_wake_reader(t, c);
	rcu_read_unlock();
	return true;
}

static int user_map(struct dm_target *ti, struct bio *bio)
{
	struct dmu_instance *inst = ti->private;
	struct dmu_target *t = inst->t;
	struct dmu_msg *m = dm_per_bio_data(bio, sizeof(struct dmu_msg));
	u64 type;

	if (dmu_req_type(bio, &type)) {
		trace_dm_user_complete(t->dev, 0, (__force u32)bio_op(bio),
				       bio->bi_iter.bi_size,
				       blk_status_to_errno(BLK_STS_NOTSUPP),
				       DM_USER_END_REJECTED, 0, 0, 0);
		dmu_count_end(t, BLK_STS_NOTSUPP, DM_USER_END_REJECTED);
		bio->bi_status = BLK_STS_NOTSUPP;
		bio_endio(bio);
		return DM_MAPIO_SUBMITTED;
	}

	m->bio = bio;
	m->hdr.type = type;
	m->hdr.flags = dmu_req_flags(bio);
	m->hdr.len = bio->bi_iter.bi_size;
	/* A flush has no data, and its bio no meaningful sector. */
	if (type == DM_USER_REQ_MAP_FLUSH)
		m->hdr.sector = 0;
	else
		m->hdr.sector = t->args.begin +
				dm_target_offset(ti, bio->bi_iter.bi_sector);
	INIT_LIST_HEAD(&m->node);
	dmu_msg_reset(m);
	m->mapped = jiffies;
	m->stalled = false;
	m->map_ns = trace_dm_user_complete_enabled() ? ktime_get_ns() : 0;
	m->read_ns = 0;
	m->reply_ns = 0;

	/*
	 * queue_depth pushes back on the submitter: it waits here, holding no
	 * lock, until the daemon has made room.  A REQ_NOWAIT submitter is
	 * told to try again instead.
	 */
	if (!dmu_reserve(t)) {
		if (bio->bi_opf & REQ_NOWAIT) {
			bio_wouldblock_error(bio);
			return DM_MAPIO_SUBMITTED;
		}
		dmu_wait_depth(t);
	}
	m->hdr.seq = atomic64_inc_return(&t->next_seq) - 1;

	for (;;) {
		if (dmu_queue_on_channel(t, m))
			break;
		/* No daemon: wait on the backlog for one, or fail. */
		spin_lock(&t->lock);
		if (dmu_nr_channels_locked(t)) {
			/* One opened since: queue on it. */
			spin_unlock(&t->lock);
			continue;
		}
		if (t->orphaned || t->suspending) {
			spin_unlock(&t->lock);
			dmu_end(t, m, BLK_STS_IOERR, DM_USER_END_TEARDOWN);
			return DM_MAPIO_SUBMITTED;
		}
		list_add_tail(&m->node, &t->backlog);
		dmu_hwm(&t->hwm_queued, atomic_inc_return(&t->nr_queued));
		dmu_trace_map(t, m);
		spin_unlock(&t->lock);
		break;
	}
	dmu_start_clock(t);
	return DM_MAPIO_SUBMITTED;
}

/*
 * A suspend waits for every mapped BIO.  With no daemon attached nothing
 * would ever end them, so they fail now, and so does whatever is mapped
 * until the suspend is over.
 */
static void user_presuspend(struct dm_target *ti)
{
	struct dmu_instance *inst = ti->private;
	struct dmu_target *t = inst->t;
	LIST_HEAD(failed);

	spin_lock(&t->lock);
	WRITE_ONCE(t->suspending, true);
	if (!dmu_nr_channels_locked(t))
		dmu_take_queue_locked(t, &failed);
	wake_up_all(&t->space_wait);
	spin_unlock(&t->lock);

	dmu_end_list(t, &failed, BLK_STS_IOERR, DM_USER_END_TEARDOWN);
}

/*
 * Before 6.7, dm-table does not call io_hints for a target with no
 * underlying devices, so the discard limits there never reach the queue.
 * Those kernels still have blk_queue_max_discard_sectors() (Kbuild probes
 * for it).  Resume runs after the table's limits are applied and before I/O
 * restarts: fill in what dm left out.
 */
static void dmu_discard_limits_compat(struct dm_target *ti)
{
#ifdef DMU_HAVE_BLK_QUEUE_MAX_DISCARD_SECTORS
	struct request_queue *q = dm_disk(dm_table_get_md(ti->table))->queue;

	if (q->limits.max_discard_sectors)
		return;
	blk_queue_max_discard_sectors(q, DMU_MAX_DISCARD_SECTORS);
	q->limits.discard_granularity = SECTOR_SIZE;
#endif
}

/*
 * This table is live from now on, and its arguments are the target's.  No
 * BIO is mapped while a device is suspended, and the suspend waited for the
 * earlier table's, so nothing in flight sees them change.
 */
static void user_resume(struct dm_target *ti)
{
	struct dmu_instance *inst = ti->private;
	struct dmu_target *t = inst->t;

	dmu_discard_limits_compat(ti);

	spin_lock(&t->lock);
	t->args.begin = inst->args.begin;
	t->args.queue_depth = inst->args.queue_depth;
	t->args.max_io_len = inst->args.max_io_len;
	WRITE_ONCE(t->args.timeout_ms, inst->args.timeout_ms);
	WRITE_ONCE(t->args.recovery_ms, inst->args.recovery_ms);
	WRITE_ONCE(t->args.stall_ms, inst->args.stall_ms);
	WRITE_ONCE(t->suspending, false);
	if (dmu_needs_work_locked(t))
		dmu_schedule_work_locked(t);
	spin_unlock(&t->lock);
	/* A daemon may have made room while the device was suspended. */
	wake_up_all(&t->space_wait);
}

static void user_presuspend_undo(struct dm_target *ti)
{
	struct dmu_instance *inst = ti->private;
	struct dmu_target *t = inst->t;

	spin_lock(&t->lock);
	WRITE_ONCE(t->suspending, false);
	spin_unlock(&t->lock);
}

static void user_status(struct dm_target *ti, status_type_t type,
			unsigned int status_flags, char *result,
			unsigned int maxlen)
{
	struct dmu_instance *inst = ti->private;
	struct dmu_target *t = inst->t;
	const struct dmu_args *a = &inst->args;
	unsigned int sz = 0, nopt, nr;
	int queued;

	switch (type) {
	case STATUSTYPE_INFO:
		rcu_read_lock();
		nr = dmu_chans_nr(rcu_dereference(t->chans));
		rcu_read_unlock();
		queued = atomic_read(&t->nr_queued);
		DMEMIT("%u %d %d %lld %lld %lld %lld", nr,
		       queued, dmu_in_flight(t, queued),
		       atomic64_read(&t->completed), atomic64_read(&t->errors),
		       atomic64_read(&t->timeouts),
		       atomic64_read(&t->requeues));
		/* Appended in 1.5.0, so that older parsers keep working. */
		DMEMIT(" %lld %llu %d %d %lld %llu",
		       atomic64_read(&t->depth_waits),
		       div_u64(atomic64_read(&t->depth_wait_ns), NSEC_PER_USEC),
		       atomic_read(&t->hwm_queued),
		       atomic_read(&t->hwm_in_flight),
		       atomic64_read(&t->stalls), dmu_oldest_us(t));
		break;
	case STATUSTYPE_TABLE:
		DMEMIT("%llu %llu %s", (unsigned long long)a->begin,
		       (unsigned long long)ti->len, t->ctl_name);
		nopt = 2 * (!!a->queue_depth + !!a->timeout_ms +
			    !!a->recovery_ms +
			    (a->max_io_len != DMU_DEFAULT_MAX_IO_LEN) +
			    !!a->stall_ms);
		if (!nopt)
			break;
		DMEMIT(" %u", nopt);
		if (a->queue_depth)
			DMEMIT(" queue_depth %u", a->queue_depth);
		if (a->timeout_ms)
			DMEMIT(" timeout_ms %u", a->timeout_ms);
		if (a->recovery_ms)
			DMEMIT(" recovery_ms %u", a->recovery_ms);
		if (a->max_io_len != DMU_DEFAULT_MAX_IO_LEN)
			DMEMIT(" max_io_len %u", a->max_io_len);
		if (a->stall_ms)
			DMEMIT(" stall_ms %u", a->stall_ms);
		break;
	case STATUSTYPE_IMA:
		*result = '\0';
		break;
	}
}

/*
 * dmsetup message <dev> 0 timeout_ms <ms> | recovery_ms <ms> | stall_ms <ms>
 * dmsetup message <dev> 0 reset_hwm
 *
 * Messages go to the live table: the change applies at once, and the table
 * line shows it.  A request's timeout is its age against the timeout in
 * force, whenever that was set.
 */
static int user_message(struct dm_target *ti, unsigned int argc, char **argv,
			char *result, unsigned int maxlen)
{
	struct dmu_instance *inst = ti->private;
	struct dmu_target *t = inst->t;
	unsigned int value;
	int queued;

	if (argc == 1 && !strcasecmp(argv[0], "reset_hwm")) {
		/* The marks start again from what is there now. */
		queued = atomic_read(&t->nr_queued);
		atomic_set(&t->hwm_queued, queued);
		atomic_set(&t->hwm_in_flight, dmu_in_flight(t, queued));
		return 0;
	}
	if (argc != 2) {
		DMWARN("%s: invalid message: expected <option> <value> or reset_hwm",
		       t->ctl_name);
		return -EINVAL;
	}
	if (kstrtouint(argv[1], 10, &value)) {
		DMWARN("%s: invalid message value: %s", t->ctl_name, argv[1]);
		return -EINVAL;
	}

	spin_lock(&t->lock);
	if (!strcasecmp(argv[0], "timeout_ms")) {
		inst->args.timeout_ms = value;
		WRITE_ONCE(t->args.timeout_ms, value);
	} else if (!strcasecmp(argv[0], "recovery_ms")) {
		inst->args.recovery_ms = value;
		WRITE_ONCE(t->args.recovery_ms, value);
	} else if (!strcasecmp(argv[0], "stall_ms")) {
		inst->args.stall_ms = value;
		WRITE_ONCE(t->args.stall_ms, value);
	} else {
		spin_unlock(&t->lock);
		DMWARN("%s: unrecognised message: %s", t->ctl_name, argv[0]);
		return -EINVAL;
	}
	if (dmu_needs_work_locked(t))
		dmu_schedule_work_locked(t);
	spin_unlock(&t->lock);
	return 0;
}

static void user_io_hints(struct dm_target *ti, struct queue_limits *limits)
{
	limits->max_discard_sectors = DMU_MAX_DISCARD_SECTORS;
	limits->max_hw_discard_sectors = DMU_MAX_DISCARD_SECTORS;
	limits->discard_granularity = SECTOR_SIZE;
}

/*
 * No underlying device, so nothing to visit.  dm asks every target of a
 * table about its devices; without this callback, 6.1 takes "cannot say"
 * for "no": a table of this target would not support REQ_NOWAIT there
 * (dm_table_supports_nowait()).
 */
static int user_iterate_devices(struct dm_target *ti,
				iterate_devices_callout_fn fn, void *data)
{
	return 0;
}

static struct target_type user_target = {
	.name = "user",
	.version = { 1, 6, 0 },
	.features = DM_TARGET_NOWAIT,
	.module = THIS_MODULE,
	.ctr = user_ctr,
	.dtr = user_dtr,
	.map = user_map,
	.presuspend = user_presuspend,
	.presuspend_undo = user_presuspend_undo,
	.resume = user_resume,
	.status = user_status,
	.message = user_message,
	.io_hints = user_io_hints,
	.iterate_devices = user_iterate_devices,
};

/* ---- module ------------------------------------------------------------- */

static int __init dm_user_init(void)
{
	int r = -ENOMEM;

	/* Timeouts and recovery must make progress while reclaim waits on us. */
	dmu_wq = alloc_workqueue("kdmuserd", WQ_MEM_RECLAIM, 0);
	if (!dmu_wq)
		goto bad;
	dmu_target_cache = KMEM_CACHE(dmu_target, 0);
	if (!dmu_target_cache)
		goto bad;
	/* Only the reply header is written from user memory. */
	dmu_channel_cache =
		kmem_cache_create_usercopy("dmu_channel",
					   sizeof(struct dmu_channel), 0, 0,
					   offsetof(struct dmu_channel, reply),
					   sizeof_field(struct dmu_channel, reply),
					   NULL);
	if (!dmu_channel_cache)
		goto bad;
	dmu_debugfs_root = debugfs_create_dir("dm-user", NULL);
	r = dm_register_target(&user_target);
	if (r) {
		DMERR("register failed %d", r);
		goto bad;
	}
	return 0;

bad:
	debugfs_remove(dmu_debugfs_root);
	kmem_cache_destroy(dmu_channel_cache);
	kmem_cache_destroy(dmu_target_cache);
	if (dmu_wq)
		destroy_workqueue(dmu_wq);
	return r;
}

static void __exit dm_user_exit(void)
{
	dm_unregister_target(&user_target);
	debugfs_remove(dmu_debugfs_root);
	/* Channels are freed after a grace period. */
	rcu_barrier();
	kmem_cache_destroy(dmu_channel_cache);
	kmem_cache_destroy(dmu_target_cache);
	destroy_workqueue(dmu_wq);
}

module_init(dm_user_init);
module_exit(dm_user_exit);

MODULE_DESCRIPTION(DM_NAME " target that hands every BIO to a userspace daemon");
MODULE_AUTHOR("dm-user developers");
MODULE_LICENSE("GPL");
