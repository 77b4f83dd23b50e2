/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Compatibility layer: the one place that knows the differences between the
 * kernels this driver builds against (Linux 6.1 and 6.12). Kbuild includes
 * it before every source file. The LOOP_HAVE_* macros come from feature
 * tests in Kbuild, which grep the target kernel's headers; no source file
 * of the driver tests kernel versions.
 *
 *   LOOP_HAVE_BLK_MODE_T		open(gendisk, blk_mode_t), release(gendisk)
 *   LOOP_HAVE_QUEUE_LIMITS_UPDATE	queue_limits_start_update() and
 *					blk_mq_alloc_disk(set, lim, data)
 *   LOOP_HAVE_MEDIA_CHANGE_EVENTS	disk_force_media_change(disk, events)
 *   LOOP_HAVE_CLAIM_HOPS		bd_prepare_to_claim(bdev, holder, hops)
 *   LOOP_HAVE_BD_MAPPING		block_device.bd_mapping (no bd_inode)
 *   LOOP_HAVE_BDEV_PARTNO		bdev_partno() (no block_device.bd_partno)
 *   LOOP_HAVE_PLUG_RQ_LIST		blk_plug.cached_rqs is a struct rq_list
 */
#ifndef _LOOP_COMPAT_H
#define _LOOP_COMPAT_H

#include <linux/blk-mq.h>
#include <linux/blkdev.h>
#include <linux/fs.h>
#include <linux/lockdep.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>

/*
 * The mode an opener has (a blk_mode_t or an fmode_t), and the prototypes
 * of ->open and ->release: the disk is LOOP_OPEN_DISK inside ->open.
 */
#ifdef LOOP_HAVE_BLK_MODE_T
#define loop_mode_t		blk_mode_t
#define LOOP_MODE_WRITE		BLK_OPEN_WRITE
#define LOOP_MODE_EXCL		BLK_OPEN_EXCL
#define LOOP_OPEN_ARGS		struct gendisk *disk, blk_mode_t mode
#define LOOP_OPEN_DISK		disk
#define LOOP_RELEASE_ARGS	struct gendisk *disk
#else
#define loop_mode_t		fmode_t
#define LOOP_MODE_WRITE		FMODE_WRITE
#define LOOP_MODE_EXCL		FMODE_EXCL
#define LOOP_OPEN_ARGS		struct block_device *bdev, fmode_t mode
#define LOOP_OPEN_DISK		(bdev->bd_disk)
#define LOOP_RELEASE_ARGS	struct gendisk *disk, fmode_t mode
#endif

/* The queue limits a loop device sets when it is attached or reset. */
struct loop_limits {
	unsigned int	block_size;
	unsigned int	max_discard_sectors;
	unsigned int	discard_granularity;
	bool		write_cache;
	bool		rotational;
};

/* Largest request, in sectors: the historic default cap of the block layer. */
#define LOOP_MAX_HW_SECTORS	2560u

/*
 * A limits update: loop_limits_start(), then (for a device in use) the
 * queue frozen, then loop_limits_commit() or loop_limits_cancel(). On
 * 6.12, start takes q->limits_lock and commit or cancel releases it: the
 * order of 6.12's own sysfs queue attributes (limits_lock, then freeze).
 * Nothing that may take filesystem locks (statfs, fsync) runs in between.
 */
#ifdef LOOP_HAVE_QUEUE_LIMITS_UPDATE
struct loop_limits_update {
	struct queue_limits	lim;
};

static inline struct gendisk *loop_alloc_disk(struct blk_mq_tag_set *set,
					      void *data)
{
	struct queue_limits lim = { .max_hw_sectors = LOOP_MAX_HW_SECTORS };

	return blk_mq_alloc_disk(set, &lim, data);
}

static inline void loop_limits_start(struct request_queue *q,
				     struct loop_limits_update *u)
{
	u->lim = queue_limits_start_update(q);
}

static inline void loop_limits_cancel(struct request_queue *q,
				      struct loop_limits_update *u)
{
	queue_limits_cancel_update(q);
}

static inline int loop_limits_commit(struct request_queue *q,
				     struct loop_limits_update *u,
				     const struct loop_limits *ll)
{
	struct queue_limits *lim = &u->lim;

	lim->logical_block_size = ll->block_size;
	lim->physical_block_size = ll->block_size;
	lim->io_min = ll->block_size;
	lim->max_hw_discard_sectors = ll->max_discard_sectors;
	lim->max_write_zeroes_sectors = ll->max_discard_sectors;
	lim->discard_granularity = ll->discard_granularity;
	lim->features &= ~(BLK_FEAT_WRITE_CACHE | BLK_FEAT_ROTATIONAL);
	if (ll->write_cache)
		lim->features |= BLK_FEAT_WRITE_CACHE;
	if (ll->rotational)
		lim->features |= BLK_FEAT_ROTATIONAL;
	return queue_limits_commit_update(q, lim);
}

/* Stop advertising discard and/or write-zeroes. May sleep. */
static inline void loop_limits_withdraw(struct request_queue *q,
					bool discard, bool zeroes)
{
	struct queue_limits lim = queue_limits_start_update(q);

	if (zeroes)
		lim.max_write_zeroes_sectors = 0;
	if (discard) {
		lim.max_hw_discard_sectors = 0;
		lim.discard_granularity = 0;
	}
	queue_limits_commit_update(q, &lim);
}
#else
struct loop_limits_update {
	int	unused;
};

static inline struct gendisk *loop_alloc_disk(struct blk_mq_tag_set *set,
					      void *data)
{
	struct gendisk *disk = blk_mq_alloc_disk(set, data);

	if (!IS_ERR(disk))
		blk_queue_max_hw_sectors(disk->queue, LOOP_MAX_HW_SECTORS);
	return disk;
}

static inline void loop_limits_start(struct request_queue *q,
				     struct loop_limits_update *u)
{
}

static inline void loop_limits_cancel(struct request_queue *q,
				      struct loop_limits_update *u)
{
}

static inline int loop_limits_commit(struct request_queue *q,
				     struct loop_limits_update *u,
				     const struct loop_limits *ll)
{
	if (blk_validate_block_size(ll->block_size))
		return -EINVAL;
	blk_queue_logical_block_size(q, ll->block_size);
	blk_queue_physical_block_size(q, ll->block_size);
	blk_queue_io_min(q, ll->block_size);
	blk_queue_max_discard_sectors(q, ll->max_discard_sectors);
	blk_queue_max_write_zeroes_sectors(q, ll->max_discard_sectors);
	q->limits.discard_granularity = ll->discard_granularity;
	blk_queue_write_cache(q, ll->write_cache, false);
	if (ll->rotational)
		blk_queue_flag_clear(QUEUE_FLAG_NONROT, q);
	else
		blk_queue_flag_set(QUEUE_FLAG_NONROT, q);
	return 0;
}

/*
 * 6.1 has no safe way to change limits under a live queue (no
 * limits_lock; the discard path reads them twice), and its stock driver
 * never withdraws them: requests keep failing with EOPNOTSUPP instead.
 */
static inline void loop_limits_withdraw(struct request_queue *q,
					bool discard, bool zeroes)
{
}
#endif

/*
 * Bump the disk sequence number (and invalidate the page cache). 6.1's
 * disk_force_media_change() also asks for a partition rescan at the next
 * open (GD_NEED_PART_SCAN), which 6.12 no longer does: a scan that an
 * opener such as udev's blkid would run while the attach scans too, making
 * the partitions disappear and reappear. We scan explicitly when we mean
 * to, so the request is withdrawn (see loop_new_diskseq() for the lock).
 */
static inline void loop_force_media_change(struct gendisk *disk)
{
#ifdef LOOP_HAVE_MEDIA_CHANGE_EVENTS
	disk_force_media_change(disk, DISK_EVENT_MEDIA_CHANGE);
#else
	disk_force_media_change(disk);
#endif
	clear_bit(GD_NEED_PART_SCAN, &disk->state);
}

static inline int loop_prepare_to_claim(struct block_device *bdev,
					void *holder)
{
#ifdef LOOP_HAVE_CLAIM_HOPS
	return bd_prepare_to_claim(bdev, holder, NULL);
#else
	return bd_prepare_to_claim(bdev, holder);
#endif
}

/* The page cache of a block device. */
static inline struct address_space *loop_bdev_mapping(struct block_device *bdev)
{
#ifdef LOOP_HAVE_BD_MAPPING
	return bdev->bd_mapping;
#else
	return bdev->bd_inode->i_mapping;
#endif
}

/* The partition number of @bdev, 0 for the whole disk. */
static inline u8 loop_bdev_partno(const struct block_device *bdev)
{
#ifdef LOOP_HAVE_BDEV_PARTNO
	return bdev_partno(bdev);
#else
	return bdev->bd_partno;
#endif
}

/* Do buffered writes to @file honour IOCB_NOWAIT (6.12: a f_op flag)? */
static inline bool loop_nowait_buffered_write(const struct file *file)
{
#ifdef FOP_BUFFER_WASYNC
	return file->f_op->fop_flags & FOP_BUFFER_WASYNC;
#else
	return file->f_mode & FMODE_BUF_WASYNC;
#endif
}

/*
 * Take the submitter's plug away while we issue I/O of our own, and give it
 * back. 6.12 caches a time stamp in the plug and flags the task so that
 * the scheduler clears it (PF_BLOCK_TS): drop the stamp first, or a sleep
 * without the plug would clear it through a NULL pointer.
 */
static inline struct blk_plug *loop_plug_detach(void)
{
	struct blk_plug *plug = current->plug;

#ifdef PF_BLOCK_TS
	blk_plug_invalidate_ts();
#endif
	current->plug = NULL;
	return plug;
}

/*
 * Does @plug hold requests or bios of a queue other than @q: cached for a
 * batch, queued behind ours (a plug that spans devices), or parked by a
 * driver's plug callback (md's RAID personalities, btrfs RAID5/6: those
 * run only when the plug ends, not when blk-mq flushes our requests)?
 * 6.12 keeps requests in struct rq_list; every cached request is of one
 * queue.
 */
static inline bool loop_plug_holds_others(struct blk_plug *plug,
					  const struct request_queue *q)
{
	const struct request *cached;

	if (!plug)
		return false;
	if (plug->multiple_queues || !list_empty(&plug->cb_list))
		return true;
#ifdef LOOP_HAVE_PLUG_RQ_LIST
	cached = rq_list_peek(&plug->cached_rqs);
#else
	cached = plug->cached_rq;
#endif
	return cached && cached->q != q;
}

/*
 * Tasks whose task work may run late or only when they exit: kernel
 * threads never return to user space, and user workers (io_uring's io-wq,
 * vhost; 6.1 has only the io-wq kind) run task work at their own pace.
 */
#ifdef PF_USER_WORKER
#define LOOP_PF_NO_TASK_WORK	(PF_KTHREAD | PF_USER_WORKER)
#else
#define LOOP_PF_NO_TASK_WORK	(PF_KTHREAD | PF_IO_WORKER)
#endif

/*
 * Wait until every task that ran one of our task work callbacks has
 * returned from our text, so that module exit can free it. RCU Tasks waits
 * for that (a task preempted in our code is not quiescent for it); without
 * preemption a normal grace period does. Every Debian configuration has
 * one or the other; a preemptible kernel without RCU Tasks is refused.
 */
#if IS_ENABLED(CONFIG_TASKS_RCU)
#define loop_sync_task_work()	synchronize_rcu_tasks()
#elif !IS_ENABLED(CONFIG_PREEMPTION)
#define loop_sync_task_work()	synchronize_rcu()
#else
#error "loop: a preemptible kernel needs CONFIG_TASKS_RCU"
#endif

#endif /* _LOOP_COMPAT_H */
