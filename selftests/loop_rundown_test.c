// SPDX-License-Identifier: GPL-2.0
/*
 * The rundown of a device and what may happen meanwhile: opens of its
 * partitions and mounts while it runs down, autoclear-delete whoever else
 * holds or removes the device, teardowns run by closers that are not
 * ordinary tasks (io_uring's workers) or are stopped by a tracer, the
 * partitions an attach announces, and filesystems that write up to their
 * umount. Each race test names the race it hunts and bounds its rounds by
 * count and time.
 */
#include "loop_test_util.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <stddef.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <linux/io_uring.h>
#include <linux/netlink.h>

#include "kselftest_harness.h"

#undef TEST_TIMEOUT_DEFAULT
#define TEST_TIMEOUT_DEFAULT 300

#define MiB (1024 * 1024)

/* Is every byte of @path (first @len bytes) @fill? 1 yes, 0 no, -errno. */
static int file_is_filled(const char *path, off_t len, int fill, off_t *bad)
{
	unsigned char buf[65536];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	off_t off = 0;

	if (fd < 0)
		return -errno;
	while (off < len) {
		ssize_t r = pread(fd, buf, sizeof(buf), off);

		if (r <= 0) {
			close(fd);
			return r < 0 ? -errno : -EIO;
		}
		for (ssize_t i = 0; i < r; i++)
			if (buf[i] != fill) {
				*bad = off + i;
				close(fd);
				return 0;
			}
		off += r;
	}
	close(fd);
	return 1;
}

/* A partitioned image: MBR with partitions at sectors 8-135, 136-263. */
static char *make_partitioned(const char *tag, off_t size)
{
	char *path = lt_make_file(tag, size, 0);
	int fd;

	if (!path)
		return NULL;
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0 || lt_write_mbr(fd)) {
		free(path);
		path = NULL;
	}
	if (fd >= 0)
		close(fd);
	return path;
}

/*
 * Opens of a partition during the rundown (the race a review found): a
 * partition opened between the last close (or LOOP_CLR_FD) and the
 * teardown used to make the teardown's partition drop fail, so loopNp1
 * survived into the next attachment, and writes through it landed in the
 * next backing file. The sole opener writes a large buffered amount to a
 * partitioned device (so that the teardown's write-back takes a while)
 * and detaches, while a second process keeps opening loopNp1 O_RDWR:
 * before the detach it closes each at once; from the moment LOOP_CLR_FD
 * is called it keeps every descriptor it gets and writes 0xee through all
 * of them, until told to stop. The device is then attached to a zero-filled
 * file through the same open: no partition may exist, and that file must
 * still be all zeroes after the writer's last round. (If the writer had
 * loopNp1 open at the very moment of LOOP_CLR_FD, the detach is deferred
 * to the last close instead: such a round is counted apart.)
 */
struct part_writer {
	_Atomic int stop, detaching;
	_Atomic long opens, held, writes;
};

static void partition_writes(struct part_writer *w, int *held, int nheld,
			     const char *buf)
{
	for (int i = 0; i < nheld; i++)
		if (pwrite(held[i], buf, 4096, 0) == 4096 && !fsync(held[i]))
			atomic_fetch_add(&w->writes, 1);
}

static void partition_writer(int n, struct part_writer *w)
{
	char path[64], buf[4096];
	int held[64], nheld = 0;

	memset(buf, 0xee, sizeof(buf));
	snprintf(path, sizeof(path), "/dev/loop%dp1", n);
	while (!atomic_load(&w->stop)) {
		int fd = open(path, O_RDWR | O_CLOEXEC);

		if (fd >= 0) {
			atomic_fetch_add(&w->opens, 1);
			if (!atomic_load(&w->detaching)) {
				/* Briefly: the detach should find it closed. */
				close(fd);
				usleep(500);
			} else if (nheld < 64) {
				held[nheld++] = fd;
				atomic_fetch_add(&w->held, 1);
			} else {
				close(fd);
			}
		}
		partition_writes(w, held, nheld, buf);
	}
	/* A last round through the descriptors, after the next attach. */
	partition_writes(w, held, nheld, buf);
	for (int i = 0; i < nheld; i++)
		close(held[i]);
}

TEST(partition_open_during_rundown_never_reaches_next_attachment)
{
	char *parted = make_partitioned("rdparted", 64 * MiB);
	char *plain = lt_make_file("rdplain", 64 * MiB, 0);
	double end = lt_deadline(60);
	struct part_writer *w;
	unsigned char *data;
	int round, rounds = 0, deferred = 0;
	long held = 0;

	ASSERT_NE(NULL, parted);
	ASSERT_NE(NULL, plain);
	w = mmap(NULL, sizeof(*w), PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, w);
	data = malloc(8 * MiB);
	ASSERT_NE(NULL, data);
	memset(data, 0x5a, 8 * MiB);

	/* Until an open has come through during a rundown, 12 rounds at most. */
	for (round = 0; round < 12 &&
	     ((rounds < lt_least(5) && lt_now() < end) || !held); round++) {
		struct loop_info64 info;
		off_t bad = -1;
		pid_t pid;
		int fd, n, status;

		fd = lt_attach_free(parted, LO_FLAGS_PARTSCAN, &n);
		ASSERT_LE(0, fd);
		ASSERT_TRUE(lt_exists("/sys/block/loop%d/loop%dp1", n));
		memset(w, 0, sizeof(*w));
		pid = fork();
		ASSERT_LE(0, pid);
		if (pid == 0) {
			partition_writer(n, w);
			_exit(0);
		}
		/* Let the writer get going through the live partition. */
		while (!atomic_load(&w->opens) && lt_now() < end)
			usleep(1000);
		/* Dirty pages well past both partitions, then detach. */
		ASSERT_EQ(0, lt_dirty(fd, data, 8 * MiB, 1 * MiB,
				      1 * MiB + lt_scaled(24 * MiB, 8 * MiB)));
		atomic_store(&w->detaching, 1);
		ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD)) {
			TH_LOG("round %d: LOOP_CLR_FD: %s", round,
			       strerror(errno));
		}
		if (!ioctl(fd, LOOP_GET_STATUS64, &info)) {
			/* Deferred: loopNp1 was open at that moment. */
			atomic_store(&w->stop, 1);
			ASSERT_EQ(pid, waitpid(pid, &status, 0));
			close(fd);
			ASSERT_FALSE(lt_exists("/sys/block/loop%d/loop", n));
			deferred++;
			continue;
		}
		/* No partition is left once LOOP_CLR_FD has returned. */
		ASSERT_FALSE(lt_exists("/sys/block/loop%d/loop%dp1", n)) {
			TH_LOG("round %d: loop%dp1 survived the teardown",
			       round, n);
		}
		/* The next attachment, through the same open. */
		ASSERT_EQ(0, lt_configure(fd, plain, O_RDWR, 0, 0, 0, 0)) {
			TH_LOG("round %d: attach loop%d again: %s", round, n,
			       strerror(errno));
		}
		usleep(20000);
		atomic_store(&w->stop, 1);
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		ASSERT_TRUE(WIFEXITED(status));
		ASSERT_FALSE(lt_exists("/sys/block/loop%d/loop%dp1", n));
		ASSERT_EQ(0, fsync(fd));
		ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
		close(fd);
		ASSERT_EQ(1, file_is_filled(plain, 64 * MiB, 0, &bad)) {
			TH_LOG("round %d: byte %lld of the next attachment's file was written through loop%dp1",
			       round, (long long)bad, n);
		}
		held += atomic_load(&w->held);
		rounds++;
	}
	TH_LOG("%d rounds, %d deferred; %ld partition opens completed after LOOP_CLR_FD was called",
	       rounds, deferred, held);
	ASSERT_LE(lt_least(2), rounds);
	/* Else the race this test is about never happened. */
	ASSERT_LT(0, held);
	munmap(w, sizeof(*w));
	free(data);
	unlink(parted);
	unlink(plain);
	free(parted);
	free(plain);
}

/*
 * A mount that starts while the device runs down: it used to succeed, and
 * the teardown then unbound the device under the mounted filesystem. The
 * sole opener writes a lot and detaches (the teardown's write-back takes a
 * while) while another process tries to mount the device from the moment
 * LOOP_CLR_FD is called. A mount that succeeds must have come before the
 * detach decided (which is then deferred: the device stays bound under
 * it); one during the rundown must fail.
 */
TEST(mount_during_rundown_is_refused_or_keeps_device)
{
	char mnt[] = "/tmp/rd-mnt-XXXXXX";
	char *img = lt_make_file("rdmount", 0, 0);
	double end = lt_deadline(60);
	char cmd[512], dev[64];
	unsigned char *data;
	_Atomic int *shared;
	int round, mounted_rounds = 0;
	off_t top = 16 * MiB + lt_scaled(48 * MiB, 8 * MiB);

	ASSERT_NE(NULL, img);
	ASSERT_EQ(0, truncate(img, 16 * MiB));
	/*
	 * 4 KiB blocks, the block size the device has at its first open: the
	 * mount then does not wait for a write-back to change it.
	 */
	snprintf(cmd, sizeof(cmd), "mkfs.ext4 -q -F -b 4096 %s >/dev/null 2>&1",
		 img);
	ASSERT_EQ(0, lt_run(cmd));
	ASSERT_EQ(0, truncate(img, 64 * MiB));
	ASSERT_NE(NULL, mkdtemp(mnt));
	data = malloc(8 * MiB);
	ASSERT_NE(NULL, data);
	memset(data, 0x77, 8 * MiB);
	shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, shared);

	for (round = 0; round < 10 && lt_now() < end; round++) {
		struct loop_info64 info;
		pid_t pid;
		int fd, n, status;

		fd = lt_attach_free(img, 0, &n);
		ASSERT_LE(0, fd);
		snprintf(dev, sizeof(dev), "/dev/loop%d", n);
		shared[0] = 0;	/* stop */
		shared[1] = 0;	/* mounted */
		shared[2] = 0;	/* started */
		shared[3] = 0;	/* go: LOOP_CLR_FD is being called */
		shared[5] = 0;	/* failed mounts */
		pid = fork();
		ASSERT_LE(0, pid);
		if (pid == 0) {
			shared[2] = 1;
			while (!shared[3])
				;
			while (!shared[0]) {
				if (!mount(dev, mnt, "ext4", MS_RDONLY, NULL)) {
					shared[1] = 1;
					_exit(0);
				}
				shared[4] = errno;
				shared[5]++;
			}
			_exit(0);
		}
		while (!shared[2])
			usleep(100);
		ASSERT_EQ(0, lt_dirty(fd, data, 8 * MiB, 16 * MiB, top));
		shared[3] = 1;
		ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
		shared[0] = 1;
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		if (shared[1]) {
			/* Mounted before the detach: it must still be bound. */
			ASSERT_EQ(0, ioctl(fd, LOOP_GET_STATUS64, &info)) {
				TH_LOG("round %d: %s mounted at %s, but unbound",
				       round, dev, mnt);
			}
			ASSERT_EQ(0, umount(mnt));
			mounted_rounds++;
		}
		close(fd);
		/* Unbound once the last user is gone. */
		fd = lt_open_dev(n, O_RDONLY);
		ASSERT_LE(0, fd);
		ASSERT_NE(0, ioctl(fd, LOOP_GET_STATUS64, &info));
		close(fd);
	}
	TH_LOG("%d rounds, %d with a mount before the detach; %d failed mounts in the last, last errno %d",
	       round, mounted_rounds, shared[5], shared[4]);
	munmap(shared, 4096);
	free(data);
	rmdir(mnt);
	unlink(img);
	free(img);
}

/*
 * Autoclear-delete and LOOP_CLR_FD: a detach of an autoclear-delete device
 * removes the device whether or not another opener (a prober) has it open
 * at that moment. The sole opener's LOOP_CLR_FD used to leave it in place.
 */
TEST(autoclear_delete_removed_by_clr_fd_with_or_without_other_opener)
{
	char *file = lt_make_file("acdclr", 1 * MiB, 0);
	int i;

	ASSERT_NE(NULL, file);
	for (i = 0; i < 2; i++) {
		int fd, other = -1, n;

		fd = lt_attach_free(file, LO_FLAGS_AUTOCLEAR_DELETE, &n);
		ASSERT_LE(0, fd);
		if (i == 1) {
			other = lt_open_dev(n, O_RDONLY);
			ASSERT_LE(0, other);
		}
		ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
		close(fd);
		if (other >= 0)
			close(other);
		ASSERT_FALSE(lt_exists("/sys/block/loop%d", n)) {
			TH_LOG("%s: loop%d still exists after LOOP_CLR_FD and close",
			       i ? "with another opener" : "sole opener", n);
		}
	}
	unlink(file);
	free(file);
}

/*
 * LOOP_CTL_REMOVE against an autoclear-delete teardown with a prober:
 * REMOVE used to hide the device first, so that the teardown did not
 * delete it, then fail with EBUSY (the prober had it open) and make it
 * visible again: the deletion was lost. Whatever REMOVE answers, the
 * device must be gone once everybody has closed it. The REMOVEs race with
 * the teardown that the test's own close runs when it is the last one,
 * and stop when that close returns: a later REMOVE would delete what a
 * broken teardown left behind.
 */
struct remover {
	_Atomic int n;
	_Atomic int stop;
	_Atomic long busy, removed, nodev, calls;
	int err;
};

static void *remove_loop(void *arg)
{
	struct remover *r = arg;

	while (!atomic_load(&r->stop)) {
		int n = atomic_load(&r->n);
		int err;

		if (n < 0) {
			atomic_fetch_add(&r->calls, 1);
			continue;
		}
		err = lt_ctl(LOOP_CTL_REMOVE, n);
		if (err == -EBUSY)
			atomic_fetch_add(&r->busy, 1);
		else if (!err)
			atomic_fetch_add(&r->removed, 1);
		else if (err == -ENODEV)
			atomic_fetch_add(&r->nodev, 1);
		else
			r->err = -err;
		atomic_fetch_add(&r->calls, 1);
	}
	return NULL;
}

struct opener {
	_Atomic int n;
	_Atomic int stop;
	_Atomic long iter;
};

static void *open_loop(void *arg)
{
	struct opener *o = arg;
	char buf[512];

	while (!atomic_load(&o->stop)) {
		int n = atomic_load(&o->n);
		int fd = n >= 0 ? lt_open_dev(n, O_RDONLY) : -1;

		if (fd >= 0) {
			if (pread(fd, buf, sizeof(buf), 0) < 0)
				buf[0] = 0;
			close(fd);
		}
		atomic_fetch_add(&o->iter, 1);
	}
	return NULL;
}

TEST(autoclear_delete_survives_remove_failing_with_ebusy)
{
	char *file = lt_make_file("acdrm", 1 * MiB, 0);
	struct remover r = { .n = -1 };
	struct opener o = { .n = -1 };
	double end = lt_deadline(30);
	int i, recreated = 0;
	pthread_t tr, to;

	ASSERT_NE(NULL, file);
	ASSERT_EQ(0, pthread_create(&tr, NULL, remove_loop, &r));
	ASSERT_EQ(0, pthread_create(&to, NULL, open_loop, &o));
	for (i = 0; i < 300 && lt_now() < end; i++) {
		long iter0, calls0;
		ino_t id, now;
		int fd, n;

		/* ENXIO: a REMOVE of the last round took the device. */
		do {
			fd = lt_attach_free(file, LO_FLAGS_AUTOCLEAR |
					 LO_FLAGS_AUTOCLEAR_DELETE, &n);
		} while (fd == -ENXIO);
		ASSERT_LE(0, fd) {
			TH_LOG("round %d: attach: %s", i, strerror(-fd));
		}
		id = lt_dev_id(n);
		ASSERT_NE(0, id);
		atomic_store(&o.n, n);
		atomic_store(&r.n, n);
		close(fd);
		/*
		 * If that close was the last, the teardown is over: no REMOVE
		 * from here, or it would delete a device that the teardown
		 * wrongly left unbound, and hide the bug.
		 */
		atomic_store(&r.n, -1);
		calls0 = atomic_load(&r.calls);
		while (atomic_load(&r.calls) < calls0 + 2)
			;
		/* An open in progress now is closed after two more rounds. */
		iter0 = atomic_load(&o.iter);
		while (atomic_load(&o.iter) < iter0 + 2)
			;
		atomic_store(&o.n, -1);
		/* The prober's calls for @n are over. */
		iter0 = atomic_load(&o.iter);
		while (atomic_load(&o.iter) < iter0 + 2)
			;
		/*
		 * The opener's open of the deleted device, if its node was
		 * looked up just before, creates loop@n anew: a new device
		 * (unbound, the next round's), not the one that survived.
		 */
		now = lt_dev_id(n);
		ASSERT_NE(id, now) {
			TH_LOG("round %d: loop%d survived (REMOVE: %ld EBUSY, %ld removed, %ld ENODEV)",
			       i, n, r.busy, r.removed, r.nodev);
		}
		recreated += now != 0;
	}
	atomic_store(&r.stop, 1);
	atomic_store(&o.stop, 1);
	pthread_join(tr, NULL);
	pthread_join(to, NULL);
	TH_LOG("%d rounds: REMOVE %ld EBUSY, %ld removed, %ld ENODEV; %d created again by an open",
	       i, r.busy, r.removed, r.nodev, recreated);
	ASSERT_EQ(0, r.err) {
		TH_LOG("LOOP_CTL_REMOVE: %s", strerror(r.err));
	}
	unlink(file);
	free(file);
}

/* io_uring, raw: one ring of 4 entries for IORING_OP_CLOSE. */
struct ring {
	int fd;
	struct io_uring_sqe *sqes;
	unsigned int *sq_tail, *sq_mask, *sq_array;
	unsigned int *cq_head, *cq_tail, *cq_mask;
	struct io_uring_cqe *cqes;
};

static int ring_setup(struct ring *r)
{
	struct io_uring_params p;
	void *sq, *cq;

	memset(&p, 0, sizeof(p));
	r->fd = syscall(__NR_io_uring_setup, 4, &p);
	if (r->fd < 0)
		return -errno;
	sq = mmap(NULL, p.sq_off.array + p.sq_entries * sizeof(unsigned int),
		  PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
		  IORING_OFF_SQ_RING);
	cq = mmap(NULL, p.cq_off.cqes + p.cq_entries *
		  sizeof(struct io_uring_cqe), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_CQ_RING);
	r->sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe),
		       PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
		       r->fd, IORING_OFF_SQES);
	if (sq == MAP_FAILED || cq == MAP_FAILED || r->sqes == MAP_FAILED)
		return -ENOMEM;
	r->sq_tail = sq + p.sq_off.tail;
	r->sq_mask = sq + p.sq_off.ring_mask;
	r->sq_array = sq + p.sq_off.array;
	r->cq_head = cq + p.cq_off.head;
	r->cq_tail = cq + p.cq_off.tail;
	r->cq_mask = cq + p.cq_off.ring_mask;
	r->cqes = cq + p.cq_off.cqes;
	return 0;
}

/* Close @fd through the ring, waiting for its completion: its result. */
static int ring_close(struct ring *r, int fd, bool async)
{
	unsigned int tail = *r->sq_tail, idx = tail & *r->sq_mask, head;
	struct io_uring_sqe *sqe = &r->sqes[idx];
	int res;

	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = IORING_OP_CLOSE;
	sqe->fd = fd;
	if (async)
		sqe->flags = IOSQE_ASYNC;
	r->sq_array[idx] = idx;
	__atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
	if (syscall(__NR_io_uring_enter, r->fd, 1, 1, IORING_ENTER_GETEVENTS,
		    NULL, 0) < 0)
		return -errno;
	head = *r->cq_head;
	if (head == __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE))
		return -EAGAIN;
	res = r->cqes[head & *r->cq_mask].res;
	__atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
	return res;
}

/*
 * Last close by io_uring. Inline (the submitting task closes): the task
 * work runs before io_uring_enter() returns, so the device is unbound
 * then, as after close(). With IOSQE_ASYNC an io-wq worker closes, and
 * io_uring releases the file only after it posted the completion: the
 * device is unbound within a moment, without any further close or the
 * worker's exit (user workers run task work at their own pace, so our
 * teardown goes to the workqueue), and can be attached again.
 */
TEST(last_close_through_io_uring_inline_and_by_io_worker)
{
	char *file = lt_make_file("uring", 1 * MiB, 0);
	struct ring r = { .fd = -1 };
	double end = lt_deadline(30);
	int async, err;

	ASSERT_NE(NULL, file);
	err = ring_setup(&r);
	if (err == -ENOSYS || err == -EPERM)
		SKIP(return, "no io_uring: %s", strerror(-err));
	ASSERT_EQ(0, err);
	for (async = 0; async < 2; async++) {
		for (int round = 0; round < 20 &&
		     (round < lt_least(4) || lt_now() < end); round++) {
			struct loop_info64 info;
			int fd, fd2, n, k;

			fd = lt_attach_free(file, LO_FLAGS_AUTOCLEAR, &n);
			ASSERT_LE(0, fd);
			ASSERT_EQ(0, ring_close(&r, fd, async));
			/* Well within the io-wq worker's 5 s idle timeout. */
			for (k = 0; async && k < 2000 &&
			     lt_exists("/sys/block/loop%d/loop", n); k++)
				usleep(1000);
			ASSERT_FALSE(lt_exists("/sys/block/loop%d/loop", n)) {
				TH_LOG("%s round %d: loop%d still bound after the io_uring close",
				       async ? "async" : "inline", round, n);
			}
			fd2 = lt_open_dev(n, O_RDWR);
			ASSERT_LE(0, fd2);
			ASSERT_EQ(0, lt_configure(fd2, file, O_RDWR, 0, 0, 0, 0)) {
				TH_LOG("%s round %d: attach after the io_uring close",
				       async ? "async" : "inline", round);
			}
			ASSERT_EQ(0, ioctl(fd2, LOOP_CLR_FD));
			ASSERT_NE(0, ioctl(fd2, LOOP_GET_STATUS64, &info));
			close(fd2);
			lt_ctl(LOOP_CTL_REMOVE, n);
		}
	}
	close(r.fd);
	unlink(file);
	free(file);
}

/*
 * A tracee (strace) stopped at the exit of its last close: the kernel runs
 * pending task work before a ptrace stop (ptrace_notify()), so the
 * teardown has run by the time the tracer sees the stop, and a tracer that
 * never resumes the tracee does not hold the device (documented in the
 * admin guide). When the tracee's close() returns to it, the device is
 * unbound too.
 */
TEST(tracee_stopped_at_close_exit_has_run_its_teardown)
{
	char *file = lt_make_file("trace", 1 * MiB, 0);
	int fd, n, status, pipefd[2];
	pid_t pid;

	ASSERT_NE(NULL, file);
	fd = lt_attach_free(file, LO_FLAGS_AUTOCLEAR, &n);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, pipe(pipefd));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		char c;

		close(pipefd[1]);
		if (ptrace(PTRACE_TRACEME, 0, NULL, NULL))
			_exit(1);
		raise(SIGSTOP);
		/* The last close: the parent closed its own copy. */
		close(fd);
		/* Back in user space: the teardown ran. */
		if (lt_exists("/sys/block/loop%d/loop", n))
			_exit(2);
		if (read(pipefd[0], &c, 1) < 0)
			_exit(3);
		_exit(0);
	}
	close(pipefd[0]);
	close(fd);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFSTOPPED(status));
	ASSERT_EQ(0, ptrace(PTRACE_SETOPTIONS, pid, NULL,
			    (void *)PTRACE_O_TRACESYSGOOD));
	/* Run to the exit of close(): entry stop, then exit stop. */
	for (;;) {
		long nr;

		ASSERT_EQ(0, ptrace(PTRACE_SYSCALL, pid, NULL, NULL));
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		ASSERT_TRUE(WIFSTOPPED(status));
		if (WSTOPSIG(status) != (SIGTRAP | 0x80))
			continue;
		nr = ptrace(PTRACE_PEEKUSER, pid,
			    (void *)offsetof(struct user_regs_struct, orig_rax),
			    NULL);
		if (nr != __NR_close)
			continue;
		/* Entry stop; the next one is the exit stop. */
		ASSERT_EQ(0, ptrace(PTRACE_SYSCALL, pid, NULL, NULL));
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		ASSERT_TRUE(WIFSTOPPED(status));
		break;
	}
	/* Stopped at the exit of its last close: the teardown is done. */
	ASSERT_FALSE(lt_exists("/sys/block/loop%d/loop", n)) {
		TH_LOG("loop%d is still bound while its closer is stopped at the exit of close()",
		       n);
	}
	ASSERT_EQ(0, ptrace(PTRACE_DETACH, pid, NULL, NULL));
	close(pipefd[1]);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status)) {
		TH_LOG("tracee: step %d", WEXITSTATUS(status));
	}
	lt_ctl(LOOP_CTL_REMOVE, n);
	unlink(file);
	free(file);
}

/* Parse a uevent: ACTION, DEVNAME and DEVTYPE into the buffers given. */
static void uevent_fields(const char *msg, size_t len, char *action,
			  char *devname, char *devtype, size_t sz)
{
	const char *p = msg, *end = msg + len;

	action[0] = devname[0] = devtype[0] = 0;
	for (; p < end; p += strlen(p) + 1) {
		if (!strncmp(p, "ACTION=", 7))
			snprintf(action, sz, "%s", p + 7);
		else if (!strncmp(p, "DEVNAME=", 8))
			snprintf(devname, sz, "%s", p + 8);
		else if (!strncmp(p, "DEVTYPE=", 8))
			snprintf(devtype, sz, "%s", p + 8);
	}
}

/* Count add and remove uevents of loop@n's partitions until quiet. */
static void count_partition_events(int sock, int n, int *adds, int *removes)
{
	char buf[8192], action[32], devname[64], devtype[32], prefix[32];

	snprintf(prefix, sizeof(prefix), "loop%dp", n);
	for (;;) {
		struct pollfd pfd = { .fd = sock, .events = POLLIN };
		ssize_t len;

		if (poll(&pfd, 1, 300) <= 0)
			return;
		len = recv(sock, buf, sizeof(buf) - 1, 0);
		if (len <= 0)
			return;
		buf[len] = 0;
		uevent_fields(buf, len, action, devname, devtype,
			      sizeof(action));
		if (strcmp(devtype, "partition") ||
		    strncmp(devname, prefix, strlen(prefix)))
			continue;
		if (!strcmp(action, "add"))
			(*adds)++;
		else if (!strcmp(action, "remove"))
			(*removes)++;
	}
}

/*
 * Each partition is announced exactly once per attachment (one add
 * uevent), while an opener like udev's blkid opens the whole device over
 * and over: a second scan, from the media-change flag at its next open,
 * used to drop and re-add them (remove, add: units bound to a partition
 * fail). Both ways of attaching with partition scanning: LOOP_CONFIGURE
 * with LO_FLAGS_PARTSCAN, and LOOP_SET_FD then LOOP_SET_STATUS64 with it
 * (what losetup -P does on old kernels). A detach removes each once.
 */
TEST(partitions_announced_once_per_attachment)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = 1 };
	char *parted = make_partitioned("once", 8 * MiB);
	struct opener o = { .n = -1 };
	int rcvbuf = 4 * MiB, sock, n, round;
	double end = lt_deadline(30);
	pthread_t to;

	ASSERT_NE(NULL, parted);
	n = lt_get_free();
	ASSERT_LE(0, n);
	sock = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC,
		      NETLINK_KOBJECT_UEVENT);
	ASSERT_LE(0, sock);
	setsockopt(sock, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf));
	ASSERT_EQ(0, bind(sock, (struct sockaddr *)&sa, sizeof(sa)));
	atomic_store(&o.n, n);
	ASSERT_EQ(0, pthread_create(&to, NULL, open_loop, &o));
	for (round = 0; round < 20 && (round < lt_least(4) || lt_now() < end);
	     round++) {
		int adds = 0, removes = 0, fd = lt_open_dev(n, O_RDWR);
		bool set_fd = round & 1;

		ASSERT_LE(0, fd);
		if (set_fd) {
			struct loop_info64 info;
			int bfd = open(parted, O_RDWR | O_CLOEXEC);

			ASSERT_LE(0, bfd);
			ASSERT_EQ(0, ioctl(fd, LOOP_SET_FD, bfd));
			close(bfd);
			memset(&info, 0, sizeof(info));
			info.lo_flags = LO_FLAGS_PARTSCAN;
			ASSERT_EQ(0, ioctl(fd, LOOP_SET_STATUS64, &info));
		} else {
			ASSERT_EQ(0, lt_configure(fd, parted, O_RDWR,
						  LO_FLAGS_PARTSCAN, 0, 0, 0));
		}
		/* Give the opener time for a few opens of the new device. */
		usleep(100000);
		count_partition_events(sock, n, &adds, &removes);
		ASSERT_EQ(2, adds) {
			TH_LOG("round %d (%s): %d add uevents for 2 partitions",
			       round, set_fd ? "SET_FD" : "CONFIGURE", adds);
		}
		ASSERT_EQ(0, removes) {
			TH_LOG("round %d (%s): %d remove uevents while attached",
			       round, set_fd ? "SET_FD" : "CONFIGURE", removes);
		}
		ASSERT_TRUE(lt_exists("/sys/block/loop%d/loop%dp2", n));
		adds = removes = 0;
		ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
		close(fd);
		count_partition_events(sock, n, &adds, &removes);
		ASSERT_EQ(0, adds);
		ASSERT_EQ(2, removes) {
			TH_LOG("round %d: %d remove uevents at detach",
			       round, removes);
		}
	}
	atomic_store(&o.stop, 1);
	pthread_join(to, NULL);
	close(sock);
	lt_ctl(LOOP_CTL_REMOVE, n);
	unlink(parted);
	free(parted);
}

/*
 * Filesystems whose writeback runs asynchronously (btrfs, jfs: mainline's
 * 2026 NULL dereference in the async read/write path came from I/O they
 * still issued around their umount and the device's last close): mount
 * through an autoclear device, write, unmount and detach at once, many
 * rounds. The device is unbound when umount() returns, the data is in the
 * image (mounted again through a new attachment), and the debug kernel
 * (KASAN) stays quiet.
 */
FIXTURE(asyncfs) {
	char *img;
	char mnt[64];
};

FIXTURE_VARIANT(asyncfs) {
	const char *fstype;
	const char *mkfs;
	off_t size;
};

FIXTURE_VARIANT_ADD(asyncfs, btrfs) {
	.fstype = "btrfs",
	.mkfs = "mkfs.btrfs -q -f",
	.size = 128 * MiB,
};

FIXTURE_VARIANT_ADD(asyncfs, jfs) {
	.fstype = "jfs",
	.mkfs = "mkfs.jfs -q",
	.size = 64 * MiB,
};

static bool fs_supported(const char *fstype)
{
	char line[128];
	bool found = false;
	FILE *f = fopen("/proc/filesystems", "r");

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		char *name = strrchr(line, '\t');

		name = name ? name + 1 : line;
		name[strcspn(name, "\n")] = 0;
		if (!strcmp(name, fstype))
			found = true;
	}
	fclose(f);
	return found;
}

FIXTURE_SETUP(asyncfs)
{
	char cmd[512];

	if (!fs_supported(variant->fstype))
		SKIP(return, "no %s in this kernel", variant->fstype);
	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null",
		 strtok(strdupa(variant->mkfs), " "));
	if (lt_run(cmd))
		SKIP(return, "no %s", variant->mkfs);
	self->img = lt_make_file(variant->fstype, 0, 0);
	ASSERT_NE(NULL, self->img);
	ASSERT_EQ(0, truncate(self->img, variant->size));
	snprintf(cmd, sizeof(cmd), "%s %s >/dev/null 2>&1", variant->mkfs,
		 self->img);
	ASSERT_EQ(0, lt_run(cmd));
	snprintf(self->mnt, sizeof(self->mnt), "/tmp/asyncfs-XXXXXX");
	ASSERT_NE(NULL, mkdtemp(self->mnt));
}

FIXTURE_TEARDOWN(asyncfs)
{
	if (self->img) {
		unlink(self->img);
		free(self->img);
	}
	rmdir(self->mnt);
}

/* Mount the image through an autoclear device; returns the device. */
static int mount_image(const char *img, const char *fstype,
		       const char *mnt, int *np)
{
	char dev[64];
	int fd = lt_attach_free(img, LO_FLAGS_AUTOCLEAR, np);

	if (fd < 0)
		return fd;
	snprintf(dev, sizeof(dev), "/dev/loop%d", *np);
	if (mount(dev, mnt, fstype, 0, NULL)) {
		int err = -errno;

		close(fd);
		return err;
	}
	/* The mount holds the device now. */
	close(fd);
	return 0;
}

TEST_F_TIMEOUT(asyncfs, write_umount_detach_at_once, 600)
{
	double end = lt_deadline(45);
	char path[128], buf[65536];
	int round, rounds = 0;

	for (round = 0; round < 12 && lt_now() < end; round++) {
		int n, fd, k;

		ASSERT_EQ(0, mount_image(self->img, variant->fstype,
					 self->mnt, &n)) {
			TH_LOG("round %d: mount %s", round, variant->fstype);
		}
		/* Several files, some synced, some left to writeback. */
		for (k = 0; k < 8; k++) {
			snprintf(path, sizeof(path), "%s/f%d", self->mnt, k);
			fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
			ASSERT_LE(0, fd);
			memset(buf, 'a' + (round + k) % 26, sizeof(buf));
			for (int j = 0; j < 8; j++)
				ASSERT_EQ((ssize_t)sizeof(buf),
					  write(fd, buf, sizeof(buf)));
			if (k & 1)
				ASSERT_EQ(0, fsync(fd));
			close(fd);
		}
		ASSERT_EQ(0, umount(self->mnt)) {
			TH_LOG("round %d: umount: %s", round, strerror(errno));
		}
		/* Unbound when umount() returned. */
		ASSERT_FALSE(lt_exists("/sys/block/loop%d/loop", n)) {
			TH_LOG("round %d: loop%d still bound after umount",
			       round, n);
		}
		/* Everything written is in the image. */
		ASSERT_EQ(0, mount_image(self->img, variant->fstype,
					 self->mnt, &n));
		for (k = 0; k < 8; k++) {
			unsigned char want = 'a' + (round + k) % 26;

			snprintf(path, sizeof(path), "%s/f%d", self->mnt, k);
			fd = open(path, O_RDONLY);
			ASSERT_LE(0, fd);
			for (int j = 0; j < 8; j++) {
				ASSERT_EQ((ssize_t)sizeof(buf),
					  read(fd, buf, sizeof(buf)));
				ASSERT_EQ(want, (unsigned char)buf[0]);
				ASSERT_EQ(want,
					  (unsigned char)buf[sizeof(buf) - 1]);
			}
			close(fd);
		}
		ASSERT_EQ(0, umount(self->mnt));
		rounds++;
	}
	TH_LOG("%d rounds of %s", rounds, variant->fstype);
	ASSERT_LE(lt_least(3), rounds);
}

TEST_HARNESS_MAIN
