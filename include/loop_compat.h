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
 */
#ifndef _LOOP_COMPAT_H
#define _LOOP_COMPAT_H

#include <linux/blk-mq.h>
#include <linux/blkdev.h>

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

#ifdef LOOP_HAVE_QUEUE_LIMITS_UPDATE
static inline struct gendisk *loop_alloc_disk(struct blk_mq_tag_set *set,
					      void *data)
{
	struct queue_limits lim = { .max_hw_sectors = LOOP_MAX_HW_SECTORS };

	return blk_mq_alloc_disk(set, &lim, data);
}

static inline int loop_apply_limits(struct request_queue *q,
				    const struct loop_limits *ll)
{
	struct queue_limits lim = queue_limits_start_update(q);

	lim.logical_block_size = ll->block_size;
	lim.physical_block_size = ll->block_size;
	lim.io_min = ll->block_size;
	lim.max_hw_discard_sectors = ll->max_discard_sectors;
	lim.max_write_zeroes_sectors = ll->max_discard_sectors;
	lim.discard_granularity = ll->discard_granularity;
	lim.features &= ~(BLK_FEAT_WRITE_CACHE | BLK_FEAT_ROTATIONAL);
	if (ll->write_cache)
		lim.features |= BLK_FEAT_WRITE_CACHE;
	if (ll->rotational)
		lim.features |= BLK_FEAT_ROTATIONAL;
	return queue_limits_commit_update(q, &lim);
}

static inline void loop_disable_discard(struct request_queue *q, bool zeroes)
{
	struct queue_limits lim = queue_limits_start_update(q);

	if (zeroes) {
		lim.max_write_zeroes_sectors = 0;
	} else {
		lim.max_hw_discard_sectors = 0;
		lim.discard_granularity = 0;
	}
	queue_limits_commit_update(q, &lim);
}
#else
static inline struct gendisk *loop_alloc_disk(struct blk_mq_tag_set *set,
					      void *data)
{
	struct gendisk *disk = blk_mq_alloc_disk(set, data);

	if (!IS_ERR(disk))
		blk_queue_max_hw_sectors(disk->queue, LOOP_MAX_HW_SECTORS);
	return disk;
}

static inline int loop_apply_limits(struct request_queue *q,
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

static inline void loop_disable_discard(struct request_queue *q, bool zeroes)
{
	if (zeroes) {
		blk_queue_max_write_zeroes_sectors(q, 0);
	} else {
		blk_queue_max_discard_sectors(q, 0);
		q->limits.discard_granularity = 0;
	}
}
#endif

/* Bump the disk sequence number (and invalidate the page cache). */
static inline void loop_force_media_change(struct gendisk *disk)
{
#ifdef LOOP_HAVE_MEDIA_CHANGE_EVENTS
	disk_force_media_change(disk, DISK_EVENT_MEDIA_CHANGE);
#else
	disk_force_media_change(disk);
#endif
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

#endif /* _LOOP_COMPAT_H */
