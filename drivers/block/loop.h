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
 *   LO_RUNDOWN	the teardown is scheduled or running. Only the teardown
 *		moves the device on, to LO_UNBOUND. Attach and LOOP_CTL_REMOVE
 *		wait for that (killably); LOOP_CTL_GET_FREE skips the device.
 *   LO_DELETING the device is being removed; nothing may use it any more.
 *		Openers may still hold it (autoclear-delete removes a device
 *		that a prober opened): every ioctl refuses it.
 *
 * Lock order (outermost first)
 * ----------------------------
 *
 *   loop_ctl_mutex		(loop_main.c)
 *     loop_validate_mutex	(loop_lifecycle.c)
 *       lo->lo_mutex
 *         disk->open_mutex	(block layer: LOOP_CLR_FD, partition scans)
 *         queue freeze		(lockdep tracks it as a lock)
 *           lo->lo_state_lock	(spinlock, innermost)
 *
 * The block layer calls ->open and ->release with disk->open_mutex held;
 * they take lo_state_lock only. The teardown takes lo_mutex and under it
 * disk->open_mutex (partitions, openers check), so it never runs under
 * ->release: ->release schedules it instead (see loop_lifecycle.c). It
 * drains I/O without freezing the queue (lo_inflight, loop_io.c).
 * Nothing that can end in ->release of another loop device (fput() of a
 * backing file) runs with any of these locks held.
 *
 * The I/O path takes only lo->lo_work_lock (loop_io.c), a spinlock with
 * interrupts off that nests in none of the above and under which nothing
 * else is taken.
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
 * Fields marked "state" are written under lo_state_lock and, except by
 * ->release (which may not take lo_mutex), under lo_mutex too. Readers
 * hold either; a reader holding only lo_mutex is inside an ioctl on an
 * open device, so ->release cannot run meanwhile. Fields marked
 * "config" are written under lo_mutex while the device is not serving I/O
 * (unbound, its queue frozen, lo_draining set and lo_inflight zero, or
 * nobody has it open and open_mutex is held) and read without locks by
 * the I/O path.
 */
struct loop_device {
	int			lo_number;	/* fixed at creation */
	/* Protects "state" fields together with lo_mutex; see above. */
	spinlock_t		lo_state_lock;

	/* Serialises configuration changes of this device. */
	struct mutex		lo_mutex;
	/* Woken when lo_state leaves LO_RUNDOWN. */
	wait_queue_head_t	lo_state_wq;

	enum loop_state		lo_state;	/* state */
	u32			lo_flags;	/* state: LO_FLAGS_* */

	struct file		*lo_backing_file;	/* config */
	loff_t			lo_offset;		/* config */
	loff_t			lo_sizelimit;		/* config */
	char			lo_file_name[LO_NAME_SIZE];	/* config */
	gfp_t			lo_old_gfp_mask;	/* config */

	/* Protects lo_workers and every worker's request list and flag. */
	spinlock_t		lo_work_lock;

	/*
	 * The teardown, when it runs as task work of the last closer or, if
	 * that cannot be, on a workqueue: one or the other, once per
	 * rundown, each initialised when it is scheduled.
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
	 * loop_drain_io()).
	 */
	atomic_t		lo_inflight;
	bool			lo_draining;

	bool			lo_use_dio;		/* config */
	/* Set by attach, cleared by the teardown: never concurrent. */
	bool			lo_sysfs_inited;
	/* Visible to LOOP_CTL_GET_FREE and LOOP_CTL_REMOVE: loop_ctl_mutex. */
	bool			lo_idr_visible;

	struct blk_mq_tag_set	lo_tag_set;
	struct gendisk		*lo_disk;
	struct request_queue	*lo_queue;
};

/**
 * struct loop_cmd - per-request data, allocated by blk-mq with the request
 * @node:	in a worker's request list
 * @ref:	async I/O only: submitter and completion each hold one
 * @use_aio:	issue the read or write asynchronously (direct I/O)
 * @requeued:	requeued after a short transfer, still counted in
 *		lo_inflight (set by the completion, cleared by ->queue_rq)
 * @ret:	result: bytes transferred or negative errno
 * @iocb:	the read or write on the backing file
 * @bvec:	bvec array for requests of several bios, else NULL
 * @blkcg_css:	cgroup the I/O is charged to, with a reference, or NULL
 * @memcg_css:	memory cgroup for page cache charges, with a reference, or NULL
 */
struct loop_cmd {
	struct list_head		node;
	atomic_t			ref;
	bool				use_aio;
	bool				requeued;
	long				ret;
	struct kiocb			iocb;
	struct bio_vec			*bvec;
	struct cgroup_subsys_state	*blkcg_css;
	struct cgroup_subsys_state	*memcg_css;
};

/* loop_main.c */
extern int loop_part_shift;
extern int loop_hw_queue_depth;
int loop_control_remove_device(struct loop_device *lo);
bool loop_claim_device(struct loop_device *lo);
void loop_remove(struct loop_device *lo);

/* loop_lifecycle.c */
int loop_configure(struct loop_device *lo, loop_mode_t mode,
		   struct block_device *bdev, const struct loop_config *config);
int loop_change_fd(struct loop_device *lo, struct block_device *bdev,
		   unsigned int fd);
int loop_clr_fd(struct loop_device *lo, struct block_device *bdev);
void loop_release_last(struct loop_device *lo);
int loop_wait_rundown(struct loop_device *lo);
void loop_set_state(struct loop_device *lo, enum loop_state state);
loff_t loop_backing_size(loff_t offset, loff_t sizelimit, struct file *file);
void loop_update_dio(struct loop_device *lo, bool want_dio);
int loop_update_limits(struct loop_device *lo, unsigned int bsize);
void loop_reread_partitions(struct loop_device *lo);
void loop_set_size(struct loop_device *lo, loff_t sectors);
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
