// SPDX-License-Identifier: GPL-2.0
/*
 * Loop block device: the ioctl surface of /dev/loopN, its 32-bit compat
 * forms, and the sysfs attributes under /sys/block/loopN/loop/.
 *
 * Permissions are those of the stock driver: changing the status, block
 * size, capacity or direct I/O mode needs a writable open or
 * CAP_SYS_ADMIN; attach, detach and LOOP_CHANGE_FD need an open device
 * (whose node is root's); reading the status needs an open device.
 */
#include <linux/capability.h>
#include <linux/compat.h>
#include <linux/file.h>
#include <linux/kdev_t.h>
#include <linux/stat.h>
#include <linux/sysfs.h>
#include <linux/uaccess.h>

#include "loop.h"

/* Take lo_mutex and check that the device is bound. */
static int loop_lock_bound(struct loop_device *lo)
{
	int err = mutex_lock_killable(&lo->lo_mutex);

	if (err)
		return err;
	if (lo->lo_state != LO_BOUND) {
		mutex_unlock(&lo->lo_mutex);
		return -ENXIO;
	}
	return 0;
}

/*
 * LOOP_SET_STATUS(64): change offset, size limit, name and the settable
 * flags of a bound device. Unknown flags are ignored, as with stock. A new
 * offset or size limit is refused (EBUSY) while somebody else has the
 * device open exclusively, a mounted filesystem most likely: its data would
 * move under it. Other changes are not (systemd sets LO_FLAGS_AUTOCLEAR on
 * mounted devices). May sleep.
 */
static int loop_set_status(struct loop_device *lo, loop_mode_t mode,
			   struct block_device *bdev,
			   const struct loop_info64 *info)
{
	struct block_device *part0 = lo->lo_disk->part0;
	bool claimed = false, resize, use_dio;
	sector_t old_size = 0, size = 0;
	u32 old_flags, flags;
	int err;

	err = loop_check_info(info);
	if (err)
		return err;
relock:
	err = loop_lock_bound(lo);
	if (err)
		goto out_claim;
	resize = lo->lo_offset != info->lo_offset ||
		 lo->lo_sizelimit != info->lo_sizelimit;
	if (resize && !claimed && !(mode & LOOP_MODE_EXCL)) {
		/* The claim comes before lo_mutex, as in attach. */
		mutex_unlock(&lo->lo_mutex);
		err = loop_prepare_to_claim(bdev, loop_set_status);
		if (err)
			return err;
		claimed = true;
		goto relock;
	}

	if (resize) {
		/* Cached blocks are at the old offset: write and drop them. */
		sync_blockdev(part0);
		invalidate_bdev(part0);
	}
	/* A new offset may rule direct I/O out (never in: no fsync here). */
	use_dio = lo->lo_use_dio &&
		  loop_dio_possible(lo->lo_backing_file,
				    queue_logical_block_size(loop_queue(lo)),
				    info->lo_offset);
	old_flags = lo->lo_flags;
	flags = info->lo_flags & LOOP_SET_STATUS_SETTABLE_FLAGS;
	flags |= old_flags & ~LOOP_SET_STATUS_SETTABLE_FLAGS;
	flags |= old_flags & ~LOOP_SET_STATUS_CLEARABLE_FLAGS;

	if (resize) {
		old_size = get_capacity(lo->lo_disk);
		size = loop_backing_size(info->lo_offset, info->lo_sizelimit,
					 lo->lo_backing_file);
	}

	blk_mq_freeze_queue(loop_queue(lo));
	loop_apply_info(lo, info);
	loop_set_flags(lo, flags);
	loop_set_dio(lo, use_dio);
	/* With the new offset: no request may see the old size with it. */
	if (resize)
		set_capacity(lo->lo_disk, size);
	blk_mq_unfreeze_queue(loop_queue(lo));
	/* Its uevent, though, not with the queue frozen (it allocates). */
	if (resize)
		loop_announce_size(lo, old_size, size);

	if ((flags & LO_FLAGS_PARTSCAN) && !(old_flags & LO_FLAGS_PARTSCAN)) {
		clear_bit(GD_SUPPRESS_PART_SCAN, &lo->lo_disk->state);
		loop_reread_partitions(lo);
	}
	mutex_unlock(&lo->lo_mutex);
out_claim:
	if (claimed)
		bd_abort_claiming(bdev, loop_set_status);
	return err;
}

/* LOOP_GET_STATUS(64). Every byte of @info is written. May sleep. */
static int loop_get_status(struct loop_device *lo, struct loop_info64 *info)
{
	struct kstat stat;
	struct path path;
	int err;

	err = loop_lock_bound(lo);
	if (err)
		return err;
	memset(info, 0, sizeof(*info));
	info->lo_number = lo->lo_number;
	info->lo_offset = lo->lo_offset;
	info->lo_sizelimit = lo->lo_sizelimit;
	info->lo_flags = lo->lo_flags;
	memcpy(info->lo_file_name, lo->lo_file_name, LO_NAME_SIZE);
	path = lo->lo_backing_file->f_path;
	path_get(&path);
	/* The filesystem's getattr may sleep long: not under lo_mutex. */
	mutex_unlock(&lo->lo_mutex);
	err = vfs_getattr(&path, &stat, STATX_INO, AT_STATX_SYNC_AS_STAT);
	if (!err) {
		info->lo_device = huge_encode_dev(stat.dev);
		info->lo_inode = stat.ino;
		info->lo_rdevice = huge_encode_dev(stat.rdev);
	}
	path_put(&path);
	return err;
}

/* Legacy struct loop_info to and from struct loop_info64. */
static void loop_info64_from_old(const struct loop_info *old,
				 struct loop_info64 *info)
{
	memset(info, 0, sizeof(*info));
	info->lo_number = old->lo_number;
	info->lo_device = old->lo_device;
	info->lo_inode = old->lo_inode;
	info->lo_rdevice = old->lo_rdevice;
	/*
	 * As stock: the legacy encryption fields are not carried over, and a
	 * negative offset becomes a huge one, which loop_check_info() refuses.
	 */
	info->lo_offset = (s64)old->lo_offset;
	info->lo_flags = old->lo_flags;
	memcpy(info->lo_file_name, old->lo_name, LO_NAME_SIZE);
}

static int loop_info64_to_old(const struct loop_info64 *info,
			      struct loop_info *old)
{
	memset(old, 0, sizeof(*old));
	old->lo_number = info->lo_number;
	old->lo_device = info->lo_device;
	old->lo_inode = info->lo_inode;
	old->lo_rdevice = info->lo_rdevice;
	old->lo_offset = info->lo_offset;
	old->lo_flags = info->lo_flags;
	memcpy(old->lo_name, info->lo_file_name, LO_NAME_SIZE);
	if (old->lo_device != info->lo_device ||
	    old->lo_rdevice != info->lo_rdevice ||
	    old->lo_inode != info->lo_inode ||
	    old->lo_offset != info->lo_offset)
		return -EOVERFLOW;
	return 0;
}

static int loop_set_status_old(struct loop_device *lo, loop_mode_t mode,
			       struct block_device *bdev,
			       const struct loop_info __user *arg)
{
	struct loop_info old;
	struct loop_info64 info;

	if (copy_from_user(&old, arg, sizeof(old)))
		return -EFAULT;
	loop_info64_from_old(&old, &info);
	return loop_set_status(lo, mode, bdev, &info);
}

static int loop_get_status_old(struct loop_device *lo,
			       struct loop_info __user *arg)
{
	struct loop_info64 info;
	struct loop_info old;
	int err;

	if (!arg)
		return -EINVAL;
	err = loop_get_status(lo, &info);
	if (!err)
		err = loop_info64_to_old(&info, &old);
	if (!err && copy_to_user(arg, &old, sizeof(old)))
		err = -EFAULT;
	return err;
}

static int loop_set_status64(struct loop_device *lo, loop_mode_t mode,
			     struct block_device *bdev,
			     const struct loop_info64 __user *arg)
{
	struct loop_info64 info;

	if (copy_from_user(&info, arg, sizeof(info)))
		return -EFAULT;
	return loop_set_status(lo, mode, bdev, &info);
}

static int loop_get_status64(struct loop_device *lo,
			     struct loop_info64 __user *arg)
{
	struct loop_info64 info;
	int err;

	if (!arg)
		return -EINVAL;
	err = loop_get_status(lo, &info);
	if (!err && copy_to_user(arg, &info, sizeof(info)))
		err = -EFAULT;
	return err;
}

/* LOOP_SET_CAPACITY: re-read the backing file's size. May sleep. */
static int loop_set_capacity(struct loop_device *lo)
{
	int err = loop_lock_bound(lo);

	if (err)
		return err;
	loop_set_size(lo, loop_backing_size(lo->lo_offset, lo->lo_sizelimit,
					    lo->lo_backing_file));
	mutex_unlock(&lo->lo_mutex);
	return 0;
}

/* LOOP_SET_DIRECT_IO: EINVAL if direct I/O cannot be used. May sleep. */
static int loop_set_direct_io(struct loop_device *lo, unsigned long arg)
{
	bool want = arg != 0;
	int err = loop_lock_bound(lo);

	if (err)
		return err;
	if (lo->lo_use_dio == want)
		goto out_unlock;
	err = -EINVAL;
	if (want && !loop_dio_possible(lo->lo_backing_file,
				       queue_logical_block_size(loop_queue(lo)),
				       lo->lo_offset))
		goto out_unlock;
	/* Buffered data must reach the file before we bypass it. */
	if (want)
		vfs_fsync(lo->lo_backing_file, 0);
	blk_mq_freeze_queue(loop_queue(lo));
	loop_set_dio(lo, want);
	blk_mq_unfreeze_queue(loop_queue(lo));
	err = 0;
out_unlock:
	mutex_unlock(&lo->lo_mutex);
	return err;
}

/*
 * LOOP_SET_BLOCK_SIZE: 512 to PAGE_SIZE, a power of two. The limits update
 * starts before the freeze (6.12: q->limits_lock, then freeze, as the
 * sysfs queue attributes take them). May sleep.
 */
static int loop_set_block_size(struct loop_device *lo, loop_mode_t mode,
			       struct block_device *bdev, unsigned long arg)
{
	struct block_device *part0 = lo->lo_disk->part0;
	struct request_queue *q = loop_queue(lo);
	struct loop_limits_update u;
	struct loop_limits ll;
	bool use_dio;
	int err;

	/* Without an exclusive open, claim the device for the change. */
	if (!(mode & LOOP_MODE_EXCL)) {
		err = loop_prepare_to_claim(bdev, loop_set_block_size);
		if (err)
			return err;
	}
	/* Errors in the stock driver's order: claim, state, size. */
	err = loop_lock_bound(lo);
	if (err)
		goto out_claim;
	if (queue_logical_block_size(q) == arg)
		goto out_unlock;
	err = -EINVAL;
	if (blk_validate_block_size(arg))
		goto out_unlock;
	/* statfs and fsync before limits_lock and the freeze. */
	err = loop_compute_limits(lo->lo_backing_file, arg, false,
				  lo->lo_flags & LO_FLAGS_READ_ONLY, &ll);
	if (err)
		goto out_unlock;
	use_dio = lo->lo_use_dio &&
		  loop_dio_possible(lo->lo_backing_file, arg, lo->lo_offset);
	sync_blockdev(part0);
	invalidate_bdev(part0);

	loop_limits_start(q, &u);
	blk_mq_freeze_queue(q);
	err = loop_limits_commit(q, &u, &ll);
	if (!err)
		loop_set_dio(lo, use_dio);
	blk_mq_unfreeze_queue(q);
out_unlock:
	mutex_unlock(&lo->lo_mutex);
out_claim:
	if (!(mode & LOOP_MODE_EXCL))
		bd_abort_claiming(bdev, loop_set_block_size);
	return err;
}

static bool loop_may_change(loop_mode_t mode)
{
	return (mode & LOOP_MODE_WRITE) || capable(CAP_SYS_ADMIN);
}

int lo_ioctl(struct block_device *bdev, loop_mode_t mode, unsigned int cmd,
	     unsigned long arg)
{
	struct loop_device *lo = bdev->bd_disk->private_data;
	void __user *argp = (void __user *)arg;
	struct loop_config config;

	switch (cmd) {
	case LOOP_SET_FD:
		/* LOOP_CONFIGURE with defaults: only the fd. */
		memset(&config, 0, sizeof(config));
		config.fd = arg;
		return loop_configure(lo, mode, bdev, &config);
	case LOOP_CONFIGURE:
		if (copy_from_user(&config, argp, sizeof(config)))
			return -EFAULT;
		return loop_configure(lo, mode, bdev, &config);
	case LOOP_CHANGE_FD:
		return loop_change_fd(lo, bdev, arg);
	case LOOP_CLR_FD:
		return loop_clr_fd(lo, bdev);
	case LOOP_SET_STATUS:
		if (!loop_may_change(mode))
			return -EPERM;
		return loop_set_status_old(lo, mode, bdev, argp);
	case LOOP_GET_STATUS:
		return loop_get_status_old(lo, argp);
	case LOOP_SET_STATUS64:
		if (!loop_may_change(mode))
			return -EPERM;
		return loop_set_status64(lo, mode, bdev, argp);
	case LOOP_GET_STATUS64:
		return loop_get_status64(lo, argp);
	case LOOP_SET_BLOCK_SIZE:
		if (!loop_may_change(mode))
			return -EPERM;
		return loop_set_block_size(lo, mode, bdev, arg);
	case LOOP_SET_CAPACITY:
		if (!loop_may_change(mode))
			return -EPERM;
		return loop_set_capacity(lo);
	case LOOP_SET_DIRECT_IO:
		if (!loop_may_change(mode))
			return -EPERM;
		return loop_set_direct_io(lo, arg);
	default:
		/* What the stock driver answers to an unknown command. */
		return -EINVAL;
	}
}

#ifdef CONFIG_COMPAT
/* struct loop_info as a 32-bit process lays it out. */
struct compat_loop_info {
	compat_int_t	lo_number;
	compat_dev_t	lo_device;
	compat_ulong_t	lo_inode;
	compat_dev_t	lo_rdevice;
	compat_int_t	lo_offset;
	compat_int_t	lo_encrypt_type;
	compat_int_t	lo_encrypt_key_size;
	compat_int_t	lo_flags;
	char		lo_name[LO_NAME_SIZE];
	unsigned char	lo_encrypt_key[LO_KEY_SIZE];
	compat_ulong_t	lo_init[2];
	char		reserved[4];
};

static noinline int loop_set_status_compat(struct loop_device *lo,
					   loop_mode_t mode,
					   struct block_device *bdev,
					   const struct compat_loop_info __user *arg)
{
	struct compat_loop_info old;
	struct loop_info64 info;

	if (copy_from_user(&old, arg, sizeof(old)))
		return -EFAULT;
	memset(&info, 0, sizeof(info));
	info.lo_number = old.lo_number;
	info.lo_device = old.lo_device;
	info.lo_inode = old.lo_inode;
	info.lo_rdevice = old.lo_rdevice;
	info.lo_offset = (s64)old.lo_offset;
	info.lo_flags = old.lo_flags;
	memcpy(info.lo_file_name, old.lo_name, LO_NAME_SIZE);
	return loop_set_status(lo, mode, bdev, &info);
}

static noinline int loop_get_status_compat(struct loop_device *lo,
					   struct compat_loop_info __user *arg)
{
	struct compat_loop_info old;
	struct loop_info64 info;
	int err;

	if (!arg)
		return -EINVAL;
	err = loop_get_status(lo, &info);
	if (err)
		return err;
	memset(&old, 0, sizeof(old));
	old.lo_number = info.lo_number;
	old.lo_device = info.lo_device;
	old.lo_inode = info.lo_inode;
	old.lo_rdevice = info.lo_rdevice;
	old.lo_offset = info.lo_offset;
	old.lo_flags = info.lo_flags;
	memcpy(old.lo_name, info.lo_file_name, LO_NAME_SIZE);
	if (old.lo_device != info.lo_device ||
	    old.lo_rdevice != info.lo_rdevice ||
	    old.lo_inode != info.lo_inode ||
	    old.lo_offset != info.lo_offset)
		return -EOVERFLOW;
	if (copy_to_user(arg, &old, sizeof(old)))
		return -EFAULT;
	return 0;
}

int lo_compat_ioctl(struct block_device *bdev, loop_mode_t mode,
		    unsigned int cmd, unsigned long arg)
{
	struct loop_device *lo = bdev->bd_disk->private_data;

	switch (cmd) {
	case LOOP_SET_STATUS:
		if (!loop_may_change(mode))
			return -EPERM;
		return loop_set_status_compat(lo, mode, bdev, compat_ptr(arg));
	case LOOP_GET_STATUS:
		return loop_get_status_compat(lo, compat_ptr(arg));
	case LOOP_SET_CAPACITY:
	case LOOP_CLR_FD:
	case LOOP_GET_STATUS64:
	case LOOP_SET_STATUS64:
	case LOOP_CONFIGURE:
		/* Same layout in both ABIs: only the pointer differs. */
		return lo_ioctl(bdev, mode, cmd,
				(unsigned long)compat_ptr(arg));
	case LOOP_SET_FD:
	case LOOP_CHANGE_FD:
	case LOOP_SET_BLOCK_SIZE:
	case LOOP_SET_DIRECT_IO:
		return lo_ioctl(bdev, mode, cmd, arg);
	default:
		return -ENOIOCTLCMD;
	}
}
#endif

/*
 * sysfs: /sys/block/loopN/loop/, present while the device is bound. The
 * directory is a kobject of its own so that teardown removes it, files and
 * all, in one kernfs removal: the lock of the sysfs tree, which all of
 * sysfs shares, is taken once, where removing a named group takes it (and
 * looks the file up) once per file, which under churn is where a
 * teardown's time went. The show of backing_file takes lo_mutex; the
 * directory is removed without it.
 */
static struct loop_device *kobj_to_loop(struct kobject *kobj)
{
	return dev_to_disk(kobj_to_dev(kobj->parent))->private_data;
}

static ssize_t backing_file_show(struct kobject *kobj,
				 struct kobj_attribute *attr, char *buf)
{
	struct loop_device *lo = kobj_to_loop(kobj);
	ssize_t len = 0;
	char *p = NULL;

	/* The file may change (LOOP_CHANGE_FD): hold it still, killably. */
	if (mutex_lock_killable(&lo->lo_mutex))
		return -EINTR;
	if (lo->lo_backing_file)
		p = file_path(lo->lo_backing_file, buf, PAGE_SIZE - 1);
	if (IS_ERR(p)) {
		len = PTR_ERR(p);
	} else if (p) {
		len = strlen(p);
		memmove(buf, p, len);
		buf[len++] = '\n';
		buf[len] = 0;
	}
	mutex_unlock(&lo->lo_mutex);
	return len;
}

/*
 * Offset and size limit are read without lo_mutex, which a configuration
 * ioctl may hold across a long write-back: a reader (udev, lsblk) must not
 * wait for it, and either value is a consistent one.
 */
static ssize_t loop_show_u64(char *buf, const loff_t *val)
{
	return sysfs_emit(buf, "%llu\n", (unsigned long long)READ_ONCE(*val));
}

static ssize_t offset_show(struct kobject *kobj, struct kobj_attribute *attr,
			   char *buf)
{
	return loop_show_u64(buf, &kobj_to_loop(kobj)->lo_offset);
}

static ssize_t sizelimit_show(struct kobject *kobj,
			      struct kobj_attribute *attr, char *buf)
{
	return loop_show_u64(buf, &kobj_to_loop(kobj)->lo_sizelimit);
}

/* Flags are read under lo_state_lock: ->release may change them. */
static ssize_t loop_show_flag(struct kobject *kobj, char *buf, u32 flag)
{
	struct loop_device *lo = kobj_to_loop(kobj);
	u32 flags;

	spin_lock(&lo->lo_state_lock);
	flags = lo->lo_flags;
	spin_unlock(&lo->lo_state_lock);
	return sysfs_emit(buf, "%d\n", !!(flags & flag));
}

static ssize_t autoclear_show(struct kobject *kobj,
			      struct kobj_attribute *attr, char *buf)
{
	return loop_show_flag(kobj, buf, LO_FLAGS_AUTOCLEAR);
}

static ssize_t partscan_show(struct kobject *kobj,
			     struct kobj_attribute *attr, char *buf)
{
	return loop_show_flag(kobj, buf, LO_FLAGS_PARTSCAN);
}

static ssize_t dio_show(struct kobject *kobj, struct kobj_attribute *attr,
			char *buf)
{
	return loop_show_flag(kobj, buf, LO_FLAGS_DIRECT_IO);
}

static ssize_t autoclear_delete_show(struct kobject *kobj,
				     struct kobj_attribute *attr, char *buf)
{
	return loop_show_flag(kobj, buf, LO_FLAGS_AUTOCLEAR_DELETE);
}

/* Reads and writes ->queue_rq issued itself (loop_io.c), since creation. */
static ssize_t nowait_issued_show(struct kobject *kobj,
				  struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%lu\n",
			  atomic_long_read(&kobj_to_loop(kobj)->lo_nowait_issued));
}

static struct kobj_attribute loop_attr_backing_file = __ATTR_RO(backing_file);
static struct kobj_attribute loop_attr_offset = __ATTR_RO(offset);
static struct kobj_attribute loop_attr_sizelimit = __ATTR_RO(sizelimit);
static struct kobj_attribute loop_attr_autoclear = __ATTR_RO(autoclear);
static struct kobj_attribute loop_attr_partscan = __ATTR_RO(partscan);
static struct kobj_attribute loop_attr_dio = __ATTR_RO(dio);
static struct kobj_attribute loop_attr_autoclear_delete =
	__ATTR_RO(autoclear_delete);
static struct kobj_attribute loop_attr_nowait_issued = __ATTR_RO(nowait_issued);

/*
 * backing_file comes last: if creating a file fails, sysfs removes the
 * ones made so far, waiting for their running show() calls, while the
 * attach holds lo_mutex. None of those may be the show that takes it.
 */
static struct attribute *loop_attrs[] = {
	&loop_attr_offset.attr,
	&loop_attr_sizelimit.attr,
	&loop_attr_autoclear.attr,
	&loop_attr_partscan.attr,
	&loop_attr_dio.attr,
	&loop_attr_autoclear_delete.attr,
	&loop_attr_nowait_issued.attr,
	&loop_attr_backing_file.attr,
	NULL,
};

/* Unnamed: the files go straight into the kobject's directory. */
static const struct attribute_group loop_attr_group = {
	.attrs = loop_attrs,
};

/*
 * Create the directory at attach. Caller holds lo_mutex. May sleep. A
 * failure leaves the device without it, as stock does.
 */
void loop_sysfs_init(struct loop_device *lo)
{
	struct kobject *dir;

	lockdep_assert_held(&lo->lo_mutex);
	dir = kobject_create_and_add("loop", &disk_to_dev(lo->lo_disk)->kobj);
	if (dir && sysfs_create_group(dir, &loop_attr_group)) {
		kobject_del(dir);
		kobject_put(dir);
		dir = NULL;
	}
	lo->lo_sysfs_dir = dir;
}

/*
 * Remove the directory at teardown, before returning: kobject_del()
 * removes it with its files at once, and waits for running show() calls,
 * which take lo_mutex, so the caller must not hold it. May sleep.
 */
void loop_sysfs_exit(struct loop_device *lo)
{
	struct kobject *dir = lo->lo_sysfs_dir;

	if (!dir)
		return;
	lo->lo_sysfs_dir = NULL;
	kobject_del(dir);
	kobject_put(dir);
}
