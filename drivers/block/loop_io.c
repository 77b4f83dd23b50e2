// SPDX-License-Identifier: GPL-2.0
/*
 * Loop block device: the I/O path.
 *
 * blk-mq hands each request to loop_queue_rq(), which queues it for the
 * worker of its block cgroup on the device's unbound workqueue; the worker
 * issues the reads and writes on the backing file in order, through
 * ->read_iter/->write_iter, directly over the request's pages (no copy):
 *
 *  - buffered I/O waits for the call in the worker, then completes;
 *  - direct I/O submits an asynchronous kiocb, and the request completes
 *    when both the submitter and the backing file's completion are done.
 *
 * The fast path (module parameter nowait): ->queue_rq issues a read or
 * write itself, with IOCB_NOWAIT, when the backing file supports that (or,
 * for a read of tmpfs, has the pages in memory) and the submitter's
 * context allows it (loop_nowait_allowed()), and, for deep
 * queues of direct I/O, a worker is not better placed to issue it
 * (loop_leave_to_worker(), module parameter nowait_depth); what the file
 * cannot take at once goes to the worker as above. The queue is then
 * BLK_MQ_F_BLOCKING, so that ->queue_rq may sleep.
 *
 * Flush is fsync of the backing file; discard and write-zeroes are
 * fallocate (punch hole or zero range). A short transfer that made progress
 * is requeued for the rest; one that made none fails the request. Errors
 * of reads and writes keep their errno where the block layer has a status
 * for it; those of flush, discard and write-zeroes become EIO, except
 * EOPNOTSUPP (as stock).
 *
 * The I/O is charged to the submitter's block and memory cgroups: the
 * worker adopts the cgroups of the request's first bio while it works.
 *
 * Nothing here takes a lifecycle lock, nor q->limits_lock (a queue freeze
 * may be waiting for the request with that lock held: see
 * loop_fallocate()). The backing file cannot change under a request:
 * every change to it first waits for all requests to finish, by freezing
 * the queue, or (the teardown, which must not cost the RCU grace period of
 * a freeze) by loop_drain_io(): each request is counted in lo_inflight
 * from ->queue_rq to its completion, and ->queue_rq fails new ones while
 * lo_draining is set.
 */
#include <linux/blk-cgroup.h>
#include <linux/falloc.h>
#include <linux/memcontrol.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/sched/task_stack.h>
#include <linux/shmem_fs.h>
#include <linux/slab.h>
#include <linux/uio.h>

#include "loop.h"

/* Completion of both halves of an asynchronous request. */
static void loop_aio_put(struct loop_cmd *cmd)
{
	struct request *rq = blk_mq_rq_from_pdu(cmd);

	if (!atomic_dec_and_test(&cmd->ref))
		return;
	if (req_op(rq) == REQ_OP_WRITE)
		kiocb_end_write(&cmd->iocb);
	kfree(cmd->bvec);
	cmd->bvec = NULL;
	blk_mq_complete_request(rq);
}

/* ->ki_complete of direct I/O. May be called in interrupt context. */
static void loop_aio_complete(struct kiocb *iocb, long ret)
{
	struct loop_cmd *cmd = container_of(iocb, struct loop_cmd, iocb);

	cmd->ret = ret;
	loop_aio_put(cmd);
}

/*
 * Write access to the backing file's filesystem (freeze protection) for a
 * write of @cmd. With IOCB_NOWAIT only if it can be had at once, and as a
 * trylock: the submitter may hold the same lock class of its own
 * filesystem (ext4 on ext4), which lockdep would report as recursion. The
 * asynchronous form hands it over to the completion (kiocb_end_write()).
 */
static bool loop_start_write(struct loop_cmd *cmd, int nowait)
{
	struct file *file = cmd->iocb.ki_filp;
	struct super_block *sb = file_inode(file)->i_sb;

	if (cmd->use_aio) {
		if (!nowait) {
			kiocb_start_write(&cmd->iocb);
			return true;
		}
		if (!sb_start_write_trylock(sb))
			return false;
		__sb_writers_release(sb, SB_FREEZE_WRITE);
		return true;
	}
	if (!nowait) {
		file_start_write(file);
		return true;
	}
	return file_start_write_trylock(file);
}

/*
 * Read or write the request at byte @pos of the backing file, with
 * @nowait (0 or IOCB_NOWAIT: see loop_try_nowait()). Returns the bytes
 * transferred or a negative errno, or -EIOCBQUEUED when the request will be
 * completed by loop_aio_complete(); with IOCB_NOWAIT, -EAGAIN if the file
 * could not take it at once (nothing was issued, nothing will complete).
 * May sleep.
 */
static long loop_rw(struct loop_device *lo, struct loop_cmd *cmd, loff_t pos,
		    unsigned int dir, int nowait)
{
	struct request *rq = blk_mq_rq_from_pdu(cmd);
	struct file *file = lo->lo_backing_file;
	struct req_iterator rq_iter;
	struct bio_vec bv, *bvec;
	struct iov_iter iter;
	unsigned int nr = 0, offset = 0;
	long ret;

	rq_for_each_bvec(bv, rq, rq_iter)
		nr++;
	if (rq->bio == rq->biotail) {
		/* One bio: iterate its own vector, from where it starts. */
		struct bio *bio = rq->bio;

		bvec = __bvec_iter_bvec(bio->bi_io_vec, bio->bi_iter);
		offset = bio->bi_iter.bi_bvec_done;
	} else {
		/* Several bios: gather their segments into one vector. */
		unsigned int i = 0;

		bvec = kmalloc_array(nr, sizeof(*bvec), GFP_NOIO);
		if (!bvec)
			return -EIO;
		rq_for_each_bvec(bv, rq, rq_iter)
			bvec[i++] = bv;
		cmd->bvec = bvec;
	}
	iov_iter_bvec(&iter, dir, bvec, nr, blk_rq_bytes(rq));
	iter.iov_offset = offset;

	cmd->iocb.ki_pos = pos;
	cmd->iocb.ki_filp = file;
	cmd->iocb.ki_ioprio = req_get_ioprio(rq);
	if (dir == ITER_SOURCE && !loop_start_write(cmd, nowait)) {
		ret = -EAGAIN;
		goto out_free;
	}
	if (cmd->use_aio) {
		cmd->iocb.ki_flags = IOCB_DIRECT | nowait;
		cmd->iocb.ki_complete = loop_aio_complete;
		/* One reference for us, one for the completion. */
		atomic_set(&cmd->ref, 2);
		if (dir == ITER_SOURCE)
			ret = file->f_op->write_iter(&cmd->iocb, &iter);
		else
			ret = file->f_op->read_iter(&cmd->iocb, &iter);
		if (ret == -EAGAIN && nowait) {
			/* Refused before anything was issued. */
			if (dir == ITER_SOURCE)
				kiocb_end_write(&cmd->iocb);
			goto out_free;
		}
		if (ret != -EIOCBQUEUED)
			loop_aio_complete(&cmd->iocb, ret);
		loop_aio_put(cmd);
		return -EIOCBQUEUED;
	}

	cmd->iocb.ki_flags = nowait;
	cmd->iocb.ki_complete = NULL;
	if (dir == ITER_SOURCE) {
		ret = file->f_op->write_iter(&cmd->iocb, &iter);
		file_end_write(file);
	} else {
		ret = file->f_op->read_iter(&cmd->iocb, &iter);
	}
out_free:
	kfree(cmd->bvec);
	cmd->bvec = NULL;
	return ret;
}

/* EOPNOTSUPP stays, any other error becomes EIO (as stock). */
static long loop_eio(long ret)
{
	return ret == -EOPNOTSUPP ? ret : ret ? -EIO : 0;
}

/*
 * Discard or write-zeroes through fallocate. A file that refuses the mode
 * makes the device stop advertising it; not from here, where taking
 * q->limits_lock could wait for a freeze that waits for this request. May
 * sleep.
 */
static long loop_fallocate(struct loop_device *lo, struct request *rq,
			   loff_t pos, int mode)
{
	struct file *file = lo->lo_backing_file;
	int ret, bit;

	if (!file->f_op->fallocate)
		return -EOPNOTSUPP;
	ret = file->f_op->fallocate(file, mode | FALLOC_FL_KEEP_SIZE, pos,
				    blk_rq_bytes(rq));
	if (ret == -EOPNOTSUPP) {
		bit = (mode & FALLOC_FL_ZERO_RANGE) ? LOOP_LIMITS_NO_ZEROES :
						      LOOP_LIMITS_NO_DISCARD;
		if (!test_and_set_bit(bit, &lo->lo_limits_pending))
			loop_withdraw_limits_later();
	}
	return loop_eio(ret);
}

/* Where @rq starts in the backing file. */
static loff_t loop_rq_file_pos(struct loop_device *lo, struct request *rq)
{
	return ((loff_t)blk_rq_pos(rq) << SECTOR_SHIFT) + lo->lo_offset;
}

/* @nowait: 0, or IOCB_NOWAIT for a read or write (loop_try_nowait()). */
static long loop_do_request(struct loop_device *lo, struct loop_cmd *cmd,
			    int nowait)
{
	struct request *rq = blk_mq_rq_from_pdu(cmd);
	loff_t pos = loop_rq_file_pos(lo, rq);
	int err;

	/*
	 * Every kind of write (write, discard, write-zeroes), also from an
	 * in-kernel submitter that skips the block layer's read-only checks:
	 * a read-only device's file may have been opened read-only, and
	 * ->fallocate() does not check that. The flag does not change while
	 * the device is bound; LOOP_SET_STATUS rewrites the word.
	 */
	if (op_is_write(req_op(rq)) &&
	    (READ_ONCE(lo->lo_flags) & LO_FLAGS_READ_ONLY))
		return -EIO;

	switch (req_op(rq)) {
	case REQ_OP_READ:
		return loop_rw(lo, cmd, pos, ITER_DEST, nowait);
	case REQ_OP_WRITE:
		return loop_rw(lo, cmd, pos, ITER_SOURCE, nowait);
	case REQ_OP_FLUSH:
		err = vfs_fsync(lo->lo_backing_file, 0);
		return loop_eio(err);
	case REQ_OP_DISCARD:
		return loop_fallocate(lo, rq, pos, FALLOC_FL_PUNCH_HOLE);
	case REQ_OP_WRITE_ZEROES:
		/* REQ_NOUNMAP: the blocks must stay allocated. */
		return loop_fallocate(lo, rq, pos,
				      (rq->cmd_flags & REQ_NOUNMAP) ?
				      FALLOC_FL_ZERO_RANGE :
				      FALLOC_FL_PUNCH_HOLE);
	default:
		return -EIO;
	}
}

/* What loop_io_enter() changed in the issuing task, for loop_io_leave(). */
struct loop_io_saved {
	unsigned int		noio;
	unsigned int		flags;
	struct mem_cgroup	*memcg;
};

/*
 * The issuing task's settings while it does a request's I/O on the backing
 * file, in a worker or on the fast path: our allocations must not recurse
 * into I/O (maybe to this device), writeback is throttled against the
 * backing file's device only, and page cache is charged to @memcg_css.
 */
static void loop_io_enter(struct loop_io_saved *saved,
			  struct cgroup_subsys_state *memcg_css)
{
	saved->noio = memalloc_noio_save();
	saved->flags = current->flags;
	current->flags |= PF_LOCAL_THROTTLE;
	saved->memcg = NULL;
#ifdef CONFIG_MEMCG
	if (memcg_css)
		saved->memcg = set_active_memcg(mem_cgroup_from_css(memcg_css));
#endif
}

static void loop_io_leave(struct loop_io_saved *saved,
			  struct cgroup_subsys_state *memcg_css)
{
#ifdef CONFIG_MEMCG
	if (memcg_css)
		set_active_memcg(saved->memcg);
#endif
	current->flags = (current->flags & ~PF_LOCAL_THROTTLE) |
			 (saved->flags & PF_LOCAL_THROTTLE);
	memalloc_noio_restore(saved->noio);
}

/* Run one request in a worker, charged to the cgroups it came from. */
static void loop_handle_cmd(struct loop_device *lo, struct loop_cmd *cmd)
{
	/*
	 * Read before issuing: once an asynchronous request is issued it may
	 * complete, and its tag and @cmd be reused by the next ->queue_rq,
	 * before loop_do_request() returns.
	 */
	struct cgroup_subsys_state *blkcg_css = cmd->blkcg_css;
	struct cgroup_subsys_state *memcg_css = cmd->memcg_css;
	struct request *rq = blk_mq_rq_from_pdu(cmd);
	struct loop_io_saved saved;
	long ret;

	loop_io_enter(&saved, memcg_css);
	/* Takes its own reference on the cgroup. */
	if (blkcg_css)
		kthread_associate_blkcg(blkcg_css);

	ret = loop_do_request(lo, cmd, 0);

	if (blkcg_css)
		kthread_associate_blkcg(NULL);
	loop_io_leave(&saved, memcg_css);
	if (memcg_css)
		css_put(memcg_css);

	/* After -EIOCBQUEUED, @cmd may already be completed and reused. */
	if (ret != -EIOCBQUEUED) {
		cmd->ret = ret;
		blk_mq_complete_request(rq);
	}
}

/*
 * A worker drains its list in order: one context per cgroup issuing the
 * requests one after the other costs less than a context per request
 * contending for the backing file, and one cgroup's stalled writes do not
 * hold up another's.
 */
static void loop_workfn(struct work_struct *work)
{
	struct loop_worker *worker = container_of(work, struct loop_worker,
						  work);
	struct loop_device *lo = worker->lo;
	struct loop_cmd *cmd;

	for (;;) {
		spin_lock_irq(&lo->lo_work_lock);
		cmd = list_first_entry_or_null(&worker->cmds, struct loop_cmd,
					       node);
		if (!cmd)
			break;
		list_del(&cmd->node);
		spin_unlock_irq(&lo->lo_work_lock);
		loop_handle_cmd(lo, cmd);
		/*
		 * Issued (asynchronous direct I/O) or done (the rest): a
		 * worker stuck in a request (a flush, a write to a frozen
		 * filesystem) keeps counting it. @lo outlives the work: its
		 * workqueue is destroyed only with it.
		 */
		atomic_dec(&lo->lo_backlog);
		cond_resched();
	}
	/* Nothing left: the next request schedules the worker again. */
	worker->scheduled = false;
	if (worker == &lo->lo_root_worker) {
		spin_unlock_irq(&lo->lo_work_lock);
		return;
	}
	/* No longer findable, and @work is not queued: free it. */
	list_del(&worker->node);
	spin_unlock_irq(&lo->lo_work_lock);
	css_put(worker->blkcg_css);
	kfree(worker);
}

static void loop_init_worker(struct loop_worker *worker,
			     struct loop_device *lo,
			     struct cgroup_subsys_state *blkcg_css)
{
	INIT_LIST_HEAD(&worker->node);
	INIT_WORK(&worker->work, loop_workfn);
	INIT_LIST_HEAD(&worker->cmds);
	worker->blkcg_css = blkcg_css;
	worker->lo = lo;
}

void loop_init_workers(struct loop_device *lo)
{
	spin_lock_init(&lo->lo_work_lock);
	INIT_LIST_HEAD(&lo->lo_workers);
	loop_init_worker(&lo->lo_root_worker, lo, NULL);
}

static struct loop_worker *loop_find_worker(struct loop_device *lo,
					    struct cgroup_subsys_state *css)
{
	struct loop_worker *worker;

	lockdep_assert_held(&lo->lo_work_lock);
	if (!css)
		return &lo->lo_root_worker;
	list_for_each_entry(worker, &lo->lo_workers, node)
		if (worker->blkcg_css == css)
			return worker;
	return NULL;
}

/*
 * Hand @cmd to the worker of its block cgroup, creating one if needed.
 * Without memory for a new worker, the root worker serves it: the request
 * is still charged to its cgroups, only not isolated from others.
 */
static void loop_queue_cmd(struct loop_device *lo, struct loop_cmd *cmd)
{
	struct cgroup_subsys_state *css = cmd->blkcg_css;
	struct loop_worker *worker, *new = NULL;

	/* The root cgroup's requests go to the root worker. */
	if (css && !css->parent)
		css = NULL;
	spin_lock_irq(&lo->lo_work_lock);
	worker = loop_find_worker(lo, css);
	if (!worker) {
		spin_unlock_irq(&lo->lo_work_lock);
		new = kzalloc(sizeof(*new), GFP_NOWAIT | __GFP_NOWARN);
		if (new) {
			css_get(css);
			loop_init_worker(new, lo, css);
		}
		spin_lock_irq(&lo->lo_work_lock);
		worker = loop_find_worker(lo, css);
		if (!worker && new) {
			list_add_tail(&new->node, &lo->lo_workers);
			worker = new;
			new = NULL;
		}
		if (!worker)
			worker = &lo->lo_root_worker;
	}
	atomic_inc(&lo->lo_backlog);
	list_add_tail(&cmd->node, &worker->cmds);
	if (!worker->scheduled) {
		worker->scheduled = true;
		queue_work(lo->lo_workqueue, &worker->work);
	}
	spin_unlock_irq(&lo->lo_work_lock);
	if (new) {
		/* Another request created the same worker meanwhile. */
		css_put(css);
		kfree(new);
	}
}

/* A request leaves the driver: completed, requeued or refused. */
static void loop_inflight_put(struct loop_device *lo)
{
	/* Fully ordered: pairs with the barrier in loop_drain_io(). */
	if (atomic_dec_and_test(&lo->lo_inflight) &&
	    READ_ONCE(lo->lo_draining))
		wake_up_var(&lo->lo_inflight);
}

/*
 * Wait for every request in the driver to complete; until loop_end_drain(),
 * ->queue_rq fails new ones. Only the teardown uses it, after setting the
 * capacity to 0: the block layer then stops new reads and writes itself,
 * and ->queue_rq fails flushes in rundown (loop_rq_flush_in_rundown()), so
 * nothing new can arrive but what a drain fails too. Caller holds lo_mutex.
 * May sleep.
 */
void loop_drain_io(struct loop_device *lo)
{
	lockdep_assert_held(&lo->lo_mutex);
	WRITE_ONCE(lo->lo_draining, true);
	/* Pairs with the barrier between count and flag in ->queue_rq. */
	smp_mb();
	wait_var_event(&lo->lo_inflight, !atomic_read(&lo->lo_inflight));
}

/* After the configuration changed under loop_drain_io(). */
void loop_end_drain(struct loop_device *lo)
{
	lockdep_assert_held(&lo->lo_mutex);
	/* A request that sees the flag cleared sees the new configuration. */
	smp_store_release(&lo->lo_draining, false);
}

/*
 * A request enters the driver. False if it must fail: a drain is on, or
 * the device is not serving I/O. A device in rundown still serves what its
 * teardown writes back, until the teardown drains and unbinds the file.
 */
static bool loop_inflight_get(struct loop_device *lo)
{
	enum loop_state state;

	atomic_inc(&lo->lo_inflight);
	/* Count before looking at the flag: see loop_drain_io(). */
	smp_mb__after_atomic();
	/* Pairs with loop_end_drain(): a finished drain comes with its state. */
	if (smp_load_acquire(&lo->lo_draining))
		goto refuse;
	/*
	 * No drain: the file is bound in both states. After a drain, the
	 * teardown changed the state before clearing the flag; an attach
	 * publishes the file with the state (pairs with its
	 * smp_store_release()).
	 */
	state = smp_load_acquire(&lo->lo_state);
	if (state == LO_BOUND || state == LO_RUNDOWN)
		return true;
refuse:
	loop_inflight_put(lo);
	return false;
}

/*
 * Does @rq reach beyond the device's capacity? The block layer checks a
 * bio against the capacity before it waits for a frozen queue: a bio
 * checked against the old size while LOOP_SET_STATUS moved the window
 * (offset and capacity change together, under the freeze) would reach the
 * file outside the new window. The capacity is read racily: a request
 * that a concurrent change admits or refuses is one that raced it. Does
 * not sleep.
 */
static bool loop_rq_beyond_capacity(struct loop_device *lo,
				    struct request *rq)
{
	sector_t capacity;

	/* A flush has no position (6.1 leaves it at -1). */
	if (!blk_rq_sectors(rq))
		return false;
	/* Racy on purpose (see above): no lock orders it with a change. */
	capacity = data_race(get_capacity(lo->lo_disk));
	return blk_rq_pos(rq) + blk_rq_sectors(rq) > capacity;
}

/*
 * A requeued request beyond the capacity, but for a rundown's capacity of
 * 0. smp_rmb() pairs with the smp_wmb() in loop_rundown() between the
 * state and the capacity. Does not sleep.
 */
static bool loop_requeued_beyond_capacity(struct loop_device *lo,
					  struct request *rq)
{
	if (!loop_rq_beyond_capacity(lo, rq))
		return false;
	/* The capacity before the state: see above. */
	smp_rmb();
	return READ_ONCE(lo->lo_state) != LO_RUNDOWN;
}

/*
 * A flush while the device runs down fails, as one does once it is unbound
 * (the write cache stays on for that, see loop_unbind_file()): a buffered
 * write that passed the size check before the teardown took the capacity
 * to 0, but put its page in the cache after the teardown dropped the
 * cache, never reaches the file (6.1 skips the write-back of a page beyond
 * the end of the device without an error; 6.12 refuses such a stalled
 * write, not relied on here), and its writer's fsync() must not return 0.
 * Marking the mapping with an error does not do: another thread's fsync()
 * on the same descriptor may hear of that error first. Keyed on the state,
 * set before the capacity changes (locks order the two), not on the
 * capacity, whose two fields set_capacity() stores unordered. The teardown
 * sends no flush of its own. Does not sleep.
 */
static bool loop_rq_flush_in_rundown(struct loop_device *lo,
				     struct request *rq)
{
	return req_op(rq) == REQ_OP_FLUSH &&
	       READ_ONCE(lo->lo_state) == LO_RUNDOWN;
}

/*
 * Did @rq come through a partition that is no longer the device's? One
 * that was being opened when the rundown dropped it can still be opened
 * (->open does not say which partition is opened); nothing it submits may
 * reach the backing file, this attachment's or the next one's. Does not
 * sleep.
 */
static bool loop_rq_from_dead_partition(struct loop_device *lo,
					struct request *rq)
{
	struct bio *bio;

	__rq_for_each_bio(bio, rq) {
		struct block_device *bdev = bio->bi_bdev;
		u8 partno = loop_bdev_partno(bdev);

		if (partno &&
		    xa_load(&lo->lo_disk->part_tbl, partno) != bdev)
			return true;
	}
	return false;
}

/*
 * Is there room on the stack for a filesystem's read or write and the
 * block I/O below it? Half of it must be left: the submitter may itself be
 * deep in a filesystem or a stacked driver. Not on the task's stack at
 * all (an interrupt stack) counts as no room.
 */
static bool loop_stack_has_room(void)
{
	unsigned long base = (unsigned long)task_stack_page(current);
	unsigned long here = (unsigned long)&base;

	return object_is_on_stack(&base) && here - base >= THREAD_SIZE / 2;
}

/*
 * Inside submit_bio() with bios waiting on its lists (submitted by a
 * stacked driver above us, or earlier by this one)? Both lists of the
 * pair current->bio_list points to.
 */
static bool loop_bio_list_busy(void)
{
	struct bio_list *bl = current->bio_list;

	return bl && (!bio_list_empty(&bl[0]) || !bio_list_empty(&bl[1]));
}

/* Is the submitter in @cmd's block cgroup (so that its I/O is charged right)? */
static bool loop_in_cmd_blkcg(struct loop_cmd *cmd)
{
#ifdef CONFIG_BLK_CGROUP
	bool same;

	if (!cmd->blkcg_css)
		return true;
	rcu_read_lock();
	same = task_css(current, io_cgrp_id) == cmd->blkcg_css;
	rcu_read_unlock();
	return same;
#else
	return true;
#endif
}

/* The flags of all of @rq's bios: a merge keeps only the first one's. */
static blk_opf_t loop_rq_flags(struct request *rq)
{
	blk_opf_t opf = rq->cmd_flags;
	struct bio *bio;

	__rq_for_each_bio(bio, rq)
		opf |= bio->bi_opf;
	return opf;
}

/*
 * May @rq, a read of a tmpfs file, be copied from the submitter's context?
 * tmpfs takes no IOCB_NOWAIT (no FMODE_NOWAIT); its read does no I/O of its
 * own but to swap a page in, and waits only for page locks (whose holder
 * may be swapping in another page: khugepaged collapsing a huge page).
 * Yes if no page of the range is swapped out. A hole reads as zeroes,
 * without allocating. The answer is a guess, read under RCU: a page
 * swapped out meanwhile is swapped in by the submitter, as a page fault of
 * its own would be. Does not sleep.
 */
static bool loop_tmpfs_read_resident(struct loop_device *lo, struct file *file,
				     struct request *rq)
{
	loff_t pos = loop_rq_file_pos(lo, rq);
	XA_STATE(xas, &file->f_mapping->i_pages, pos >> PAGE_SHIFT);
	pgoff_t last = (pos + blk_rq_bytes(rq) - 1) >> PAGE_SHIFT;
	bool resident = true;
	void *entry;

	rcu_read_lock();
	xas_for_each(&xas, entry, last) {
		if (xas_retry(&xas, entry))
			continue;
		if (xa_is_value(entry)) {
			resident = false;
			break;
		}
	}
	rcu_read_unlock();
	return resident;
}

/*
 * Is there a gap at a virtual boundary of @mask between two of @rq's
 * segments (one ending or the next starting off the boundary)? The block
 * layer splits a bio there.
 */
static bool loop_rq_has_gap(struct request *rq, unsigned long mask)
{
	struct req_iterator iter;
	unsigned int prev_end = 0;
	struct bio_vec bv;
	bool first = true;

	rq_for_each_bvec(bv, rq, iter) {
		if (!first && ((prev_end | bv.bv_offset) & mask))
			return true;
		first = false;
		prev_end = bv.bv_offset + bv.bv_len;
	}
	return false;
}

/*
 * Would the block device under @file split @rq's direct I/O? Its bio
 * carries REQ_NOWAIT (block/fops.c), and the block layer fails such a bio
 * with EAGAIN rather than split it: the worker would do all of it again.
 * Files on filesystems do not count: iomap (ext4, XFS) sends no REQ_NOWAIT
 * bios. A best guess, not the block layer's own computation: segments are
 * counted with our segment size, not the device's, and a bio-based driver
 * that never splits (brd, zram) is taken at its word. The device's limits
 * are read racily (a dm table reload changes them). A wrong answer costs
 * a retry by the worker, or a context switch. Does not sleep.
 */
static bool loop_backing_would_split(struct loop_device *lo,
				     struct file *file, struct request *rq)
{
	struct inode *inode = file->f_mapping->host;
	unsigned int sectors = blk_rq_sectors(rq), chunk;
	struct block_device *bdev;
	struct request_queue *bq;
	unsigned long mask;
	sector_t start;

	if (!S_ISBLK(inode->i_mode))
		return false;
	bdev = I_BDEV(inode);
	bq = bdev_get_queue(bdev);
	/* Racy on purpose: the limits of another device, see above. */
	if (sectors > data_race(queue_max_sectors(bq)) ||
	    /* Racy on purpose, as above. */
	    blk_rq_nr_phys_segments(rq) > data_race(queue_max_segments(bq)))
		return true;
	/* Racy on purpose, as above. */
	mask = data_race(queue_virt_boundary(bq));
	if (mask && loop_rq_has_gap(rq, mask))
		return true;
	/* Racy on purpose, as above. */
	chunk = data_race(bq->limits.chunk_sectors);
	if (!chunk)
		return false;
	/* Sectors left in the chunk where the request starts on the disk. */
	start = blk_rq_pos(rq) + (lo->lo_offset >> SECTOR_SHIFT) +
		get_start_sect(bdev);
	return chunk - sector_div(start, chunk) < sectors;
}

/*
 * Would a worker do better with @cmd than its submitter? For asynchronous
 * direct I/O, when more than nowait_depth requests are in the device (the
 * submitter keeps a queue of them, or several submitters do): the worker
 * issues on a CPU of its own choosing (the workqueue is unbound) while the
 * submitter goes on submitting, as with the stock driver, where the fast
 * path would issue every request on the submitter's CPU (ext4-dio
 * rand-read-qd32 in bench/: the fast path alone made 0.57 of stock's IOPS
 * on 2 CPUs). Unless the workers are behind by half the queue depth
 * (requests handed to them and not yet issued): then the submitters issue
 * their own requests again. Not for buffered I/O: a read served from the
 * page cache completes in ->queue_rq, so its submitter never builds a
 * queue in the device. For tmpfs, loop_tmpfs_queued() looks for the
 * queue elsewhere; page-cache hits of other files at depth are not
 * covered (not measured: the bench reads them cold). One CPU
 * online: nothing to gain. Hints read lockless: a wrong guess costs speed,
 * not correctness.
 */
static bool loop_leave_to_worker(struct loop_device *lo, bool deep)
{
	unsigned int depth = READ_ONCE(loop_nowait_depth);

	return deep && depth && num_online_cpus() > 1 &&
	       atomic_read(&lo->lo_inflight) > depth &&
	       atomic_read(&lo->lo_backlog) < loop_hw_queue_depth / 2;
}

/* tmpfs reads per decision of loop_tmpfs_queued(), and per probe. */
#define LOOP_TMPFS_WINDOW	32
#define LOOP_TMPFS_PROBE	1024

/*
 * Would a worker do better with a read of tmpfs than its submitter?
 * Copied in ->queue_rq, such a read completes before its submitter
 * submits the next: a submitter that keeps a queue of them (io_submit()
 * at depth 32) then copies all of them on its own CPU, where with the
 * workers it submits while they copy on another CPU (tmpfs-buffered
 * rand-read-qd32: 0.48 of stock's IOPS, against 1.00 with every read on
 * the workers). The depth of the device cannot tell: it stays near 1
 * either way. What tells is whether reads arrive while another request
 * is in the device: never for a submitter that waits for each read (the
 * count drops before the read completes), often for one that does not
 * while the workers copy, or for several submitters. Every
 * LOOP_TMPFS_WINDOW reads, the answer for the next window: yes if a read
 * of the window found another request in the device. While the answer
 * is no, one read in LOOP_TMPFS_PROBE goes to a worker anyway, as a
 * probe: the fast path alone may leave nothing in the device to find (on
 * 6.1 its completion softirq usually runs before ->queue_rq returns).
 * Any other request counts too (a flush, a write, a probe by udev): it
 * costs a window or two of reads on the workers. Never if nowait_depth
 * is 0 or one CPU is online, nor while the workers are behind by half
 * the queue depth, as in loop_leave_to_worker(). Called once per read
 * that could take the fast path. Hints, lockless.
 */
static bool loop_tmpfs_queued(struct loop_device *lo)
{
	bool queued = READ_ONCE(lo->lo_tmpfs_queued);
	unsigned int seen;

	if (!READ_ONCE(loop_nowait_depth) || num_online_cpus() < 2 ||
	    atomic_read(&lo->lo_backlog) >= loop_hw_queue_depth / 2)
		return false;
	/* This read is counted in lo_inflight already. */
	if (atomic_read(&lo->lo_inflight) > 1)
		atomic_inc(&lo->lo_tmpfs_overlaps);
	seen = atomic_inc_return(&lo->lo_tmpfs_reads);
	if (!(seen % LOOP_TMPFS_WINDOW)) {
		queued = atomic_xchg(&lo->lo_tmpfs_overlaps, 0) > 0;
		WRITE_ONCE(lo->lo_tmpfs_queued, queued);
	}
	return queued || !(seen % LOOP_TMPFS_PROBE);
}

/*
 * May ->queue_rq issue @cmd itself (loop_try_nowait())? Only a read or a
 * write the backing file promises to take without waiting (or a read of a
 * tmpfs file whose pages are all in memory), and only from
 * a context where the backing file's filesystem may run as if called by
 * the submitter (Documentation/admin-guide/blockdev/loop.rst says why each
 * check is there):
 *  - unless a worker is better placed to issue it (loop_leave_to_worker());
 *  - for direct I/O to a block device, no request that device would
 *    have to split (loop_backing_would_split());
 *  - no bio whose submitter must not block (REQ_NOWAIT, io_uring's first
 *    try; a merge keeps the first bio's flags only): IOCB_NOWAIT still
 *    allocates and may wait for a lock or a journal handle, the worker
 *    never makes the submitter wait;
 *  - not inside a filesystem transaction (jbd2, XFS and btrfs keep theirs
 *    in current->journal_info; the backing filesystem would take it for
 *    its own);
 *  - not in reclaim, nor in a scope that must not recurse into I/O or
 *    filesystems: every loop worker and this path itself run with
 *    PF_MEMALLOC_NOIO, so a device stacked on another never nests here
 *    (a no-fs scope is allowed for a read of tmpfs, which takes none of
 *    the locks such a scope guards: readahead of the device);
 *    nor in a workqueue worker (kblockd dispatching for every device, the
 *    writeback workers): no context switch to save there, and kblockd
 *    must not wait for a backing file;
 *  - no fatal signal pending (the file would answer EINTR);
 *  - no other queue's requests in the submitter's plug, cached or queued:
 *    a sleep here, with the plug detached, would keep them from their
 *    device, which the backing file may need;
 *  - inside submit_bio() (current->bio_list) only with nothing on its
 *    lists: the lists are then set aside while we issue, so that the
 *    file's bios go out at once (on the lists they would wait until we
 *    return, and a filesystem that waits for one, reading metadata, would
 *    wait forever), and a sleep here holds back no other bio;
 *  - where sleeping is allowed: the queue dispatches under SRCU
 *    (BLK_MQ_F_BLOCKING), but a stacked driver may call us under RCU or
 *    with preemption off;
 *  - with half of the stack left;
 *  - from a submitter in the request's block cgroup.
 */
static bool loop_nowait_allowed(struct loop_device *lo,
				struct blk_mq_hw_ctx *hctx, struct loop_cmd *cmd)
{
	struct request *rq = blk_mq_rq_from_pdu(cmd);
	struct file *file = lo->lo_backing_file;
	unsigned int refused = PF_MEMALLOC | PF_MEMALLOC_NOIO |
			       PF_MEMALLOC_NOFS | PF_WQ_WORKER;
	bool tmpfs_read = false;

	if (!READ_ONCE(loop_nowait) || !(hctx->flags & BLK_MQ_F_BLOCKING) ||
	    READ_ONCE(lo->lo_nowait_refused))
		return false;
	if (req_op(rq) != REQ_OP_READ && req_op(rq) != REQ_OP_WRITE)
		return false;
	if (loop_rq_flags(rq) & REQ_NOWAIT)
		return false;
	if (!(file->f_mode & FMODE_NOWAIT)) {
		if (req_op(rq) != REQ_OP_READ || !shmem_mapping(file->f_mapping))
			return false;
		/* tmpfs's read takes no lock that a no-fs scope is for. */
		refused &= ~PF_MEMALLOC_NOFS;
		tmpfs_read = true;
	}
	if (req_op(rq) == REQ_OP_WRITE && !cmd->use_aio &&
	    !loop_nowait_buffered_write(file))
		return false;
	/* Before the split check: cheaper, and it settles deep queues. */
	if (loop_leave_to_worker(lo, cmd->use_aio) ||
	    (cmd->use_aio && loop_backing_would_split(lo, file, rq)))
		return false;
	if (current->journal_info || loop_bio_list_busy())
		return false;
	if (current->flags & refused)
		return false;
	if (!preemptible() || rcu_preempt_depth() || fatal_signal_pending(current))
		return false;
	if (loop_plug_holds_others(current->plug, rq->q))
		return false;
	if (!loop_stack_has_room() || !loop_in_cmd_blkcg(cmd))
		return false;
	if (!tmpfs_read)
		return true;
	/*
	 * After the checks of the context: only reads that could take the
	 * fast path count, and use up probes. Last: the only check that
	 * walks the file's pages.
	 */
	return !loop_tmpfs_queued(lo) && loop_tmpfs_read_resident(lo, file, rq);
}

/*
 * The fast path: issue @cmd's read or write from ->queue_rq, with
 * IOCB_NOWAIT, instead of handing it to a worker (a context switch each
 * way). The same settings as the worker's (no I/O from our allocations,
 * writeback throttled against the backing device only, the request's
 * memory cgroup), and no plug and no bio lists: bios of the backing file
 * must not join the plug list that the block layer may be dispatching us
 * from, nor wait on submit_bio()'s lists for us to return. False if the
 * worker must issue it: not allowed here, or the file did not do all of
 * it at once (refused, failed or short; nothing completed, @cmd is the
 * worker's). True if issued: it completes as any other, and if the file
 * refuses, fails or shortens it from an asynchronous completion,
 * loop_complete_rq() sends it to the worker.
 */
static bool loop_try_nowait(struct loop_device *lo, struct blk_mq_hw_ctx *hctx,
			    struct loop_cmd *cmd)
{
	/* Read before issuing: see loop_handle_cmd(). */
	struct cgroup_subsys_state *memcg_css = cmd->memcg_css;
	struct request *rq = blk_mq_rq_from_pdu(cmd);
	struct loop_io_saved saved;
	struct bio_list *bio_list;
	struct blk_plug *plug;
	long ret;

	if (!loop_nowait_allowed(lo, hctx, cmd))
		return false;
	cmd->nowait = true;
	loop_io_enter(&saved, memcg_css);
	plug = loop_plug_detach();
	bio_list = current->bio_list;
	current->bio_list = NULL;

	ret = loop_do_request(lo, cmd, IOCB_NOWAIT);

	current->bio_list = bio_list;
	current->plug = plug;
	loop_io_leave(&saved, memcg_css);

	/*
	 * Refused, failed (EOPNOTSUPP from a file that cannot do it without
	 * waiting after all, EINTR for a fatal signal of the submitter) or
	 * short: the worker does the whole request again, waiting. What was
	 * done of it (a part, or readahead started) is done again or used.
	 * An asynchronous attempt always answers -EIOCBQUEUED here but for
	 * -EAGAIN: loop_complete_rq() judges its result.
	 */
	if (ret != -EIOCBQUEUED && ret != blk_rq_bytes(rq)) {
		/*
		 * Not latched, unlike the completion's EOPNOTSUPP: answered
		 * at once, it is this request's, not the device's below (on
		 * 6.1, loop_io_test's nest.ext4 gets such answers; latching
		 * them turned the fast path off there).
		 */
		cmd->nowait = false;
		return false;
	}
	if (memcg_css)
		css_put(memcg_css);
	atomic_long_inc(&lo->lo_nowait_issued);
	/* After -EIOCBQUEUED, @cmd may already be completed and reused. */
	if (ret != -EIOCBQUEUED) {
		cmd->ret = ret;
		blk_mq_complete_request(rq);
	}
	return true;
}

static blk_status_t loop_queue_rq(struct blk_mq_hw_ctx *hctx,
				  const struct blk_mq_queue_data *bd)
{
	struct request *rq = bd->rq;
	struct loop_cmd *cmd = blk_mq_rq_to_pdu(rq);
	struct loop_device *lo = rq->q->queuedata;
	bool to_worker = cmd->to_worker;

	blk_mq_start_request(rq);
	cmd->to_worker = false;
	/*
	 * The rest of a short transfer, or a retry: still counted, still
	 * bound. Bios may have merged into it while it waited: they are
	 * checked as a new request's are, but for the capacity during a
	 * rundown: the teardown takes it to 0 and then waits for this request
	 * (the block layer let no bio in beyond the capacity it had). The
	 * state is read after the capacity: the teardown stores them in the
	 * other order (loop_rundown()).
	 */
	if (cmd->requeued) {
		cmd->requeued = false;
		if (unlikely(loop_requeued_beyond_capacity(lo, rq) ||
			     loop_rq_from_dead_partition(lo, rq))) {
			loop_inflight_put(lo);
			return BLK_STS_IOERR;
		}
	} else if (unlikely(loop_rq_beyond_capacity(lo, rq) ||
			  loop_rq_flush_in_rundown(lo, rq) ||
			  loop_rq_from_dead_partition(lo, rq)) ||
		 !loop_inflight_get(lo))
		return BLK_STS_IOERR;

	cmd->use_aio = lo->lo_use_dio &&
		       (req_op(rq) == REQ_OP_READ || req_op(rq) == REQ_OP_WRITE);
	cmd->blkcg_css = NULL;
	cmd->memcg_css = NULL;
#ifdef CONFIG_BLK_CGROUP
	if (rq->bio) {
		cmd->blkcg_css = bio_blkcg_css(rq->bio);
#ifdef CONFIG_MEMCG
		if (cmd->blkcg_css)
			cmd->memcg_css = cgroup_get_e_css(cmd->blkcg_css->cgroup,
							  &memory_cgrp_subsys);
#endif
	}
#endif
	if (!to_worker && loop_try_nowait(lo, hctx, cmd))
		return BLK_STS_OK;
	cmd->nowait = false;
	loop_queue_cmd(lo, cmd);
	return BLK_STS_OK;
}

/* Completion, in the context blk-mq chooses. Does not sleep. */
static void loop_complete_rq(struct request *rq)
{
	struct loop_device *lo = rq->q->queuedata;
	struct loop_cmd *cmd = blk_mq_rq_to_pdu(rq);
	unsigned int bytes = blk_rq_bytes(rq);
	long ret = cmd->ret;
	blk_status_t status = BLK_STS_OK;
	struct bio *bio;

	if (cmd->nowait && ret != bytes) {
		/*
		 * An IOCB_NOWAIT read or write that the file refused after
		 * taking it (-EAGAIN: a device below out of tags), could not
		 * do (-EOPNOTSUPP: a device below without REQ_NOWAIT) or did
		 * in part: the worker does it all again, waiting. Still
		 * counted, as a short transfer. A file that cannot do it is
		 * not asked again during this attachment.
		 */
		if (ret == -EOPNOTSUPP)
			WRITE_ONCE(lo->lo_nowait_refused, true);
		cmd->requeued = true;
		cmd->to_worker = true;
		blk_mq_requeue_request(rq, true);
		return;
	} else if (ret < 0) {
		status = errno_to_blk_status(ret);
	} else if ((req_op(rq) == REQ_OP_READ || req_op(rq) == REQ_OP_WRITE) &&
		   ret < bytes) {
		/*
		 * Short transfer: account what was done, retry the rest. In
		 * whole sectors: the retry starts at the request's sector,
		 * which advances by whole sectors only (the bytes of a partial
		 * one are transferred again).
		 */
		ret = round_down(ret, SECTOR_SIZE);
		if (ret > 0) {
			blk_update_request(rq, BLK_STS_OK, ret);
			/* Stays counted: a drain waits for the rest too. */
			cmd->requeued = true;
			blk_mq_requeue_request(rq, true);
			return;
		}
		/* No progress at all: reads return zeroes and fail. */
		if (req_op(rq) == REQ_OP_READ)
			for (bio = rq->bio; bio; bio = bio->bi_next)
				zero_fill_bio(bio);
		status = BLK_STS_IOERR;
	}
	/*
	 * Out of the count before the end: once the request has ended, a
	 * teardown that saw the count reach zero may have deleted the device
	 * and freed @lo (the queue no longer waits for this request). The
	 * file is not touched after this point.
	 */
	loop_inflight_put(lo);
	blk_mq_end_request(rq, status);
}

static int loop_init_request(struct blk_mq_tag_set *set, struct request *rq,
			     unsigned int hctx_idx, unsigned int numa_node)
{
	struct loop_cmd *cmd = blk_mq_rq_to_pdu(rq);

	cmd->requeued = false;
	cmd->to_worker = false;
	return 0;
}

const struct blk_mq_ops loop_mq_ops = {
	.queue_rq	= loop_queue_rq,
	.init_request	= loop_init_request,
	.complete	= loop_complete_rq,
};
