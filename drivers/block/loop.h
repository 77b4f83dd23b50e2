/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Loop block device: private header shared by the files of the driver.
 *
 * A loop device turns a file (the "backing file") into a block device. The
 * driver is split by concern:
 *
 *   loop_main.c	module parameters, /dev/loop-control, device creation
 *			and removal, block_device_operations open/release
 *   loop_lifecycle.c	attach, stacking validation, LOOP_CLR_FD, autoclear,
 *			the teardown and where it runs, diskseq and uevents
 *   loop_io.c		the blk-mq I/O path to the backing file
 *   loop_ioctl.c	ioctl dispatch, status get/set, 32-bit compat, sysfs
 *
 * Device states
 * -------------
 *
 *   unbound --attach--> bound --last close with autoclear--> rundown
 *      ^                  |   \--LOOP_CLR_FD, sole opener-->    |
 *      |                  |                                      |
 *      +------------------+------------ teardown done <----------+
 *      |
 *      +--LOOP_CTL_REMOVE, module unload--> deleting (then freed)
 *   rundown --teardown done, LO_FLAGS_AUTOCLEAR_DELETE--> deleting
 *
 *   LO_UNBOUND	no backing file. Attach may bind it; LOOP_CTL_GET_FREE may
 *		hand it out; LOOP_CTL_REMOVE may delete it.
 *   LO_BOUND	a backing file serves I/O. Only LOOP_CLR_FD (under
 *		loop_validate_mutex) or the last close of an autoclear device
 *		(in ->release, under disk->open_mutex) moves it on.
 *   LO_RUNDOWN	the teardown is scheduled or running. Entered under
 *		disk->open_mutex, which also drops every partition then.
 *		Only the teardown moves the device on. Attach and
 *		LOOP_CTL_REMOVE wait for that (killably); LOOP_CTL_GET_FREE
 *		skips the device; exclusive opens (a mount) are refused.
 *   LO_DELETING the device is being removed; nothing may use it any more.
 *		Openers may still hold it (autoclear-delete removes a device
 *		that a prober opened): opens and every ioctl refuse it.
 *
 * Lock order (outermost first)
 * ----------------------------
 *
 *   loop_ctl_mutex		(loop_main.c; also taken alone)
 *     loop_validate_mutex	(loop_lifecycle.c)
 *       lo->lo_mutex
 *         q->limits_lock	(6.12: queue_limits_start_update())
 *           queue freeze	(lockdep tracks it as a lock)
 *         disk->open_mutex	(block layer: LOOP_CLR_FD, partition scans)
 *           lo->lo_state_lock	(spinlock, innermost)
 *
 * limits_lock comes before the freeze because 6.12's sysfs queue
 * attributes take it first and then freeze; the I/O path never takes it
 * (a freeze waits for requests in the driver).
 *
 * The block layer calls ->open and ->release with disk->open_mutex held;
 * they take lo_state_lock, and ->release, when it starts a rundown, drops
 * the partitions (as the block layer's own rescans do under open_mutex).
 * The teardown takes lo_mutex and under it disk->open_mutex, so it never
 * runs under ->release: ->release schedules it instead (see
 * loop_lifecycle.c). It drains I/O without freezing the queue (lo_inflight,
 * loop_io.c). Nothing that can end in ->release of another loop device
 * (fput() of a backing file) runs with any of these locks held.
 *
 * The I/O path takes only lo->lo_work_lock (loop_io.c), a spinlock with
 * interrupts off that nests in none of the above and under which nothing
 * else is taken. Its fast path calls the backing file from ->queue_rq
 * with none of our locks held.
 */
#ifndef _DRIVERS_BLOCK_LOOP_H
#define _DRIVERS_BLOCK_LOOP_H

#include <linux/blk-mq.h>
#include <linux/blkdev.h>
#include <linux/fs.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/task_work.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <uapi/linux/loop.h>

struct loop_device;

enum loop_state {
	LO_UNBOUND,
	LO_BOUND,
	LO_RUNDOWN,
	LO_DELETING,
};

/**
 * struct loop_worker - runs the requests of one block cgroup, in order
 * @node:	in lo_workers (not the root worker)
 * @work:	drains @cmds on the device's workqueue
 * @cmds:	requests waiting for this worker
 * @scheduled:	@work is queued or running and will look at @cmds again
 * @blkcg_css:	the cgroup, with a reference; NULL for the root worker
 * @lo:		the device
 *
 * A worker other than the root one frees itself when it finds @cmds empty;
 * it is found, created and scheduled under lo_work_lock only.
 */
struct loop_worker {
	struct list_head		node;
	struct work_struct		work;
	struct list_head		cmds;
	bool				scheduled;
	struct cgroup_subsys_state	*blkcg_css;
	struct loop_device		*lo;
};

/**
 * struct loop_device - one /dev/loopN
 *
 * Each field says what protects it:
 *
 * "state": lo_state and lo_flags. Written under lo_state_lock, and also
 *	under lo_mutex except by the two transitions that the block layer's
 *	disk->open_mutex serialises instead (->release starting a rundown,
 *	and LOOP_CLR_FD, which holds both). Readers hold lo_state_lock, or
 *	lo_mutex while the device is bound and they have it open (so no last
 *	close can run), or read lockless with READ_ONCE() where a stale value
 *	is harmless (the I/O path, the wait for a rundown, LOOP_CTL_REMOVE, the
 *	limits work: see there).
 * "config": the binding (backing file, offset, size limit, name, direct
 *	I/O). Written under lo_mutex, and only while no request is in the
 *	driver: the device unbound, or its queue frozen, or its I/O drained
 *	(lo_draining set, lo_inflight zero). So the I/O path reads them
 *	without locks for every request it accepted.
 */
struct loop_device {
	int			lo_number;	/* fixed at creation */
	/* Protects "state" fields (see above). */
	spinlock_t		lo_state_lock;

	/* Serialises configuration changes of this device. */
	struct mutex		lo_mutex;
	/* Woken when lo_state leaves LO_RUNDOWN. */
	wait_queue_head_t	lo_state_wq;

	enum loop_state		lo_state;	/* state */
	u32			lo_flags;	/* state: LO_FLAGS_* */
	/*
	 * LOOP_CTL_GET_FREE's hold on an unbound device: the thread it
	 * handed the device to, with a reference (so that its pid cannot be
	 * reused by another thread while the hold lasts), and until when
	 * (64-bit jiffies). lo_state_lock; the reference is dropped outside
	 * it, or when the device is freed.
	 */
	struct pid		*lo_free_holder;
	u64			lo_free_hold_end;

	struct file		*lo_backing_file;	/* config */
	loff_t			lo_offset;		/* config */
	loff_t			lo_sizelimit;		/* config */
	char			lo_file_name[LO_NAME_SIZE];	/* config */
	gfp_t			lo_old_gfp_mask;	/* config */

	/* Protects lo_workers and every worker's request list and flag. */
	spinlock_t		lo_work_lock;

	/*
	 * The teardown scheduled by ->release: task work of the last closer,
	 * or, if that cannot be, a work item on loop_rundown_wq. One or the
	 * other, once per rundown, set up when it is scheduled: they share
	 * storage.
	 */
	union {
		struct work_struct	lo_rundown_work;
		struct callback_head	lo_rundown_twork;
	};

	struct workqueue_struct	*lo_workqueue;	/* I/O workers; lo_mutex */
	struct list_head	lo_workers;	/* workers of other cgroups */
	struct loop_worker	lo_root_worker;	/* root cgroup, never freed */
	/*
	 * Requests between ->queue_rq and their completion, and the flag
	 * that makes ->queue_rq fail new ones while the teardown waits for
	 * the count to reach zero: a drain without freezing the queue (see
	 * loop_drain_io()). Barriers, no lock.
	 */
	atomic_t		lo_inflight;
	bool			lo_draining;
	/*
	 * Requests handed to the workers and not yet issued: on a list, or
	 * in a worker's hands until the backing file took it (asynchronous
	 * direct I/O) or it is done (the rest). ->queue_rq
	 * reads it as a hint (loop_leave_to_worker()).
	 */
	atomic_t		lo_backlog;
	/* Requests loop_try_nowait() issued: statistics, sysfs. */
	atomic_long_t		lo_nowait_issued;
	/*
	 * Do the submitters of tmpfs reads queue them (loop_tmpfs_queued())?
	 * Reads seen, those of the current window that found another
	 * request in the device, and the last window's answer. Hints,
	 * lockless.
	 */
	atomic_t		lo_tmpfs_reads;
	atomic_t		lo_tmpfs_overlaps;
	bool			lo_tmpfs_queued;
	/*
	 * The backing file answered an IOCB_NOWAIT request with EOPNOTSUPP:
	 * no more of them this attachment. Set by the completion, cleared
	 * with the direct I/O setting (config); READ_ONCE()/WRITE_ONCE().
	 */
	bool			lo_nowait_refused;

	bool			lo_use_dio;		/* config */
	/* Set by attach, cleared by the teardown: never concurrent. */
	struct kobject		*lo_sysfs_dir;
	/* Visible to LOOP_CTL_GET_FREE and LOOP_CTL_REMOVE: loop_ctl_mutex. */
	bool			lo_idr_visible;
	/* Deleted and out of the idr: loop_ctl_mutex; lo_state_wq wakes. */
	bool			lo_removed;
	/*
	 * LOOP_LIMITS_*: limits the I/O path found the backing file cannot
	 * honour, to be withdrawn by loop_limits_work (it may not take
	 * limits_lock itself). Atomic bit operations; cleared under lo_mutex
	 * when the device is unbound.
	 */
	unsigned long		lo_limits_pending;

	struct blk_mq_tag_set	lo_tag_set;
	struct gendisk		*lo_disk;
};

/* lo_limits_pending bits. */
enum {
	LOOP_LIMITS_NO_DISCARD,		/* fallocate refused punch hole */
	LOOP_LIMITS_NO_ZEROES,		/* fallocate refused zero range */
};

/* The request queue of @lo. */
static inline struct request_queue *loop_queue(struct loop_device *lo)
{
	return lo->lo_disk->queue;
}

/**
 * struct loop_cmd - per-request data, allocated by blk-mq with the request
 * @node:	in a worker's request list
 * @ref:	async I/O only: submitter and completion each hold one
 * @use_aio:	issue the read or write asynchronously (direct I/O)
 * @requeued:	requeued after a short transfer or a refused IOCB_NOWAIT
 *		attempt, still counted in lo_inflight (set by the
 *		completion, cleared by ->queue_rq)
 * @nowait:	issued by ->queue_rq with IOCB_NOWAIT (loop_try_nowait())
 * @to_worker:	after an IOCB_NOWAIT attempt the file refused: the worker
 *		issues it, waiting (set by the completion, cleared by
 *		->queue_rq)
 * @ret:	result: bytes transferred or negative errno
 * @iocb:	the read or write on the backing file
 * @bvec:	bvec array for requests of several bios, else NULL
 * @blkcg_css:	block cgroup of the request's first bio, or NULL; no
 *		reference of ours: the bio holds one while the request lives
 * @memcg_css:	memory cgroup for page cache charges, with a reference
 *		(dropped once the request is issued, by the worker or by
 *		loop_try_nowait()), or NULL
 */
struct loop_cmd {
	struct list_head		node;
	atomic_t			ref;
	bool				use_aio;
	bool				requeued;
	bool				nowait;
	bool				to_worker;
	long				ret;
	struct kiocb			iocb;
	struct bio_vec			*bvec;
	struct cgroup_subsys_state	*blkcg_css;
	struct cgroup_subsys_state	*memcg_css;
};

/* loop_main.c */
extern int loop_part_shift;
struct pid *loop_free_unhold(struct loop_device *lo);
extern int loop_hw_queue_depth;
extern bool loop_nowait;
extern unsigned int loop_nowait_depth;
int loop_control_remove_device(struct loop_device *lo);
void loop_hide_device(struct loop_device *lo);
void loop_remove(struct loop_device *lo);
void loop_withdraw_limits_later(void);
bool loop_is_our_disk(struct gendisk *disk);

/* loop_lifecycle.c */
int loop_configure(struct loop_device *lo, loop_mode_t mode,
		   struct block_device *bdev, const struct loop_config *config);
int loop_change_fd(struct loop_device *lo, struct block_device *bdev,
		   unsigned int fd);
int loop_clr_fd(struct loop_device *lo, struct block_device *bdev);
void loop_release_last(struct loop_device *lo);
int loop_wait_rundown(struct loop_device *lo);
void loop_set_state(struct loop_device *lo, enum loop_state state);
void loop_set_flags(struct loop_device *lo, u32 flags);
loff_t loop_backing_size(loff_t offset, loff_t sizelimit, struct file *file);
bool loop_dio_possible(struct file *file, unsigned int lbs, loff_t offset);
void loop_set_dio(struct loop_device *lo, bool use_dio);
int loop_compute_limits(struct file *file, unsigned int bsize, bool want_dio,
			bool read_only, struct loop_limits *ll);
void loop_reread_partitions(struct loop_device *lo);
void loop_set_size(struct loop_device *lo, loff_t sectors);
void loop_announce_size(struct loop_device *lo, sector_t old, sector_t size);
int loop_check_info(const struct loop_info64 *info);
void loop_apply_info(struct loop_device *lo, const struct loop_info64 *info);
int loop_lifecycle_init(void);
void loop_lifecycle_exit(void);

/* loop_io.c */
extern const struct blk_mq_ops loop_mq_ops;
void loop_init_workers(struct loop_device *lo);
void loop_drain_io(struct loop_device *lo);
void loop_end_drain(struct loop_device *lo);

/* loop_ioctl.c */
int lo_ioctl(struct block_device *bdev, loop_mode_t mode, unsigned int cmd,
	     unsigned long arg);
int lo_compat_ioctl(struct block_device *bdev, loop_mode_t mode,
		    unsigned int cmd, unsigned long arg);
void loop_sysfs_init(struct loop_device *lo);
void loop_sysfs_exit(struct loop_device *lo);

#endif /* _DRIVERS_BLOCK_LOOP_H */
