// SPDX-License-Identifier: GPL-2.0
/*
 * Loop block device: the lifecycle of a device.
 *
 * Attach (LOOP_CONFIGURE, LOOP_SET_FD) binds a backing file to an unbound
 * device. Detach ("the teardown", loop_rundown()) unbinds it again; it is
 * started by LOOP_CLR_FD or by the last close of a device with
 * LO_FLAGS_AUTOCLEAR.
 *
 * Starting a rundown. Both ways into LO_RUNDOWN hold the block layer's
 * disk->open_mutex and know that nobody has a partition open (the last
 * close; LOOP_CLR_FD by the sole opener of the whole device): they drop
 * every partition there and then, and suppress partition scans, so that no
 * partition can be opened, mounted or rescanned while the device runs down
 * (loop_rundown_drop_partitions()). A partition being opened at that very
 * moment may still complete its open; the I/O path refuses every request
 * through a partition that is no longer the device's.
 *
 * Where the teardown runs. The last close reaches us in ->release, with
 * disk->open_mutex held. The teardown must not run there: it takes lo_mutex
 * and open_mutex, waits for I/O, and fput()s the backing file, which may be
 * another loop device whose own release takes its own open_mutex. So
 * ->release only starts the rundown and schedules the teardown:
 *
 *  - as task work of the closing task, when that is an ordinary user task:
 *    it runs just before close() or umount() returns to user space, with
 *    no lock held. When the syscall returns, the device is unbound and the
 *    backing file released, so its filesystem can be unmounted at once (the
 *    guarantee the reverted 2021 asynchronous autoclear broke). The kernel
 *    runs pending task work before every ptrace stop, so a tracee stopped
 *    at the exit of its close() (strace) has run it already;
 *  - on loop_rundown_wq otherwise: kernel threads never return to user
 *    space, user workers (io_uring's io-wq, vhost) run task work late or
 *    only when they exit, and task_work_add() fails once an exiting task
 *    has run its last task work.
 *
 * Stacking. A backing file may be another loop device. The chain below a
 * device being attached is walked under loop_validate_mutex, which every
 * change of the chain's shape also takes: LOOP_CLR_FD (the only way a
 * device in use by a chain can leave LO_BOUND, since a device backing
 * another one is open and so never sees a last close), attach and
 * LOOP_CHANGE_FD.
 */
#include <linux/blkpg.h>
#include <linux/errseq.h>
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

void loop_set_flags(struct loop_device *lo, u32 flags)
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

/*
 * Set the capacity, with a uevent even if it did not change. Not with the
 * queue frozen: the uevent allocates memory, and reclaim may wait for I/O
 * to this very queue. May sleep.
 */
void loop_set_size(struct loop_device *lo, loff_t sectors)
{
	sector_t old = get_capacity(lo->lo_disk);

	set_capacity(lo->lo_disk, sectors);
	loop_announce_size(lo, old, sectors);
}

/*
 * Announce a capacity already set from @old to @size, as
 * set_capacity_and_notify() would (log line, and a RESIZE=1 change uevent
 * unless either size is 0), with a plain change uevent otherwise. Not with
 * the queue frozen. May sleep.
 */
void loop_announce_size(struct loop_device *lo, sector_t old, sector_t size)
{
	struct kobject *kobj = &disk_to_dev(lo->lo_disk)->kobj;

	if (old != size)
		pr_info("%s: detected capacity change from %llu to %llu\n",
			lo->lo_disk->disk_name, (unsigned long long)old,
			(unsigned long long)size);
	if (old != size && old && size)
		kobject_uevent_env(kobj, KOBJ_CHANGE,
				   (char *[]){ "RESIZE=1", NULL });
	else
		kobject_uevent(kobj, KOBJ_CHANGE);
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
 * Can the device use direct I/O on @file with logical block size @lbs at
 * byte @offset? Only if the file supports it and, when a block device is
 * under it, @lbs and @offset are multiples of that device's logical block
 * size. Decides only; does not sleep.
 */
bool loop_dio_possible(struct file *file, unsigned int lbs, loff_t offset)
{
	struct block_device *backing = loop_backing_bdev(file);
	unsigned int bsize;

	if (!(file->f_mode & FMODE_CAN_ODIRECT))
		return false;
	if (!backing)
		return true;
	bsize = bdev_logical_block_size(backing);
	return lbs >= bsize && !(offset & (bsize - 1));
}

/*
 * Switch direct I/O on or off as decided (loop_dio_possible()). The caller
 * holds lo_mutex and the queue frozen, or the device is not serving I/O;
 * before switching on it wrote back the file's page cache (vfs_fsync(),
 * outside the freeze). Does not sleep.
 */
void loop_set_dio(struct loop_device *lo, bool use_dio)
{
	u32 flags = lo->lo_flags;

	lockdep_assert_held(&lo->lo_mutex);
	lo->lo_use_dio = use_dio;
	/* Another file or another kind of I/O: worth asking again. */
	WRITE_ONCE(lo->lo_nowait_refused, false);
	WRITE_ONCE(lo->lo_tmpfs_queued, false);
	atomic_set(&lo->lo_tmpfs_overlaps, 0);
	atomic_set(&lo->lo_tmpfs_reads, 0);
	if (use_dio)
		flags |= LO_FLAGS_DIRECT_IO;
	else
		flags &= ~LO_FLAGS_DIRECT_IO;
	loop_set_flags(lo, flags);
}

/*
 * The queue limits for @file, bound read-only or not as @read_only says:
 * block size @bsize, or, if 0, the logical block size of the block device
 * under the file when direct I/O is wanted (@want_dio), else 512; discard
 * and write-zeroes through fallocate; write cache if the file can fsync.
 * Takes no lock (statfs may take filesystem locks). May sleep.
 */
int loop_compute_limits(struct file *file, unsigned int bsize, bool want_dio,
			bool read_only, struct loop_limits *ll)
{
	struct inode *inode = file->f_mapping->host;
	struct block_device *backing = loop_backing_bdev(file);
	struct kstatfs st;

	memset(ll, 0, sizeof(*ll));
	ll->block_size = bsize;
	if (!ll->block_size)
		ll->block_size = want_dio && backing ?
			bdev_logical_block_size(backing) : SECTOR_SIZE;
	if (blk_validate_block_size(ll->block_size))
		return -EINVAL;

	if (S_ISBLK(inode->i_mode)) {
		/* Discard of a block device backing is a zero-out. */
		ll->max_discard_sectors = bdev_write_zeroes_sectors(backing);
		ll->discard_granularity = bdev_discard_granularity(backing);
	} else if (file->f_op->fallocate && !vfs_statfs(&file->f_path, &st)) {
		ll->max_discard_sectors = UINT_MAX >> SECTOR_SHIFT;
		ll->discard_granularity = st.f_bsize;
	}
	if (!ll->max_discard_sectors)
		ll->discard_granularity = 0;
	ll->write_cache = file->f_op->fsync && !read_only;
	ll->rotational = backing && !bdev_nonrot(backing);
	return 0;
}

/* Set the limits of a device that is not serving I/O. May sleep. */
static int loop_set_limits(struct loop_device *lo, const struct loop_limits *ll)
{
	struct loop_limits_update u;

	loop_limits_start(loop_queue(lo), &u);
	return loop_limits_commit(loop_queue(lo), &u, ll);
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

/* A partition other than the whole device exists. */
static bool loop_has_partitions(struct gendisk *disk)
{
	unsigned long idx = 0;

	lockdep_assert_held(&disk->open_mutex);
	return xa_find_after(&disk->part_tbl, &idx, ULONG_MAX, XA_PRESENT);
}

/*
 * Drop every partition: -EBUSY if one is open (they all stay). Scans must
 * be suppressed or the capacity 0, else bdev_disk_changed() would find them
 * again. Caller holds disk->open_mutex. May sleep.
 */
static int loop_drop_partitions(struct gendisk *disk)
{
	lockdep_assert_held(&disk->open_mutex);
	if (disk->open_partitions)
		return -EBUSY;
	if (!loop_has_partitions(disk))
		return 0;
	return bdev_disk_changed(disk, false);
}

/*
 * A new disk sequence number, with the device's uevents suppressed by the
 * caller (the change uevent that announces it comes later). Under
 * disk->open_mutex if @unused (attach, teardown: no filesystem can hold
 * the device), so that no opener sees 6.1's rescan request before it is
 * withdrawn; not for LOOP_CHANGE_FD, whose device may hold a mounted
 * filesystem that the media change tells about (6.12 takes its s_umount,
 * 6.1 too, to invalidate it: not under open_mutex). Caller holds lo_mutex.
 * May sleep.
 */
static void loop_new_diskseq(struct loop_device *lo, bool unused)
{
	lockdep_assert_held(&lo->lo_mutex);
	if (unused)
		mutex_lock(&lo->lo_disk->open_mutex);
	loop_force_media_change(lo->lo_disk);
	if (unused)
		mutex_unlock(&lo->lo_disk->open_mutex);
}

/*
 * Drop the page cache of a device that has no capacity left (see the
 * teardown). A page still dirty here was written after the teardown's
 * write-back, by a write that passed the size check before the capacity
 * went to 0; it can no longer reach the file (write-back beyond the end of
 * the device is skipped on 6.1), and one added meanwhile is dropped by the next
 * attach: either way its writer's fsync() must say so (EIO), not return 0.
 * A dirty page found here marks the mapping (which only the first fsync()
 * of each descriptor hears of); for one added or dirtied during or after
 * the truncation, the flush of that fsync() fails: in rundown by
 * loop_rq_flush_in_rundown(), once unbound by state (loop_unbind_file()
 * keeps the write cache so that the flush reaches ->queue_rq). May sleep.
 */
static void loop_drop_page_cache(struct block_device *part0)
{
	struct address_space *mapping = loop_bdev_mapping(part0);
	bool lost = mapping_tagged(mapping, PAGECACHE_TAG_DIRTY);

	truncate_inode_pages(mapping, 0);
	if (lost || mapping->nrpages)
		mapping_set_error(mapping, -EIO);
}

/*
 * Write-back errors of the previous attachment are not the next one's: a
 * descriptor opened from now on must not hear of them (the block layer
 * reports an error nobody has seen yet to the next opener). Descriptors
 * open since before still do.
 */
static void loop_forget_wb_errors(struct block_device *part0)
{
	errseq_t since = 0;

	errseq_check_and_advance(&loop_bdev_mapping(part0)->wb_err, &since);
}

/* Is @file a loop device of ours, or one of its partitions? */
static bool is_loop_device(struct file *file)
{
	struct inode *inode = file->f_mapping->host;

	return inode && S_ISBLK(inode->i_mode) &&
	       loop_is_our_disk(I_BDEV(inode)->bd_disk);
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
		struct gendisk *disk = I_BDEV(f->f_mapping->host)->bd_disk;
		struct loop_device *l = disk->private_data;

		lockdep_assert_held(&loop_validate_mutex);
		/* The device itself, or one of its partitions. */
		if (disk == bdev->bd_disk)
			return -EBADF;
		/* Pairs with smp_store_release() of lo_state in attach. */
		if (smp_load_acquire(&l->lo_state) != LO_BOUND)
			return -EINVAL;
		/*
		 * LOOP_CHANGE_FD to a plain file may switch it meanwhile; both
		 * files stay open until this validation is over (it waits for
		 * loop_validate_mutex before its last fput()).
		 */
		f = READ_ONCE(l->lo_backing_file);
	}
	if (!S_ISREG(inode->i_mode) && !S_ISBLK(inode->i_mode))
		return -EINVAL;
	return 0;
}

/*
 * The file @fd that attach or LOOP_CHANGE_FD is asked to use, with a
 * reference. It must be readable through ->read_iter; one without
 * ->write_iter gives a read-only device (the caller's job), even if it was
 * opened for writing.
 */
static struct file *loop_get_backing_file(unsigned int fd)
{
	struct file *file = fget(fd);

	if (!file)
		return ERR_PTR(-EBADF);
	if (!file->f_op->read_iter) {
		fput(file);
		return ERR_PTR(-EINVAL);
	}
	return file;
}

/*
 * Take loop_validate_mutex if @global, then lo_mutex, unless a teardown is
 * pending on @lo: then -EAGAIN, with neither held (wait with
 * loop_wait_not_rundown()). Killable (-EINTR).
 */
static int loop_lock_unless_rundown(struct loop_device *lo, bool global)
{
	int err;

	if (global) {
		err = mutex_lock_killable(&loop_validate_mutex);
		if (err)
			return err;
	}
	err = mutex_lock_killable(&lo->lo_mutex);
	if (err)
		goto out_global;
	/* LOOP_CTL_REMOVE holds no open: ->release may write it. */
	if (READ_ONCE(lo->lo_state) != LO_RUNDOWN)
		return 0;
	mutex_unlock(&lo->lo_mutex);
	err = -EAGAIN;
out_global:
	if (global)
		mutex_unlock(&loop_validate_mutex);
	return err;
}

static int loop_wait_not_rundown(struct loop_device *lo)
{
	return wait_event_killable(lo->lo_state_wq,
				   READ_ONCE(lo->lo_state) != LO_RUNDOWN);
}

/* loop_lock_unless_rundown(), waiting (killably) for the teardown. */
static int loop_lock_for_binding(struct loop_device *lo, bool global)
{
	int err;

	while ((err = loop_lock_unless_rundown(lo, global)) == -EAGAIN) {
		err = loop_wait_not_rundown(lo);
		if (err)
			return err;
	}
	return err;
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
	/* Read by stacking validation without lo_mutex. */
	WRITE_ONCE(lo->lo_backing_file, file);
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
	/* sysfs reads them without lo_mutex. */
	WRITE_ONCE(lo->lo_offset, info->lo_offset);
	WRITE_ONCE(lo->lo_sizelimit, info->lo_sizelimit);
	memcpy(lo->lo_file_name, info->lo_file_name, LO_NAME_SIZE);
	lo->lo_file_name[LO_NAME_SIZE - 1] = 0;
}

/*
 * An unbound device about to be attached has no partition left: drop any
 * that one added by hand (BLKPG) since. One that is open stays, and makes
 * the device busy. A partition of the previous attachment that is still
 * open although its rundown dropped it (a descriptor that was being
 * opened at that moment) serves no I/O (loop_io.c), but keeps the block
 * layer from scanning new ones: an attach that asks for a scan is busy
 * until it is closed. Caller holds lo_mutex. May sleep.
 */
static int loop_attach_check_partitions(struct loop_device *lo, u32 flags)
{
	struct gendisk *disk = lo->lo_disk;
	int err = 0;

	lockdep_assert_held(&lo->lo_mutex);
	mutex_lock(&disk->open_mutex);
	if (loop_has_partitions(disk) || (flags & LO_FLAGS_PARTSCAN))
		err = loop_drop_partitions(disk);
	mutex_unlock(&disk->open_mutex);
	return err;
}

/*
 * Attach: bind the file @config->fd to the unbound device @lo, which the
 * caller has open as @bdev with @mode. Waits (killably) for a pending
 * teardown of @lo. The change uevent is sent after the partition scan, and
 * carries the new attachment's disk sequence number. Errors come in the
 * stock driver's order: the file, the claim, the state, the chain, then
 * the flags, the info and the block size. May sleep.
 *
 * Locks, in order: the caller's claim on @bdev (unless it opened it
 * exclusively; never held while waiting for a teardown, since other
 * claimers wait for it uninterruptibly), loop_validate_mutex if the file
 * is a loop device (from the validation of its chain until @lo is bound),
 * lo_mutex (to the end).
 */
int loop_configure(struct loop_device *lo, loop_mode_t mode,
		   struct block_device *bdev, const struct loop_config *config)
{
	struct device *ddev = disk_to_dev(lo->lo_disk);
	bool claim = !(mode & LOOP_MODE_EXCL);
	u32 flags = config->info.lo_flags;
	struct loop_limits ll;
	struct file *file;
	bool is_loop, want_dio, use_dio;
	struct pid *holder;
	int err;

	file = loop_get_backing_file(config->fd);
	if (IS_ERR(file))
		return PTR_ERR(file);
	is_loop = is_loop_device(file);

	for (;;) {
		if (claim) {
			err = loop_prepare_to_claim(bdev, loop_configure);
			if (err)
				goto out_putf;
		}
		err = loop_lock_unless_rundown(lo, is_loop);
		if (err != -EAGAIN)
			break;
		if (claim)
			bd_abort_claiming(bdev, loop_configure);
		err = loop_wait_not_rundown(lo);
		if (err)
			goto out_putf;
	}
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
	err = -EINVAL;
	if (flags & ~LOOP_CONFIGURE_SETTABLE_FLAGS)
		goto out_unlock;
	err = loop_check_info(&config->info);
	if (err)
		goto out_unlock;

	if (!(file->f_mode & FMODE_WRITE) || !(mode & LOOP_MODE_WRITE) ||
	    !file->f_op->write_iter)
		flags |= LO_FLAGS_READ_ONLY;
	if (loop_part_shift)
		flags |= LO_FLAGS_PARTSCAN;
	/* An O_DIRECT file asks for direct I/O as the flag does. */
	want_dio = (flags & LO_FLAGS_DIRECT_IO) || (file->f_flags & O_DIRECT);
	flags &= ~LO_FLAGS_DIRECT_IO;
	/* statfs, maybe fsync: before q->limits_lock. */
	err = loop_compute_limits(file, config->block_size, want_dio,
				  flags & LO_FLAGS_READ_ONLY, &ll);
	if (err)
		goto out_unlock;
	err = loop_attach_check_partitions(lo, flags);
	if (err)
		goto out_unlock;
	use_dio = want_dio && loop_dio_possible(file, ll.block_size,
						config->info.lo_offset);
	if (use_dio)
		/* Buffered data must reach the file before we bypass it. */
		vfs_fsync(file, 0);

	if (!lo->lo_workqueue) {
		lo->lo_workqueue = alloc_workqueue("loop%d",
						   WQ_UNBOUND | WQ_FREEZABLE,
						   0, lo->lo_number);
		err = -ENOMEM;
		if (!lo->lo_workqueue)
			goto out_unlock;
	}
	err = loop_set_limits(lo, &ll);
	if (err)
		goto out_unlock;
	loop_apply_info(lo, &config->info);
	loop_set_flags(lo, flags);
	loop_set_dio(lo, use_dio);
	loop_assign_backing_file(lo, file);

	/* Nothing below is announced until the final change uevent. */
	dev_set_uevent_suppress(ddev, 1);
	/* A new attachment gets a new disk sequence number. */
	loop_new_diskseq(lo, true);
	set_disk_ro(lo->lo_disk, flags & LO_FLAGS_READ_ONLY);
	/*
	 * A buffered write that passed the size check before the previous
	 * teardown set the capacity to 0 may have dirtied a page after that
	 * teardown dropped the page cache: the page belongs to no attachment
	 * and must neither show through this one nor be written to its file.
	 */
	loop_drop_page_cache(lo->lo_disk->part0);
	loop_forget_wb_errors(lo->lo_disk->part0);
	set_capacity(lo->lo_disk, loop_backing_size(lo->lo_offset,
						    lo->lo_sizelimit, file));
	loop_sysfs_init(lo);
	/* The module stays while a device is bound: dropped in teardown. */
	__module_get(THIS_MODULE);
	spin_lock(&lo->lo_state_lock);
	/* Release: lo_backing_file is visible to a validation seeing BOUND. */
	smp_store_release(&lo->lo_state, LO_BOUND);
	holder = loop_free_unhold(lo);
	spin_unlock(&lo->lo_state_lock);
	put_pid(holder);
	if (is_loop)
		mutex_unlock(&loop_validate_mutex);
	if (flags & LO_FLAGS_PARTSCAN)
		clear_bit(GD_SUPPRESS_PART_SCAN, &lo->lo_disk->state);
	/* Partitions' add uevents are sent only if the disk's are. */
	dev_set_uevent_suppress(ddev, 0);

	/*
	 * Still under lo_mutex, so that this device's uevents go out in the
	 * order of its diskseq: a detach cannot slip in before this one.
	 */
	if (flags & LO_FLAGS_PARTSCAN)
		loop_reread_partitions(lo);
	kobject_uevent(&ddev->kobj, KOBJ_CHANGE);
	mutex_unlock(&lo->lo_mutex);
	if (claim)
		bd_abort_claiming(bdev, loop_configure);
	return 0;

out_unlock:
	mutex_unlock(&lo->lo_mutex);
	if (is_loop)
		mutex_unlock(&loop_validate_mutex);
out_claim:
	if (claim)
		bd_abort_claiming(bdev, loop_configure);
out_putf:
	fput(file);
	return err;
}

/*
 * LOOP_CHANGE_FD: replace the backing file of a bound read-only device by
 * a file of the same size. The new file is checked as attach checks it.
 * May sleep.
 */
int loop_change_fd(struct loop_device *lo, struct block_device *bdev,
		   unsigned int fd)
{
	struct device *ddev = disk_to_dev(lo->lo_disk);
	struct file *file, *old_file;
	bool is_loop, use_dio;
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
	use_dio = (lo->lo_use_dio || (file->f_flags & O_DIRECT)) &&
		  loop_dio_possible(file,
				    queue_logical_block_size(loop_queue(lo)),
				    lo->lo_offset);
	if (use_dio)
		vfs_fsync(file, 0);

	dev_set_uevent_suppress(ddev, 1);
	loop_new_diskseq(lo, false);
	blk_mq_freeze_queue(loop_queue(lo));
	mapping_set_gfp_mask(old_file->f_mapping, lo->lo_old_gfp_mask);
	loop_assign_backing_file(lo, file);
	loop_set_dio(lo, use_dio);
	blk_mq_unfreeze_queue(loop_queue(lo));
	if (is_loop)
		mutex_unlock(&loop_validate_mutex);
	dev_set_uevent_suppress(ddev, 0);
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
	mutex_unlock(&lo->lo_mutex);
	if (is_loop)
		mutex_unlock(&loop_validate_mutex);
out_putf:
	fput(file);
	return err;
}

/*
 * Move a bound device to LO_RUNDOWN. Caller holds disk->open_mutex (the
 * block layer's, in ->release; LOOP_CLR_FD takes it), which serialises
 * the two ways out of LO_BOUND. Does not sleep.
 */
static void loop_set_rundown(struct loop_device *lo)
{
	lockdep_assert_held(&lo->lo_disk->open_mutex);
	spin_lock(&lo->lo_state_lock);
	WRITE_ONCE(lo->lo_state, LO_RUNDOWN);
	spin_unlock(&lo->lo_state_lock);
}

/*
 * Right after loop_set_rundown(), still under disk->open_mutex, with no
 * partition open (the last close; the sole opener of the whole device):
 * drop every partition and suppress scans, so that none exists while the
 * device runs down. May sleep.
 */
static void loop_rundown_drop_partitions(struct loop_device *lo)
{
	struct gendisk *disk = lo->lo_disk;
	int err;

	lockdep_assert_held(&disk->open_mutex);
	set_bit(GD_SUPPRESS_PART_SCAN, &disk->state);
	err = loop_drop_partitions(disk);
	/* No partition is open: -ENXIO at most, for a disk being deleted. */
	if (err && err != -ENXIO)
		pr_warn("loop%d: partitions not dropped: %d\n",
			lo->lo_number, err);
}

/*
 * Unbind the backing file and reset the configuration and limits; return
 * the file, whose reference passes to the caller. The I/O is drained.
 *
 * The write cache stays advertised: without it the block layer completes
 * a flush without asking us, and the fsync() of a writer whose page the
 * teardown could not write (see loop_drop_page_cache()) would return 0.
 * With it, ->queue_rq fails the flush of an unbound device (EIO, as stock
 * 6.12 does; stock 6.1 turns the cache off and returns 0).
 */
static struct file *loop_unbind_file(struct loop_device *lo, gfp_t *gfp)
{
	struct loop_limits ll = { .block_size = SECTOR_SIZE,
				  .write_cache = true };
	struct file *file = lo->lo_backing_file;

	lockdep_assert_held(&lo->lo_mutex);
	*gfp = lo->lo_old_gfp_mask;
	WRITE_ONCE(lo->lo_backing_file, NULL);
	lo->lo_use_dio = false;
	/* What the I/O path found unsupported was the old file's. */
	WRITE_ONCE(lo->lo_limits_pending, 0);
	loop_apply_info(lo, &(struct loop_info64){});
	loop_set_limits(lo, &ll);
	return file;
}

/*
 * The teardown. The device is in LO_RUNDOWN; no lock is held. In order:
 * write back the device's page cache (so that acknowledged buffered writes
 * reach the backing file), stop new I/O, wait for in-flight I/O, reset
 * size and limits, bump the disk sequence number, move the device to
 * @final (LO_UNBOUND, with a change uevent; or LO_DELETING when the caller
 * deletes it next), release the backing file. The partitions went when
 * the rundown began. The caller drops the module reference of the bound
 * device. May sleep.
 */
static void loop_rundown(struct loop_device *lo, enum loop_state final)
{
	struct gendisk *disk = lo->lo_disk;
	struct device *ddev = disk_to_dev(disk);
	struct file *file;
	gfp_t gfp;
	int err;

	WARN_ON_ONCE(READ_ONCE(lo->lo_state) != LO_RUNDOWN);

	sync_blockdev(disk->part0);
	/*
	 * No new buffered write from here: the block layer refuses writes
	 * beyond the end of the device (ENOSPC). Then drop the whole page
	 * cache, which would otherwise show this attachment's data through
	 * the next one (an opener may keep the device open across both).
	 * The state before the capacity: a requeued request that sees the
	 * capacity at 0 must see LO_RUNDOWN (pairs with the smp_rmb() in
	 * loop_requeued_beyond_capacity()).
	 */
	smp_wmb();
	set_capacity(disk, 0);
	loop_drop_page_cache(disk->part0);
	loop_sysfs_exit(lo);

	mutex_lock(&lo->lo_mutex);
	/* One added by hand (BLKPG) before the capacity went to 0. */
	mutex_lock(&disk->open_mutex);
	err = loop_drop_partitions(disk);
	mutex_unlock(&disk->open_mutex);
	if (err && err != -ENXIO)
		pr_warn("loop%d: partitions not dropped: %d\n",
			lo->lo_number, err);
	/*
	 * Requests may be in flight even with nobody left who has the device
	 * open (a filesystem's late writes): wait for all of them before the
	 * file goes. Not by freezing the queue, which costs an RCU grace
	 * period (milliseconds) when the queue is in use.
	 */
	loop_drain_io(lo);
	file = loop_unbind_file(lo, &gfp);

	dev_set_uevent_suppress(ddev, 1);
	loop_new_diskseq(lo, true);
	set_disk_ro(disk, false);
	dev_set_uevent_suppress(ddev, 0);
	/* Scans stay suppressed until an attach asks for them, as stock. */
	if (loop_part_shift)
		clear_bit(GD_SUPPRESS_PART_SCAN, &disk->state);
	loop_set_flags(lo, 0);
	loop_set_state(lo, final);
	/* After the state: ->queue_rq then refuses by state alone. */
	loop_end_drain(lo);
	/* Under lo_mutex: an attach cannot announce itself before this. */
	if (final == LO_UNBOUND)
		kobject_uevent(&ddev->kobj, KOBJ_CHANGE);
	mutex_unlock(&lo->lo_mutex);

	mapping_set_gfp_mask(file->f_mapping, gfp);
	fput(file);
}

/*
 * Tear the device down; with LO_FLAGS_AUTOCLEAR_DELETE, delete it after,
 * whoever else has it open or is trying to remove it: it is hidden from
 * LOOP_CTL_GET_FREE and LOOP_CTL_REMOVE first and goes from the teardown
 * straight to deletion, never back to LO_UNBOUND. May sleep.
 */
static void loop_teardown(struct loop_device *lo)
{
	bool delete = READ_ONCE(lo->lo_flags) & LO_FLAGS_AUTOCLEAR_DELETE;

	if (delete)
		loop_hide_device(lo);
	loop_rundown(lo, delete ? LO_DELETING : LO_UNBOUND);
	if (delete)
		loop_remove(lo);
}

/*
 * Teardown scheduled by the last close; see the top of this file. Last
 * thing: count the teardown out, which lets a waiting module exit go on.
 */
static void loop_rundown_after_release(struct loop_device *lo)
{
	loop_teardown(lo);
	if (atomic_dec_and_test(&loop_rundowns_pending))
		wake_up_var(&loop_rundowns_pending);
}

static void loop_rundown_task_work(struct callback_head *head)
{
	loop_rundown_after_release(container_of(head, struct loop_device,
						lo_rundown_twork));
}

static void loop_rundown_workfn(struct work_struct *work)
{
	loop_rundown_after_release(container_of(work, struct loop_device,
						lo_rundown_work));
}

/*
 * The last opener closed @lo. Called from ->release under
 * disk->open_mutex: takes lo_state_lock, and drops the partitions if the
 * device starts to run down. May sleep.
 */
void loop_release_last(struct loop_device *lo)
{
	bool rundown;

	lockdep_assert_held(&lo->lo_disk->open_mutex);
	spin_lock(&lo->lo_state_lock);
	rundown = lo->lo_state == LO_BOUND &&
		  (lo->lo_flags & LO_FLAGS_AUTOCLEAR);
	spin_unlock(&lo->lo_state_lock);
	if (!rundown)
		return;
	/* Only ->release and LOOP_CLR_FD leave LO_BOUND: both hold open_mutex. */
	loop_set_rundown(lo);
	loop_rundown_drop_partitions(lo);

	/*
	 * The closer's module reference is still held: count the teardown
	 * in, then drop the bound device's reference (see
	 * loop_rundowns_pending).
	 */
	atomic_inc(&loop_rundowns_pending);
	if (!(current->flags & LOOP_PF_NO_TASK_WORK)) {
		init_task_work(&lo->lo_rundown_twork, loop_rundown_task_work);
		if (!task_work_add(current, &lo->lo_rundown_twork, TWA_RESUME))
			goto out_put;
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
	struct gendisk *disk = lo->lo_disk;
	bool sole = false;
	int err;

	err = mutex_lock_killable(&loop_validate_mutex);
	if (err)
		return err;
	err = mutex_lock_killable(&lo->lo_mutex);
	if (err) {
		mutex_unlock(&loop_validate_mutex);
		return err;
	}
	if (lo->lo_state != LO_BOUND) {
		mutex_unlock(&loop_validate_mutex);
		err = -ENXIO;
		goto out_unlock;
	}
	mutex_lock(&disk->open_mutex);
	sole = disk_openers(disk) == 1 && !bdev_is_partition(bdev);
	if (sole) {
		loop_set_rundown(lo);
	} else {
		spin_lock(&lo->lo_state_lock);
		WRITE_ONCE(lo->lo_flags, lo->lo_flags | LO_FLAGS_AUTOCLEAR);
		spin_unlock(&lo->lo_state_lock);
	}
	/* Decided: stacking validation may go on, the partitions go now. */
	mutex_unlock(&loop_validate_mutex);
	if (sole)
		loop_rundown_drop_partitions(lo);
	mutex_unlock(&disk->open_mutex);
out_unlock:
	mutex_unlock(&lo->lo_mutex);
	if (!err && sole) {
		loop_teardown(lo);
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
 * Module exit: wait for every pending teardown (the workqueue drains on
 * destruction; the caller waits for task work callbacks to return). No new
 * teardown can be scheduled: nothing can open a device of a module going
 * away. May sleep.
 */
void loop_lifecycle_exit(void)
{
	wait_var_event(&loop_rundowns_pending,
		       !atomic_read(&loop_rundowns_pending));
	destroy_workqueue(loop_rundown_wq);
}
