// SPDX-License-Identifier: GPL-2.0
/*
 * Loop block device: the lifecycle of a device.
 *
 * Attach (LOOP_CONFIGURE, LOOP_SET_FD) binds a backing file to an unbound
 * device. Detach ("the teardown", loop_rundown()) unbinds it again; it is
 * started by LOOP_CLR_FD or by the last close of a device with
 * LO_FLAGS_AUTOCLEAR.
 *
 * Where the teardown runs. The last close reaches us in ->release, with the
 * block layer's disk->open_mutex held. The teardown must not run there: it
 * takes disk->open_mutex itself to drop partitions, waits for I/O, and
 * fput()s the backing file, which may be another loop device whose own
 * release takes its own open_mutex. So ->release only moves the device to
 * LO_RUNDOWN and schedules the teardown:
 *
 *  - as task work of the closing task, when that is a user task: it runs
 *    just before close() or umount() returns to user space, with no lock
 *    held. When the syscall returns, the device is unbound and the backing
 *    file released, so its filesystem can be unmounted at once (the
 *    guarantee the reverted 2021 asynchronous autoclear broke);
 *  - on loop_rundown_wq otherwise: kernel threads never return to user
 *    space, and task_work_add() fails once an exiting task has run its
 *    last task work.
 *
 * Stacking. A backing file may be another loop device. The chain below a
 * device being attached is walked under loop_validate_mutex, which every
 * change of the chain's shape also takes: LOOP_CLR_FD (the only way a
 * device in use by a chain can leave LO_BOUND, since a device backing
 * another one is open and so never sees a last close), attach and
 * LOOP_CHANGE_FD.
 */
#include <linux/blkpg.h>
#include <linux/file.h>
#include <linux/major.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/pagemap.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/statfs.h>
#include <linux/wait_bit.h>

#include "loop.h"

/*
 * Serialises stacking validation against changes of any device's binding
 * (attach, LOOP_CHANGE_FD, LOOP_CLR_FD). Outside lo_mutex.
 */
static DEFINE_MUTEX(loop_validate_mutex);

/* Runs teardowns that cannot run as task work. */
static struct workqueue_struct *loop_rundown_wq;

/*
 * Teardowns scheduled by ->release and not finished yet. ->release counts
 * one in while the closer still holds its module reference, and drops the
 * bound device's reference at once, so a pending teardown does not keep
 * the module: module exit waits for the count to reach zero instead of
 * rmmod failing while a teardown is pending.
 */
static atomic_t loop_rundowns_pending = ATOMIC_INIT(0);

/*
 * A task-work teardown that has counted itself out still has to return
 * through our text. RCU Tasks waits for that: a task preempted in our code
 * is not quiescent for it. Without preemption, a normal RCU grace period
 * does. A kernel with preemption but without RCU Tasks keeps the module
 * pinned while such a teardown is pending.
 */
#if IS_ENABLED(CONFIG_TASKS_RCU)
#define LOOP_TASK_WORK_PINS_MODULE	false
#define loop_sync_task_work()		synchronize_rcu_tasks()
#elif !IS_ENABLED(CONFIG_PREEMPTION)
#define LOOP_TASK_WORK_PINS_MODULE	false
#define loop_sync_task_work()		synchronize_rcu()
#else
#define LOOP_TASK_WORK_PINS_MODULE	true
#define loop_sync_task_work()		do { } while (0)
#endif

/* Set lo_state; see struct loop_device for the rule. May sleep. */
void loop_set_state(struct loop_device *lo, enum loop_state state)
{
	lockdep_assert_held(&lo->lo_mutex);
	spin_lock(&lo->lo_state_lock);
	WRITE_ONCE(lo->lo_state, state);
	spin_unlock(&lo->lo_state_lock);
	if (state != LO_RUNDOWN)
		wake_up_all(&lo->lo_state_wq);
}

static void loop_set_flags(struct loop_device *lo, u32 flags)
{
	lockdep_assert_held(&lo->lo_mutex);
	spin_lock(&lo->lo_state_lock);
	WRITE_ONCE(lo->lo_flags, flags);
	spin_unlock(&lo->lo_state_lock);
}

/* Size in 512-byte sectors of a device over @file. Does not sleep. */
loff_t loop_backing_size(loff_t offset, loff_t sizelimit, struct file *file)
{
	loff_t size = i_size_read(file->f_mapping->host);

	if (offset > 0)
		size -= offset;
	if (size < 0)
		return 0;
	if (sizelimit > 0 && sizelimit < size)
		size = sizelimit;
	return size >> SECTOR_SHIFT;
}

/* Set the capacity, with a uevent even if it did not change. May sleep. */
void loop_set_size(struct loop_device *lo, loff_t sectors)
{
	if (!set_capacity_and_notify(lo->lo_disk, sectors))
		kobject_uevent(&disk_to_dev(lo->lo_disk)->kobj, KOBJ_CHANGE);
}

/* Block device under the backing file, if any. */
static struct block_device *loop_backing_bdev(struct file *file)
{
	struct inode *inode = file->f_mapping->host;

	if (S_ISBLK(inode->i_mode))
		return I_BDEV(inode);
	return inode->i_sb->s_bdev;
}

/*
 * Switch direct I/O to the backing file on or off. Direct I/O is used only
 * when the file supports it and the offset and block size are multiples of
 * the backing device's logical block size. Caller holds lo_mutex and has
 * the queue frozen or the device not yet bound. May sleep.
 */
void loop_update_dio(struct loop_device *lo, bool want_dio)
{
	struct file *file = lo->lo_backing_file;
	struct block_device *backing = loop_backing_bdev(file);
	bool use_dio = want_dio && (file->f_mode & FMODE_CAN_ODIRECT);
	u32 flags = lo->lo_flags;

	lockdep_assert_held(&lo->lo_mutex);
	if (use_dio && backing) {
		unsigned int bsize = bdev_logical_block_size(backing);

		if (queue_logical_block_size(lo->lo_queue) < bsize ||
		    (lo->lo_offset & (bsize - 1)))
			use_dio = false;
	}
	if (lo->lo_use_dio != use_dio) {
		/* Buffered data must reach the file before bypassing it. */
		vfs_fsync(file, 0);
		lo->lo_use_dio = use_dio;
	}
	if (use_dio)
		flags |= LO_FLAGS_DIRECT_IO;
	else
		flags &= ~LO_FLAGS_DIRECT_IO;
	loop_set_flags(lo, flags);
}

/*
 * Set the queue limits for the bound backing file: block size @bsize (0:
 * the backing device's for direct I/O, else 512), discard and write-zeroes
 * through fallocate, write cache if the file can fsync. May sleep.
 */
int loop_update_limits(struct loop_device *lo, unsigned int bsize)
{
	struct file *file = lo->lo_backing_file;
	struct inode *inode = file->f_mapping->host;
	struct block_device *backing = loop_backing_bdev(file);
	struct loop_limits ll = { .block_size = bsize };
	struct kstatfs st;

	if (!ll.block_size)
		ll.block_size = (lo->lo_flags & LO_FLAGS_DIRECT_IO) && backing ?
			bdev_logical_block_size(backing) : SECTOR_SIZE;
	if (blk_validate_block_size(ll.block_size))
		return -EINVAL;

	if (S_ISBLK(inode->i_mode)) {
		/* Discard of a block device backing is a zero-out. */
		ll.max_discard_sectors = bdev_write_zeroes_sectors(backing);
		ll.discard_granularity = bdev_discard_granularity(backing);
	} else if (file->f_op->fallocate && !vfs_statfs(&file->f_path, &st)) {
		ll.max_discard_sectors = UINT_MAX >> SECTOR_SHIFT;
		ll.discard_granularity = st.f_bsize;
	}
	if (!ll.max_discard_sectors)
		ll.discard_granularity = 0;
	ll.write_cache = file->f_op->fsync &&
			 !(lo->lo_flags & LO_FLAGS_READ_ONLY);
	ll.rotational = backing && !bdev_nonrot(backing);
	return loop_apply_limits(lo->lo_queue, &ll);
}

/* Rescan partitions. Caller holds no block-layer lock. May sleep. */
void loop_reread_partitions(struct loop_device *lo)
{
	int err;

	mutex_lock(&lo->lo_disk->open_mutex);
	err = bdev_disk_changed(lo->lo_disk, false);
	mutex_unlock(&lo->lo_disk->open_mutex);
	if (err)
		pr_warn("loop%d: partition scan failed: %d\n",
			lo->lo_number, err);
}

static bool is_loop_device(struct file *file)
{
	struct inode *inode = file->f_mapping->host;

	return inode && S_ISBLK(inode->i_mode) &&
	       imajor(inode) == LOOP_MAJOR;
}

/*
 * Check that @file may back the device @bdev: a regular file or a block
 * device, and not a chain of loop devices that leads back to @bdev or
 * through a device that is not bound. Returns 0, -EBADF for a cycle,
 * -EINVAL otherwise.
 */
static int loop_validate_file(struct file *file, struct block_device *bdev)
{
	struct inode *inode = file->f_mapping->host;
	struct file *f = file;

	while (is_loop_device(f)) {
		struct loop_device *l;

		lockdep_assert_held(&loop_validate_mutex);
		if (f->f_mapping->host->i_rdev == bdev->bd_dev)
			return -EBADF;
		l = I_BDEV(f->f_mapping->host)->bd_disk->private_data;
		/* Pairs with smp_store_release() of lo_state in attach. */
		if (smp_load_acquire(&l->lo_state) != LO_BOUND)
			return -EINVAL;
		f = l->lo_backing_file;
	}
	if (!S_ISREG(inode->i_mode) && !S_ISBLK(inode->i_mode))
		return -EINVAL;
	return 0;
}

/*
 * The file @fd that attach or LOOP_CHANGE_FD is asked to use, with a
 * reference: it must read, and write too if it was opened for writing.
 */
static struct file *loop_get_backing_file(unsigned int fd)
{
	struct file *file = fget(fd);

	if (!file)
		return ERR_PTR(-EBADF);
	if (!file->f_op->read_iter ||
	    ((file->f_mode & FMODE_WRITE) && !file->f_op->write_iter)) {
		fput(file);
		return ERR_PTR(-EINVAL);
	}
	return file;
}

/* Take loop_validate_mutex if @global, then lo_mutex; killable. */
static int loop_lock(struct loop_device *lo, bool global)
{
	int err;

	if (global) {
		err = mutex_lock_killable(&loop_validate_mutex);
		if (err)
			return err;
	}
	err = mutex_lock_killable(&lo->lo_mutex);
	if (err && global)
		mutex_unlock(&loop_validate_mutex);
	return err;
}

static void loop_unlock(struct loop_device *lo, bool global)
{
	mutex_unlock(&lo->lo_mutex);
	if (global)
		mutex_unlock(&loop_validate_mutex);
}

/* loop_lock(), once no teardown is pending on @lo. */
static int loop_lock_for_binding(struct loop_device *lo, bool global)
{
	int err;

	for (;;) {
		err = loop_lock(lo, global);
		if (err)
			return err;
		if (lo->lo_state != LO_RUNDOWN)
			return 0;
		loop_unlock(lo, global);
		err = wait_event_killable(lo->lo_state_wq,
					  READ_ONCE(lo->lo_state) != LO_RUNDOWN);
		if (err)
			return err;
	}
}

/*
 * Take lo_mutex once no teardown is pending on @lo. Returns 0 with lo_mutex
 * held, or -EINTR if a fatal signal arrived while waiting. May sleep.
 */
int loop_wait_rundown(struct loop_device *lo)
{
	return loop_lock_for_binding(lo, false);
}

/* Make @file the backing file, keeping its page cache out of our I/O. */
static void loop_assign_backing_file(struct loop_device *lo, struct file *file)
{
	lo->lo_backing_file = file;
	lo->lo_old_gfp_mask = mapping_gfp_mask(file->f_mapping);
	mapping_set_gfp_mask(file->f_mapping,
			     lo->lo_old_gfp_mask & ~(__GFP_IO | __GFP_FS));
}

/*
 * Check a loop_info64 that LOOP_CONFIGURE or LOOP_SET_STATUS passes in.
 * Does not sleep.
 */
int loop_check_info(const struct loop_info64 *info)
{
	if (info->lo_encrypt_key_size > LO_KEY_SIZE)
		return -EINVAL;
	if (info->lo_encrypt_type != LO_CRYPT_NONE)
		return -EINVAL;
	if (info->lo_offset > LLONG_MAX || info->lo_sizelimit > LLONG_MAX)
		return -EOVERFLOW;
	return 0;
}

/* Copy offset, size limit and name from @info. Caller holds lo_mutex. */
void loop_apply_info(struct loop_device *lo, const struct loop_info64 *info)
{
	lockdep_assert_held(&lo->lo_mutex);
	lo->lo_offset = info->lo_offset;
	lo->lo_sizelimit = info->lo_sizelimit;
	memcpy(lo->lo_file_name, info->lo_file_name, LO_NAME_SIZE);
	lo->lo_file_name[LO_NAME_SIZE - 1] = 0;
}

/*
 * Attach: bind the file @config->fd to the unbound device @lo, which the
 * caller has open as @bdev with @mode. Waits (killably) for a pending
 * teardown of @lo. The change uevent is sent after the partition scan, and
 * carries the new attachment's disk sequence number. May sleep.
 */
int loop_configure(struct loop_device *lo, loop_mode_t mode,
		   struct block_device *bdev, const struct loop_config *config)
{
	struct device *ddev = disk_to_dev(lo->lo_disk);
	u32 flags = config->info.lo_flags;
	struct file *file;
	bool is_loop;
	int err;

	if (flags & ~LOOP_CONFIGURE_SETTABLE_FLAGS)
		return -EINVAL;
	if (config->block_size && blk_validate_block_size(config->block_size))
		return -EINVAL;
	err = loop_check_info(&config->info);
	if (err)
		return err;

	file = loop_get_backing_file(config->fd);
	if (IS_ERR(file))
		return PTR_ERR(file);
	is_loop = is_loop_device(file);

	/* Without an exclusive open, claim the device for the attach. */
	if (!(mode & LOOP_MODE_EXCL)) {
		err = loop_prepare_to_claim(bdev, loop_configure);
		if (err)
			goto out_putf;
	}
	err = loop_lock_for_binding(lo, is_loop);
	if (err)
		goto out_claim;
	if (lo->lo_state != LO_UNBOUND) {
		/* A device removed by autoclear-delete is gone, not busy. */
		err = lo->lo_state == LO_DELETING ? -ENXIO : -EBUSY;
		goto out_unlock;
	}
	err = loop_validate_file(file, bdev);
	if (err)
		goto out_unlock;

	if (!lo->lo_workqueue) {
		lo->lo_workqueue = alloc_workqueue("loop%d",
						   WQ_UNBOUND | WQ_FREEZABLE,
						   0, lo->lo_number);
		err = -ENOMEM;
		if (!lo->lo_workqueue)
			goto out_unlock;
	}

	if (!(file->f_mode & FMODE_WRITE) || !(mode & LOOP_MODE_WRITE) ||
	    !file->f_op->write_iter)
		flags |= LO_FLAGS_READ_ONLY;
	if (loop_part_shift)
		flags |= LO_FLAGS_PARTSCAN;
	loop_apply_info(lo, &config->info);
	/* DIRECT_IO is a request here: loop_update_dio() settles it below. */
	loop_set_flags(lo, flags);
	loop_assign_backing_file(lo, file);

	/* Nothing below is announced until the final change uevent. */
	dev_set_uevent_suppress(ddev, 1);
	/* A new attachment gets a new disk sequence number. */
	loop_force_media_change(lo->lo_disk);
	set_disk_ro(lo->lo_disk, flags & LO_FLAGS_READ_ONLY);
	err = loop_update_limits(lo, config->block_size);
	if (err)
		goto out_unbind;
	loop_update_dio(lo, (flags & LO_FLAGS_DIRECT_IO) ||
			(file->f_flags & O_DIRECT));
	/*
	 * A buffered write that passed the size check before the previous
	 * teardown set the capacity to 0 may have dirtied a page after that
	 * teardown dropped the page cache: the page belongs to no attachment
	 * and must neither show through this one nor be written to its file.
	 */
	truncate_inode_pages(loop_bdev_mapping(lo->lo_disk->part0), 0);
	loop_set_size(lo, loop_backing_size(lo->lo_offset, lo->lo_sizelimit,
					    file));
	loop_sysfs_init(lo);
	/* The module stays while a device is bound: dropped in teardown. */
	__module_get(THIS_MODULE);
	spin_lock(&lo->lo_state_lock);
	/* Release: lo_backing_file is visible to a validation seeing BOUND. */
	smp_store_release(&lo->lo_state, LO_BOUND);
	spin_unlock(&lo->lo_state_lock);
	if (flags & LO_FLAGS_PARTSCAN)
		clear_bit(GD_SUPPRESS_PART_SCAN, &lo->lo_disk->state);
	dev_set_uevent_suppress(ddev, 0);
	if (is_loop)
		mutex_unlock(&loop_validate_mutex);

	/*
	 * Still under lo_mutex, so that this device's uevents go out in the
	 * order of its diskseq: a detach cannot slip in before this one.
	 */
	if (flags & LO_FLAGS_PARTSCAN)
		loop_reread_partitions(lo);
	kobject_uevent(&ddev->kobj, KOBJ_CHANGE);
	mutex_unlock(&lo->lo_mutex);
	if (!(mode & LOOP_MODE_EXCL))
		bd_abort_claiming(bdev, loop_configure);
	return 0;

out_unbind:
	set_disk_ro(lo->lo_disk, false);
	dev_set_uevent_suppress(ddev, 0);
	mapping_set_gfp_mask(file->f_mapping, lo->lo_old_gfp_mask);
	lo->lo_backing_file = NULL;
	loop_apply_info(lo, &(struct loop_info64){});
	loop_set_flags(lo, 0);
out_unlock:
	loop_unlock(lo, is_loop);
out_claim:
	if (!(mode & LOOP_MODE_EXCL))
		bd_abort_claiming(bdev, loop_configure);
out_putf:
	fput(file);
	return err;
}

/*
 * LOOP_CHANGE_FD: replace the backing file of a bound read-only device by
 * a file of the same size. May sleep.
 */
int loop_change_fd(struct loop_device *lo, struct block_device *bdev,
		   unsigned int fd)
{
	struct device *ddev = disk_to_dev(lo->lo_disk);
	struct file *file, *old_file;
	bool is_loop;
	int err;

	file = loop_get_backing_file(fd);
	if (IS_ERR(file))
		return PTR_ERR(file);
	is_loop = is_loop_device(file);
	err = loop_lock_for_binding(lo, is_loop);
	if (err)
		goto out_putf;
	err = -ENXIO;
	if (lo->lo_state != LO_BOUND)
		goto out_unlock;
	err = -EINVAL;
	if (!(lo->lo_flags & LO_FLAGS_READ_ONLY))
		goto out_unlock;
	err = loop_validate_file(file, bdev);
	if (err)
		goto out_unlock;
	old_file = lo->lo_backing_file;
	err = -EINVAL;
	if (loop_backing_size(lo->lo_offset, lo->lo_sizelimit, file) !=
	    loop_backing_size(lo->lo_offset, lo->lo_sizelimit, old_file))
		goto out_unlock;

	dev_set_uevent_suppress(ddev, 1);
	loop_force_media_change(lo->lo_disk);
	blk_mq_freeze_queue(lo->lo_queue);
	mapping_set_gfp_mask(old_file->f_mapping, lo->lo_old_gfp_mask);
	loop_assign_backing_file(lo, file);
	loop_update_dio(lo, lo->lo_use_dio || (file->f_flags & O_DIRECT));
	blk_mq_unfreeze_queue(lo->lo_queue);
	dev_set_uevent_suppress(ddev, 0);
	if (is_loop)
		mutex_unlock(&loop_validate_mutex);
	if (lo->lo_flags & LO_FLAGS_PARTSCAN)
		loop_reread_partitions(lo);
	kobject_uevent(&ddev->kobj, KOBJ_CHANGE);
	mutex_unlock(&lo->lo_mutex);

	/*
	 * A validation that started before we took loop_validate_mutex may
	 * still be looking at old_file: let it finish before the last fput.
	 */
	if (!is_loop) {
		mutex_lock(&loop_validate_mutex);
		mutex_unlock(&loop_validate_mutex);
	}
	fput(old_file);
	return 0;

out_unlock:
	loop_unlock(lo, is_loop);
out_putf:
	fput(file);
	return err;
}

/*
 * Unbind the backing file and reset the configuration and limits; return
 * the file, whose reference passes to the caller. Either the I/O is
 * drained or nobody has the device open (see loop_rundown()).
 */
static struct file *loop_unbind_file(struct loop_device *lo, gfp_t *gfp)
{
	struct loop_limits ll = { .block_size = SECTOR_SIZE };
	struct file *file = lo->lo_backing_file;

	lockdep_assert_held(&lo->lo_mutex);
	*gfp = lo->lo_old_gfp_mask;
	lo->lo_backing_file = NULL;
	lo->lo_use_dio = false;
	loop_apply_info(lo, &(struct loop_info64){});
	loop_apply_limits(lo->lo_queue, &ll);
	return file;
}

/* A partition other than the whole device exists. */
static bool loop_has_partitions(struct gendisk *disk)
{
	unsigned long idx = 0;

	lockdep_assert_held(&disk->open_mutex);
	return xa_find_after(&disk->part_tbl, &idx, ULONG_MAX, XA_PRESENT);
}

/*
 * The teardown. The device is in LO_RUNDOWN; no lock is held. In order:
 * write back the device's page cache (so that acknowledged buffered writes
 * reach the backing file), stop new I/O, drop every partition
 * synchronously, wait for in-flight I/O, reset size and limits, bump the
 * disk sequence number, move the device to @final (LO_UNBOUND, with a
 * change uevent; or LO_DELETING when the caller deletes it next), release
 * the backing file. The caller drops the module reference of the bound
 * device. May sleep.
 */
static void loop_rundown(struct loop_device *lo, enum loop_state final)
{
	struct gendisk *disk = lo->lo_disk;
	struct device *ddev = disk_to_dev(disk);
	struct file *file;
	bool opened;
	gfp_t gfp;
	int err;

	WARN_ON_ONCE(READ_ONCE(lo->lo_state) != LO_RUNDOWN);

	sync_blockdev(disk->part0);
	/*
	 * No new I/O past this point: the block layer checks capacity. A
	 * buffered write that raced in after the sync cannot reach the file
	 * any more: writing it back fails, and fsync() reports that to its
	 * writer, or stays dirty beyond the new end of the device. Then drop
	 * the whole page cache, dirty or not, which would otherwise show this
	 * attachment's data through the next one (an opener may keep the
	 * device open across both).
	 */
	set_capacity(disk, 0);
	sync_blockdev(disk->part0);
	truncate_inode_pages(loop_bdev_mapping(disk->part0), 0);
	loop_sysfs_exit(lo);

	mutex_lock(&lo->lo_mutex);
	mutex_lock(&disk->open_mutex);
	if (loop_has_partitions(disk)) {
		err = bdev_disk_changed(disk, false);
		if (err)
			pr_warn("loop%d: partitions not dropped: %d\n",
				lo->lo_number, err);
	}
	/*
	 * Nobody has the device open (the usual last close of autoclear):
	 * nothing can be in flight. The block layer wrote back and dropped
	 * the page cache at that close, and so did we above, waiting for
	 * every page under I/O; a direct or asynchronous request holds an
	 * open file until it completes; and no new opener can come in while
	 * we hold open_mutex. Unbind at once, as the stock driver does.
	 */
	opened = disk_openers(disk);
	if (!opened)
		file = loop_unbind_file(lo, &gfp);
	mutex_unlock(&disk->open_mutex);
	if (opened) {
		/*
		 * Somebody has it open and may have I/O in flight: wait for
		 * it. Not by freezing the queue, which costs an RCU grace
		 * period (milliseconds) when the queue is in use.
		 */
		loop_drain_io(lo);
		file = loop_unbind_file(lo, &gfp);
		loop_end_drain(lo);
	}

	dev_set_uevent_suppress(ddev, 1);
	loop_force_media_change(disk);
	set_disk_ro(disk, false);
	dev_set_uevent_suppress(ddev, 0);
	if (!loop_part_shift)
		set_bit(GD_SUPPRESS_PART_SCAN, &disk->state);
	loop_set_flags(lo, 0);
	loop_set_state(lo, final);
	/* Under lo_mutex: an attach cannot announce itself before this. */
	if (final == LO_UNBOUND)
		kobject_uevent(&ddev->kobj, KOBJ_CHANGE);
	mutex_unlock(&lo->lo_mutex);

	mapping_set_gfp_mask(file->f_mapping, gfp);
	fput(file);
}

/*
 * Teardown scheduled by the last close; see the top of this file. With
 * LO_FLAGS_AUTOCLEAR_DELETE the device is hidden from LOOP_CTL_GET_FREE
 * before it stops being in rundown, and goes from the teardown straight to
 * deletion: nobody can be handed a device that is about to disappear, and
 * an opener that came in meanwhile (a prober) does not keep it. Last
 * thing: count the teardown out, which lets a waiting module exit go on.
 */
static void loop_rundown_after_release(struct loop_device *lo)
{
	bool delete = (READ_ONCE(lo->lo_flags) & LO_FLAGS_AUTOCLEAR_DELETE) &&
		      loop_claim_device(lo);

	loop_rundown(lo, delete ? LO_DELETING : LO_UNBOUND);
	if (delete)
		loop_remove(lo);
	if (atomic_dec_and_test(&loop_rundowns_pending))
		wake_up_var(&loop_rundowns_pending);
}

static void loop_rundown_task_work(struct callback_head *head)
{
	loop_rundown_after_release(container_of(head, struct loop_device,
						lo_rundown_twork));
	if (LOOP_TASK_WORK_PINS_MODULE)
		module_put(THIS_MODULE);
}

static void loop_rundown_workfn(struct work_struct *work)
{
	loop_rundown_after_release(container_of(work, struct loop_device,
						lo_rundown_work));
}

/*
 * The last opener closed @lo. Called from ->release under
 * disk->open_mutex: takes lo_state_lock only. Does not sleep.
 */
void loop_release_last(struct loop_device *lo)
{
	bool rundown = false;

	spin_lock(&lo->lo_state_lock);
	if (lo->lo_state == LO_BOUND && (lo->lo_flags & LO_FLAGS_AUTOCLEAR)) {
		WRITE_ONCE(lo->lo_state, LO_RUNDOWN);
		rundown = true;
	}
	spin_unlock(&lo->lo_state_lock);
	if (!rundown)
		return;

	/*
	 * The closer's module reference is still held: count the teardown
	 * in, then drop the bound device's reference (see
	 * loop_rundowns_pending).
	 */
	atomic_inc(&loop_rundowns_pending);
	if (!(current->flags & PF_KTHREAD)) {
		init_task_work(&lo->lo_rundown_twork, loop_rundown_task_work);
		if (LOOP_TASK_WORK_PINS_MODULE)
			__module_get(THIS_MODULE);
		if (!task_work_add(current, &lo->lo_rundown_twork, TWA_RESUME))
			goto out_put;
		if (LOOP_TASK_WORK_PINS_MODULE)
			module_put(THIS_MODULE);
	}
	/* Shares its storage with the task work: set it up now. */
	INIT_WORK(&lo->lo_rundown_work, loop_rundown_workfn);
	queue_work(loop_rundown_wq, &lo->lo_rundown_work);
out_put:
	module_put(THIS_MODULE);
}

/*
 * LOOP_CLR_FD. Under loop_validate_mutex, so that no attach can validate a
 * chain through @lo while we decide, and under disk->open_mutex, so that no
 * open can slip in between the check and the state change: if the caller
 * (through the whole device @bdev) is the only opener, tear down now,
 * before returning; else mark the device for autoclear at the last close.
 * May sleep.
 */
int loop_clr_fd(struct loop_device *lo, struct block_device *bdev)
{
	bool sole = false;
	int err;

	err = loop_lock(lo, true);
	if (err)
		return err;
	if (lo->lo_state != LO_BOUND) {
		err = -ENXIO;
		goto out_unlock;
	}
	mutex_lock(&lo->lo_disk->open_mutex);
	sole = disk_openers(lo->lo_disk) == 1 && !bdev_is_partition(bdev);
	spin_lock(&lo->lo_state_lock);
	if (sole)
		WRITE_ONCE(lo->lo_state, LO_RUNDOWN);
	else
		WRITE_ONCE(lo->lo_flags, lo->lo_flags | LO_FLAGS_AUTOCLEAR);
	spin_unlock(&lo->lo_state_lock);
	mutex_unlock(&lo->lo_disk->open_mutex);
out_unlock:
	loop_unlock(lo, true);
	if (!err && sole) {
		loop_rundown(lo, LO_UNBOUND);
		/* The caller's open keeps the module. */
		module_put(THIS_MODULE);
	}
	return err;
}

int __init loop_lifecycle_init(void)
{
	loop_rundown_wq = alloc_workqueue("loop_rundown", WQ_UNBOUND, 0);
	return loop_rundown_wq ? 0 : -ENOMEM;
}

/*
 * Module exit: wait for every pending teardown, then for their callbacks
 * to have returned (the workqueue drains on destruction). No new teardown
 * can be scheduled: nothing can open a device of a module going away.
 * May sleep.
 */
void loop_lifecycle_exit(void)
{
	wait_var_event(&loop_rundowns_pending,
		       !atomic_read(&loop_rundowns_pending));
	destroy_workqueue(loop_rundown_wq);
	loop_sync_task_work();
}
