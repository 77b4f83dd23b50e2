// SPDX-License-Identifier: GPL-2.0
/*
 * Loop block device: module parameters, /dev/loop-control, creation and
 * removal of devices, and the block_device_operations of /dev/loopN.
 *
 * Devices live in loop_index_idr, indexed by their number. A device is
 * "visible" (lo_idr_visible) from the moment add_disk() has succeeded until
 * LOOP_CTL_REMOVE or the autoclear-delete path claims it for removal;
 * only visible devices can be found by LOOP_CTL_GET_FREE and
 * LOOP_CTL_REMOVE, so that two LOOP_CTL_REMOVE cannot race for one device.
 * A device whose autoclear-delete teardown runs is deleted by that
 * teardown, visible or not: a LOOP_CTL_REMOVE that hid it first waits for
 * it and finds it deleted (see loop_control_remove_device()).
 */
#include <linux/idr.h>
#include <linux/major.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/pid.h>
#include <linux/slab.h>

#include "loop.h"

#ifdef CONFIG_BLK_DEV_LOOP_MIN_COUNT
#define LOOP_DEFAULT_COUNT	CONFIG_BLK_DEV_LOOP_MIN_COUNT
#else
#define LOOP_DEFAULT_COUNT	8
#endif
#define LOOP_DEFAULT_HW_Q_DEPTH	128

/*
 * Protects loop_index_idr, every lo_idr_visible and lo_removed. Outside
 * lo_mutex.
 */
static DEFINE_MUTEX(loop_ctl_mutex);
static DEFINE_IDR(loop_index_idr);

/*
 * struct loop_device allocated and not freed yet. A device deleted while
 * open is freed by its last closer's final reference, which the block
 * layer drops after the closer's module reference: module exit waits for
 * the count to reach zero (and then for the freeing code to return).
 */
static atomic_t loop_devices_alive = ATOMIC_INIT(0);

static void loop_free(struct loop_device *lo)
{
	put_pid(lo->lo_free_holder);
	mutex_destroy(&lo->lo_mutex);
	kfree(lo);
	if (atomic_dec_and_test(&loop_devices_alive))
		wake_up_var(&loop_devices_alive);
}

/*
 * max_loop: devices created at load time. When given explicitly, it is also
 * the limit for devices created by opening a /dev/loopN node (as stock).
 */
static int max_loop = LOOP_DEFAULT_COUNT;
static bool max_loop_specified;

static int max_loop_param_set(const char *val, const struct kernel_param *kp)
{
	int ret = param_set_int(val, kp);

	if (!ret)
		max_loop_specified = true;
	return ret;
}

static const struct kernel_param_ops max_loop_param_ops = {
	.set = max_loop_param_set,
	.get = param_get_int,
};
module_param_cb(max_loop, &max_loop_param_ops, &max_loop, 0444);
MODULE_PARM_DESC(max_loop, "Number of loop devices created at load time (default "
		 __stringify(LOOP_DEFAULT_COUNT) ")");

static int max_part;
module_param(max_part, int, 0444);
MODULE_PARM_DESC(max_part, "Maximum number of partitions per loop device (default 0)");

/* log2 of the minors each device owns: set once, at load time. */
int loop_part_shift;

int loop_hw_queue_depth = LOOP_DEFAULT_HW_Q_DEPTH;

static int hw_queue_depth_set(const char *val, const struct kernel_param *kp)
{
	int depth, ret;

	ret = kstrtoint(val, 0, &depth);
	if (ret)
		return ret;
	if (depth < 1)
		return -EINVAL;
	loop_hw_queue_depth = depth;
	return 0;
}

static const struct kernel_param_ops hw_queue_depth_param_ops = {
	.set = hw_queue_depth_set,
	.get = param_get_int,
};
module_param_cb(hw_queue_depth, &hw_queue_depth_param_ops,
		&loop_hw_queue_depth, 0444);
MODULE_PARM_DESC(hw_queue_depth, "Queue depth of each device (default "
		 __stringify(LOOP_DEFAULT_HW_Q_DEPTH) ")");

/*
 * nowait: issue a read or write from ->queue_rq, in the submitter's
 * context, when the backing file can take it without waiting (see
 * loop_io.c and Documentation/admin-guide/blockdev/loop.rst). A device
 * created while it is off has a queue that may not sleep in ->queue_rq and
 * never does this; turning it off stops it on every device.
 */
bool loop_nowait = true;
module_param_named(nowait, loop_nowait, bool, 0644);
MODULE_PARM_DESC(nowait, "Issue reads and writes from the submitter when the backing file need not wait (default Y)");

/*
 * nowait_depth: with more requests than this in a device, the fast path
 * leaves asynchronous direct I/O to a worker, unless the workers are
 * behind by half the queue depth (loop_leave_to_worker() in loop_io.c);
 * 0: never, and reads of tmpfs never go to the workers for a queue
 * either (loop_tmpfs_queued()).
 */
unsigned int loop_nowait_depth = 4;
module_param_named(nowait_depth, loop_nowait_depth, uint, 0644);
MODULE_PARM_DESC(nowait_depth, "Requests in a device past which the fast path leaves direct I/O to the workers (default 4, 0: never; 0 also keeps queued tmpfs reads on the fast path)");

/*
 * get_free_hold_ms: for how long LOOP_CTL_GET_FREE keeps a device it handed
 * out for the thread it handed it to (0: no hold, as stock).
 */
static unsigned int get_free_hold_ms = 1000;
module_param(get_free_hold_ms, uint, 0644);
MODULE_PARM_DESC(get_free_hold_ms, "How long LOOP_CTL_GET_FREE keeps a device for its caller, ms (default 1000, 0: off)");

/*
 * End LOOP_CTL_GET_FREE's hold of @lo if it expired or its holder has
 * exited (nobody is left to attach the device). Returns the holder, to be
 * put as for loop_free_hold(), or NULL.
 */
static struct pid *loop_free_expire(struct loop_device *lo)
{
	struct pid *old = lo->lo_free_holder;

	lockdep_assert_held(&lo->lo_state_lock);
	if (!old || (time_before64(get_jiffies_64(), lo->lo_free_hold_end) &&
		     pid_has_task(old, PIDTYPE_PID)))
		return NULL;
	lo->lo_free_holder = NULL;
	return old;
}

/*
 * Is @lo held by LOOP_CTL_GET_FREE for a thread other than the caller? The
 * hold ends when the device is bound, when its holder's close is the last
 * one, when its holder exits, or when it expires (see loop_free_expire()).
 */
static bool loop_free_held_for_other(struct loop_device *lo)
{
	lockdep_assert_held(&lo->lo_state_lock);
	return lo->lo_free_holder && lo->lo_free_holder != task_pid(current);
}

/*
 * Hold @lo for @holder (a reference of the caller's, which @lo takes over;
 * NULL: no hold) for get_free_hold_ms. Returns the previous holder, whose
 * reference the caller drops once it has released lo_state_lock.
 */
static struct pid *loop_free_hold(struct loop_device *lo, struct pid *holder)
{
	struct pid *old = lo->lo_free_holder;

	lockdep_assert_held(&lo->lo_state_lock);
	lo->lo_free_holder = holder;
	lo->lo_free_hold_end = get_jiffies_64() +
		msecs_to_jiffies(READ_ONCE(get_free_hold_ms));
	return old;
}

/*
 * The device is bound: LOOP_CTL_GET_FREE's hold, if any, has served.
 * Returns the holder, to be put as for loop_free_hold().
 */
struct pid *loop_free_unhold(struct loop_device *lo)
{
	struct pid *old = lo->lo_free_holder;

	lockdep_assert_held(&lo->lo_state_lock);
	lo->lo_free_holder = NULL;
	return old;
}

/*
 * Open: refused once the device is being deleted, and, while it runs down,
 * for an exclusive opener (a mount would start on a device whose backing
 * file is about to go). Any other open of the whole device works: an
 * attacher's attach then waits for the teardown. Partitions do not exist
 * while the device runs down (see loop_lifecycle.c). Does not sleep.
 */
static int lo_open(LOOP_OPEN_ARGS)
{
	struct loop_device *lo = LOOP_OPEN_DISK->private_data;
	int err = 0;

	spin_lock(&lo->lo_state_lock);
	if (lo->lo_state == LO_DELETING ||
	    (lo->lo_state == LO_RUNDOWN && (mode & LOOP_MODE_EXCL)))
		err = -ENXIO;
	spin_unlock(&lo->lo_state_lock);
	return err;
}

/*
 * Release: called by the block layer with disk->open_mutex held. Only the
 * last close matters; see loop_release_last(). May sleep.
 */
static void lo_release(LOOP_RELEASE_ARGS)
{
	struct loop_device *lo = disk->private_data;
	struct pid *holder = NULL;

	if (disk_openers(disk) > 0)
		return;
	/* Its holder gave up on attaching it: free for anyone again. */
	spin_lock(&lo->lo_state_lock);
	if (lo->lo_state == LO_UNBOUND &&
	    lo->lo_free_holder == task_pid(current))
		holder = loop_free_unhold(lo);
	spin_unlock(&lo->lo_state_lock);
	put_pid(holder);
	loop_release_last(lo);
}

/* The gendisk's last reference is gone: free what the device owned. */
static void lo_free_disk(struct gendisk *disk)
{
	struct loop_device *lo = disk->private_data;

	if (lo->lo_workqueue)
		destroy_workqueue(lo->lo_workqueue);
	loop_free(lo);
}

static const struct block_device_operations lo_fops;

/* Is @disk one of ours (a loop device of this module)? */
bool loop_is_our_disk(struct gendisk *disk)
{
	return disk->fops == &lo_fops;
}

static const struct block_device_operations lo_fops = {
	.owner		= THIS_MODULE,
	.open		= lo_open,
	.release	= lo_release,
	.ioctl		= lo_ioctl,
#ifdef CONFIG_COMPAT
	.compat_ioctl	= lo_compat_ioctl,
#endif
	.free_disk	= lo_free_disk,
};

/*
 * Create a device: number @idx, or the lowest free number if @idx < 0;
 * held for @holder if not NULL (see loop_control_get_free()), whose
 * reference the device takes over, even on failure. Returns the number or
 * a negative errno; -EEXIST if @idx is taken. May sleep.
 */
static int loop_add(int idx, struct pid *holder)
{
	struct loop_device *lo;
	struct gendisk *disk;
	int err;

	/* A number whose minors do not fit the device number. */
	if (idx >= 0 && idx >= 1 << (MINORBITS - loop_part_shift)) {
		put_pid(holder);
		return -EINVAL;
	}
	lo = kzalloc(sizeof(*lo), GFP_KERNEL);
	if (!lo) {
		put_pid(holder);
		return -ENOMEM;
	}
	/* Put by loop_free(), on failure too. */
	lo->lo_free_holder = holder;
	atomic_inc(&loop_devices_alive);
	mutex_init(&lo->lo_mutex);
	spin_lock_init(&lo->lo_state_lock);
	init_waitqueue_head(&lo->lo_state_wq);
	loop_init_workers(lo);
	lo->lo_state = LO_UNBOUND;

	err = mutex_lock_killable(&loop_ctl_mutex);
	if (err)
		goto out_free_lo;
	if (idx >= 0) {
		err = idr_alloc(&loop_index_idr, lo, idx, idx + 1, GFP_KERNEL);
		if (err == -ENOSPC)
			err = -EEXIST;
	} else {
		err = idr_alloc(&loop_index_idr, lo, 0,
				1 << (MINORBITS - loop_part_shift), GFP_KERNEL);
	}
	mutex_unlock(&loop_ctl_mutex);
	if (err < 0)
		goto out_free_lo;
	lo->lo_number = err;

	lo->lo_tag_set.ops = &loop_mq_ops;
	lo->lo_tag_set.nr_hw_queues = 1;
	lo->lo_tag_set.queue_depth = loop_hw_queue_depth;
	lo->lo_tag_set.numa_node = NUMA_NO_NODE;
	lo->lo_tag_set.cmd_size = sizeof(struct loop_cmd);
	lo->lo_tag_set.flags = BLK_MQ_F_SHOULD_MERGE | BLK_MQ_F_STACKING |
			       BLK_MQ_F_NO_SCHED_BY_DEFAULT;
	/*
	 * ->queue_rq may then sleep: dispatch holds SRCU, not RCU. Not
	 * without a preempt count: the fast path could not tell where it
	 * may sleep, and never runs.
	 */
	if (READ_ONCE(loop_nowait) && IS_ENABLED(CONFIG_PREEMPT_COUNT))
		lo->lo_tag_set.flags |= BLK_MQ_F_BLOCKING;
	lo->lo_tag_set.driver_data = lo;
	err = blk_mq_alloc_tag_set(&lo->lo_tag_set);
	if (err)
		goto out_remove_idr;

	disk = loop_alloc_disk(&lo->lo_tag_set, lo);
	if (IS_ERR(disk)) {
		err = PTR_ERR(disk);
		goto out_free_tags;
	}
	lo->lo_disk = disk;

	/*
	 * Partition scanning is off unless max_part is set or an attach asks
	 * for it (LO_FLAGS_PARTSCAN). Partitions always use minors from the
	 * extended range when part_shift is 0.
	 */
	if (!loop_part_shift)
		set_bit(GD_SUPPRESS_PART_SCAN, &disk->state);
	disk->major = LOOP_MAJOR;
	disk->first_minor = lo->lo_number << loop_part_shift;
	disk->minors = 1 << loop_part_shift;
	disk->fops = &lo_fops;
	disk->private_data = lo;
	disk->events = DISK_EVENT_MEDIA_CHANGE;
	disk->event_flags = DISK_EVENT_FLAG_UEVENT;
	snprintf(disk->disk_name, DISK_NAME_LEN, "loop%d", lo->lo_number);
	/*
	 * The hold starts before add_disk(): nobody can open or attach the
	 * device before, and LOOP_CTL_GET_FREE does not see it until it is
	 * visible.
	 */
	if (holder) {
		spin_lock(&lo->lo_state_lock);
		lo->lo_free_hold_end = get_jiffies_64() +
			msecs_to_jiffies(READ_ONCE(get_free_hold_ms));
		spin_unlock(&lo->lo_state_lock);
	}

	err = add_disk(disk);
	if (err)
		goto out_put_disk;
	/* Visible, it can be removed and freed at once: return a copy. */
	idx = lo->lo_number;
	mutex_lock(&loop_ctl_mutex);
	lo->lo_idr_visible = true;
	mutex_unlock(&loop_ctl_mutex);
	return idx;

out_put_disk:
	/*
	 * A disk that was never added does not call ->free_disk: @lo is
	 * ours to free. The queue goes with the disk, before its tag set.
	 */
	put_disk(disk);
out_free_tags:
	blk_mq_free_tag_set(&lo->lo_tag_set);
out_remove_idr:
	mutex_lock(&loop_ctl_mutex);
	idr_remove(&loop_index_idr, lo->lo_number);
	mutex_unlock(&loop_ctl_mutex);
out_free_lo:
	loop_free(lo);
	return err;
}

/*
 * Delete a device that is in LO_DELETING and hidden. It may still be open:
 * its openers see a dead disk, and @lo is freed with the disk's last
 * reference. May sleep.
 */
void loop_remove(struct loop_device *lo)
{
	int number = lo->lo_number;

	/* Never left by a teardown; it would pin the disk's device for good. */
	if (WARN_ON_ONCE(lo->lo_sysfs_dir))
		loop_sysfs_exit(lo);
	del_gendisk(lo->lo_disk);
	blk_mq_free_tag_set(&lo->lo_tag_set);
	mutex_lock(&loop_ctl_mutex);
	idr_remove(&loop_index_idr, number);
	/* Its number is free again: a LOOP_CTL_REMOVE waiting may return. */
	WRITE_ONCE(lo->lo_removed, true);
	mutex_unlock(&loop_ctl_mutex);
	wake_up_all(&lo->lo_state_wq);
	put_disk(lo->lo_disk);
}

/*
 * Remove @lo, which the caller has hidden (lo_idr_visible false) and holds a
 * reference to: wait for a pending teardown, then delete the device if it
 * is unbound and unused. An autoclear-delete teardown deletes the device
 * itself, hidden or not: then there is nothing left to do. Makes the
 * device visible again on failure. Drops the reference. May sleep.
 */
int loop_control_remove_device(struct loop_device *lo)
{
	struct device *ddev = disk_to_dev(lo->lo_disk);
	enum loop_state state;
	int err;

	err = loop_wait_rundown(lo);
	if (err)
		goto out_visible;
	/* No open of ours: a last close may write the state meanwhile. */
	state = READ_ONCE(lo->lo_state);
	if (state == LO_DELETING) {
		/* Autoclear-delete: done when its number is free again. */
		mutex_unlock(&lo->lo_mutex);
		err = wait_event_killable(lo->lo_state_wq,
					  READ_ONCE(lo->lo_removed));
		goto out_put;
	}
	if (state != LO_UNBOUND || disk_openers(lo->lo_disk) > 0) {
		mutex_unlock(&lo->lo_mutex);
		err = -EBUSY;
		goto out_visible;
	}
	loop_set_state(lo, LO_DELETING);
	mutex_unlock(&lo->lo_mutex);
	loop_remove(lo);
	goto out_put;

out_visible:
	/* Harmless if a teardown is deleting it: it never becomes unbound. */
	mutex_lock(&loop_ctl_mutex);
	lo->lo_idr_visible = true;
	mutex_unlock(&loop_ctl_mutex);
out_put:
	put_device(ddev);
	return err;
}

/* Hide @lo if it is visible; returns whether it was. */
static bool loop_hide(struct loop_device *lo)
{
	lockdep_assert_held(&loop_ctl_mutex);
	if (!lo->lo_idr_visible)
		return false;
	lo->lo_idr_visible = false;
	return true;
}

/*
 * Find visible device @idx, hide it and take a reference to it. Caller
 * removes or unhides it (loop_control_remove_device()).
 */
static struct loop_device *loop_claim_for_removal(int idx)
{
	struct loop_device *lo;
	int err;

	err = mutex_lock_killable(&loop_ctl_mutex);
	if (err)
		return ERR_PTR(err);
	lo = idr_find(&loop_index_idr, idx);
	if (lo && loop_hide(lo))
		get_device(disk_to_dev(lo->lo_disk));
	else
		lo = ERR_PTR(-ENODEV);
	mutex_unlock(&loop_ctl_mutex);
	return lo;
}

static int loop_control_remove(long idx)
{
	struct loop_device *lo;

	if (idx < 0 || idx > INT_MAX)
		return -EINVAL;
	lo = loop_claim_for_removal(idx);
	if (IS_ERR(lo))
		return PTR_ERR(lo);
	return loop_control_remove_device(lo);
}

/*
 * Hide @lo from LOOP_CTL_GET_FREE and LOOP_CTL_REMOVE before the autoclear
 * teardown deletes it. Not killable: the teardown may run for a task that
 * is being killed. May sleep.
 */
void loop_hide_device(struct loop_device *lo)
{
	mutex_lock(&loop_ctl_mutex);
	loop_hide(lo);
	mutex_unlock(&loop_ctl_mutex);
}

/*
 * Limits that the I/O path found the backing file cannot honour (see
 * lo_limits_pending) are withdrawn here, not in the I/O path: the update
 * takes q->limits_lock, whose holder may be waiting for a queue freeze,
 * which waits for the very request that found out. One work item serves
 * every device.
 */
static void loop_withdraw_limits_workfn(struct work_struct *work)
{
	struct loop_device *lo;
	unsigned long pending;
	int id;

	for (;;) {
		/* One device at a time, with a reference, no lock held. */
		mutex_lock(&loop_ctl_mutex);
		idr_for_each_entry(&loop_index_idr, lo, id)
			if (READ_ONCE(lo->lo_limits_pending))
				break;
		if (lo)
			get_device(disk_to_dev(lo->lo_disk));
		mutex_unlock(&loop_ctl_mutex);
		if (!lo)
			return;

		mutex_lock(&lo->lo_mutex);
		/* Cleared under lo_mutex when the file that set them goes. */
		pending = xchg(&lo->lo_limits_pending, 0);
		if (pending && READ_ONCE(lo->lo_state) == LO_BOUND)
			loop_limits_withdraw(loop_queue(lo),
					     pending & BIT(LOOP_LIMITS_NO_DISCARD),
					     pending & BIT(LOOP_LIMITS_NO_ZEROES));
		mutex_unlock(&lo->lo_mutex);
		put_device(disk_to_dev(lo->lo_disk));
	}
}

static DECLARE_WORK(loop_withdraw_limits_work, loop_withdraw_limits_workfn);

/* Called by the I/O path after setting a lo_limits_pending bit. */
void loop_withdraw_limits_later(void)
{
	schedule_work(&loop_withdraw_limits_work);
}

/*
 * The number of an unbound device, creating one if there is none, held
 * for the calling thread: until the device is bound, until that thread's
 * close of it is the last one, until that thread exits, or for
 * get_free_hold_ms, no other caller gets it, so that concurrent "losetup
 * -f" do not collide on one device (stock hands it to all of them, and all
 * but one fail their attach with EBUSY). The caller's own hold does not
 * stop it: asked again, it gets the same device, unless it has it open or
 * a lower one became free meanwhile. Expired holds, and those of threads
 * that exited, are dropped on the way.
 */
static int loop_control_get_free(void)
{
	struct pid *holder = NULL, *ended, *replaced = NULL;
	struct loop_device *lo;
	bool found = false;
	int id, err;

	err = mutex_lock_killable(&loop_ctl_mutex);
	if (err)
		return err;
	if (READ_ONCE(get_free_hold_ms))
		holder = get_pid(task_pid(current));
	idr_for_each_entry(&loop_index_idr, lo, id) {
		/*
		 * Free: visible, unbound, not open and not held for another
		 * thread. A device in LO_RUNDOWN is not free yet. An unbound
		 * device that somebody has open is most likely being
		 * attached by a caller whose hold expired. The openers are
		 * counted without open_mutex: a caller that loses a race
		 * with an open or an attach by number gets EBUSY from its
		 * attach, as with stock, and asks again.
		 */
		if (!lo->lo_idr_visible || disk_openers(lo->lo_disk))
			continue;
		spin_lock(&lo->lo_state_lock);
		ended = loop_free_expire(lo);
		/* Not held any more, or held for the caller itself. */
		if (lo->lo_state == LO_UNBOUND &&
		    !loop_free_held_for_other(lo)) {
			replaced = loop_free_hold(lo, holder);
			found = true;
		}
		spin_unlock(&lo->lo_state_lock);
		put_pid(ended);
		put_pid(replaced);
		if (found)
			break;
	}
	mutex_unlock(&loop_ctl_mutex);
	if (!found)
		return loop_add(-1, holder);
	return id;
}

static long loop_control_ioctl(struct file *file, unsigned int cmd,
			       unsigned long parm)
{
	switch (cmd) {
	case LOOP_CTL_ADD:
		if ((long)parm > INT_MAX)
			return -EINVAL;
		return loop_add((long)parm < 0 ? -1 : (int)parm, NULL);
	case LOOP_CTL_REMOVE:
		return loop_control_remove((long)parm);
	case LOOP_CTL_GET_FREE:
		return loop_control_get_free();
	default:
		/*
		 * ENOTTY would be the errno for an unknown ioctl, but the stock
		 * driver answers "function not implemented", and programs that
		 * probe for support read it: drop-in means the same answer
		 * (scripts/lint.sh waives checkpatch's warning for this line).
		 */
		return -ENOSYS;
	}
}

#ifdef CONFIG_COMPAT
/* A 32-bit caller's device number is an int: -1 stays "any number". */
static long loop_control_compat_ioctl(struct file *file, unsigned int cmd,
				      unsigned long parm)
{
	return loop_control_ioctl(file, cmd, (long)(int)parm);
}
#endif

static const struct file_operations loop_ctl_fops = {
	.owner		= THIS_MODULE,
	.open		= nonseekable_open,
	.unlocked_ioctl	= loop_control_ioctl,
#ifdef CONFIG_COMPAT
	.compat_ioctl	= loop_control_compat_ioctl,
#endif
	.llseek		= noop_llseek,
};

static struct miscdevice loop_misc = {
	.minor		= LOOP_CTRL_MINOR,
	.name		= "loop-control",
	.fops		= &loop_ctl_fops,
};

#ifdef CONFIG_BLOCK_LEGACY_AUTOLOAD
/* Opening /dev/loopN of a device that does not exist creates it. */
static void loop_probe(dev_t dev)
{
	int idx = MINOR(dev) >> loop_part_shift;

	if (max_loop_specified && max_loop && idx >= max_loop)
		return;
	loop_add(idx, NULL);
}
#else
#define loop_probe NULL
#endif

static int __init loop_init(void)
{
	int i, err;

	if (max_part > 0) {
		loop_part_shift = fls(max_part);
		/* What user space may rely on: minors per device minus one. */
		max_part = (1 << loop_part_shift) - 1;
	}
	if ((1UL << loop_part_shift) > DISK_MAX_PARTS)
		return -EINVAL;
	if (max_loop < 0 || max_loop > 1UL << (MINORBITS - loop_part_shift))
		return -EINVAL;

	err = loop_lifecycle_init();
	if (err)
		return err;
	err = misc_register(&loop_misc);
	if (err)
		goto out_lifecycle;
	err = __register_blkdev(LOOP_MAJOR, "loop", loop_probe);
	if (err) {
		err = -EIO;
		goto out_misc;
	}
	for (i = 0; i < max_loop; i++)
		loop_add(i, NULL);
	pr_info("module loaded (reworked lifecycle, autoclear-delete)\n");
	return 0;

out_misc:
	misc_deregister(&loop_misc);
out_lifecycle:
	loop_lifecycle_exit();
	return err;
}

static void __exit loop_exit(void)
{
	struct loop_device *lo;
	int id;

	unregister_blkdev(LOOP_MAJOR, "loop");
	misc_deregister(&loop_misc);
	/*
	 * Every bound device and every open holds a module reference; a
	 * pending teardown does not, and may still be running: wait for it.
	 * Then all devices are unbound and nobody else can reach the idr.
	 */
	loop_lifecycle_exit();
	/* Devices are unbound: what it would withdraw no longer matters. */
	cancel_work_sync(&loop_withdraw_limits_work);
	idr_for_each_entry(&loop_index_idr, lo, id) {
		mutex_lock(&lo->lo_mutex);
		loop_set_state(lo, LO_DELETING);
		mutex_unlock(&lo->lo_mutex);
		loop_remove(lo);
	}
	idr_destroy(&loop_index_idr);
	/* A closer of a device deleted while open may still free it. */
	wait_var_event(&loop_devices_alive, !atomic_read(&loop_devices_alive));
	/* Task work callbacks and ->free_disk have returned from our text. */
	loop_sync_task_work();
}

module_init(loop_init);
module_exit(loop_exit);

MODULE_DESCRIPTION("Loopback block device, reworked lifecycle");
MODULE_LICENSE("GPL");
MODULE_VERSION(LOOP_VERSION);
MODULE_ALIAS_BLOCKDEV_MAJOR(LOOP_MAJOR);
MODULE_ALIAS_MISCDEV(LOOP_CTRL_MINOR);
MODULE_ALIAS("devname:loop-control");
