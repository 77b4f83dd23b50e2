// SPDX-License-Identifier: GPL-2.0
/*
 * Holes an independent review of the driver found, each with the input or
 * interleaving that exposed it: writes racing a detach that were dropped
 * while fsync() said 0, short transfers retried at the wrong offset, a
 * cycle of devices built through a partition, LOOP_CHANGE_FD under a
 * mounted filesystem, writes outside a new LOOP_SET_STATUS window, an
 * attacher that held the device's claim while it waited for a teardown,
 * LOOP_CTL_REMOVE answering before the device was gone, and a partition
 * added by hand during the rundown.
 */
#include "loop_test_util.h"

#include <linux/blkpg.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "kselftest_harness.h"

#undef TEST_TIMEOUT_DEFAULT
#define TEST_TIMEOUT_DEFAULT 240

#define MiB (1024 * 1024)

/*
 * Buffered writes racing LOOP_CLR_FD through the sole opener's descriptor
 * (shared by the threads of one process): a write that dirtied its page
 * after the teardown's write-back used to be dropped without a trace, its
 * fsync() returning 0. Every write whose pwrite() and then fsync() both
 * succeeded must be in the backing file (or a later write of the same
 * slot); the others may fail, but not silently. Two writers, each with
 * its own slots: one's fsync() must not take the error the other's lost
 * write is owed. A fresh file each round, allocated, not written: the
 * write-back of the first writes into it is slow (ext4 converts its
 * unwritten extents), which widens the window.
 */
#define RACE_SLOTS	64
#define RACE_WRITERS	2

struct wrace {
	int fd;
	_Atomic int stop;
	/* Per slot: last sequence number acknowledged by pwrite + fsync. */
	_Atomic unsigned long acked[RACE_SLOTS];
	_Atomic long acks, fails;
};

struct wrace_writer_arg {
	struct wrace *w;
	unsigned int first;	/* its slots: first .. first + per - 1 */
};

static void *wrace_writer(void *arg)
{
	const struct wrace_writer_arg *a = arg;
	const unsigned int per = RACE_SLOTS / RACE_WRITERS;
	struct wrace *w = a->w;
	unsigned long seq = 0;
	__u64 buf[512];

	while (!atomic_load(&w->stop)) {
		unsigned int slot = a->first + seq % per;

		seq++;
		for (int i = 0; i < 512; i++)
			buf[i] = seq;
		if (pwrite(w->fd, buf, sizeof(buf), (off_t)slot * 4096) !=
		    (ssize_t)sizeof(buf) || fsync(w->fd)) {
			atomic_fetch_add(&w->fails, 1);
			continue;
		}
		atomic_store(&w->acked[slot], seq);
		atomic_fetch_add(&w->acks, 1);
	}
	return NULL;
}

TEST(writes_racing_detach_are_in_the_file_or_fsync_fails)
{
	double end = lt_deadline(40);
	struct wrace *w = calloc(1, sizeof(*w));
	struct wrace_writer_arg args[RACE_WRITERS];
	long checked = 0, acks = 0, fails = 0;
	int round;

	ASSERT_NE(NULL, w);
	for (round = 0; round < 150 && lt_now() < end; round++) {
		char *file = lt_make_file("wrace", 1 * MiB, 0);
		pthread_t thr[RACE_WRITERS];
		__u64 buf[512];
		int n, bfd, i;

		ASSERT_NE(NULL, file);
		memset(w, 0, sizeof(*w));
		w->fd = lt_attach_free_at(file, O_RDWR, 0, 0, &n);
		ASSERT_LE(0, w->fd);
		for (i = 0; i < RACE_WRITERS; i++) {
			args[i].w = w;
			args[i].first = i * (RACE_SLOTS / RACE_WRITERS);
			ASSERT_EQ(0, pthread_create(&thr[i], NULL, wrace_writer,
						    &args[i]));
		}
		usleep(random() % 30000);
		ASSERT_EQ(0, ioctl(w->fd, LOOP_CLR_FD));
		usleep(2000);
		atomic_store(&w->stop, 1);
		for (i = 0; i < RACE_WRITERS; i++)
			pthread_join(thr[i], NULL);
		close(w->fd);
		bfd = open(file, O_RDONLY | O_CLOEXEC);
		ASSERT_LE(0, bfd);
		for (int slot = 0; slot < RACE_SLOTS; slot++) {
			unsigned long want = atomic_load(&w->acked[slot]);

			if (!want)
				continue;
			ASSERT_EQ((ssize_t)sizeof(buf),
				  pread(bfd, buf, sizeof(buf),
					(off_t)slot * 4096));
			ASSERT_LE(want, buf[0]) {
				TH_LOG("round %d: slot %d holds write %llu, but write %lu was acknowledged by pwrite() and fsync()",
				       round, slot, (unsigned long long)buf[0],
				       want);
			}
			checked++;
		}
		close(bfd);
		unlink(file);
		free(file);
		acks += atomic_load(&w->acks);
		fails += atomic_load(&w->fails);
	}
	TH_LOG("%d rounds: %ld acknowledged writes, %ld failed, %ld slots checked",
	       round, acks, fails, checked);
	ASSERT_LE(lt_least(10), round);
	/* Else no write raced the detach: nothing was tested. */
	ASSERT_LT(0, checked);
	ASSERT_LT(0, fails);
	free(w);
}

/*
 * The same window, made certain: a buffered write stalls in the fault of
 * its source buffer (userfaultfd), after the block layer's size check and
 * before its page is in the cache, while the sole opener's LOOP_CLR_FD
 * runs the whole teardown; the fault is resolved once the device is
 * unbound. On 6.1 the page then goes into the cache of a device of size
 * 0 and never reaches the file (its write-back is skipped): the write
 * succeeds, and no fsync() after it may return 0 (6.12 refuses the write
 * itself once the fault is resolved). Two of them: the
 * first may take a write-back error recorded on the descriptor, the
 * second has only its flush to tell (it returned 0 with the write cache
 * turned off at the unbind: the block layer completed the flush without
 * asking the driver).
 */
struct stalled_write {
	int fd;
	void *buf;
	ssize_t written;
	int error;
};

static void *stalled_writer(void *arg)
{
	struct stalled_write *sw = arg;

	sw->written = pwrite(sw->fd, sw->buf, 4096, 0);
	sw->error = errno;
	return NULL;
}

TEST(write_stalled_across_detach_fails_its_fsync)
{
	char *file = lt_make_file("stalled", 1 * MiB, 0);
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	struct uffd_msg msg;
	struct loop_info64 info;
	unsigned char *buf, *page, got[4096];
	struct uffdio_copy copy;
	struct pollfd pfd;
	int uffd, n, fd, bfd, first, second, second_errno;
	struct stalled_write sw = { .written = -2 };
	pthread_t thr;

	ASSERT_NE(NULL, file);
	uffd = syscall(SYS_userfaultfd, O_CLOEXEC);
	if (uffd < 0)
		SKIP(goto out, "no userfaultfd: %s", strerror(errno));
	ASSERT_EQ(0, ioctl(uffd, UFFDIO_API, &api));
	buf = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	page = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, buf);
	ASSERT_NE(MAP_FAILED, page);
	memset(page, 0xab, 4096);
	reg.range.start = (unsigned long)buf;
	reg.range.len = 4096;
	ASSERT_EQ(0, ioctl(uffd, UFFDIO_REGISTER, &reg));
	fd = lt_attach_free_at(file, O_RDWR, 0, 0, &n);
	ASSERT_LE(0, fd);
	sw.fd = fd;
	sw.buf = buf;
	ASSERT_EQ(0, pthread_create(&thr, NULL, stalled_writer, &sw));
	/* The writer is in the fault: past the size check. */
	pfd.fd = uffd;
	pfd.events = POLLIN;
	ASSERT_EQ(1, poll(&pfd, 1, 20000)) {
		TH_LOG("the write did not fault in 20 s (pwrite: %zd)",
		       sw.written);
	}
	ASSERT_EQ((ssize_t)sizeof(msg), read(uffd, &msg, sizeof(msg)));
	ASSERT_EQ(UFFD_EVENT_PAGEFAULT, msg.event);
	ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
	ASSERT_EQ(-1, ioctl(fd, LOOP_GET_STATUS64, &info));
	ASSERT_EQ(ENXIO, errno);
	copy.dst = (unsigned long)buf;
	copy.src = (unsigned long)page;
	copy.len = 4096;
	copy.mode = 0;
	copy.copy = 0;
	ASSERT_EQ(0, ioctl(uffd, UFFDIO_COPY, &copy));
	ASSERT_EQ(0, pthread_join(thr, NULL));
	first = fsync(fd);
	second = fsync(fd);
	second_errno = errno;
	TH_LOG("pwrite: %zd (%s), fsync: %d, then %d (%s)", sw.written,
	       sw.written < 0 ? strerror(sw.error) : "ok", first,
	       second, second ? strerror(second_errno) : "ok");
	/*
	 * 6.12 refuses the write once its fault is resolved (iomap checks
	 * again): nothing was acknowledged. 6.1 copies it into the page.
	 */
	if (sw.written != -1)
		ASSERT_EQ(4096, sw.written);
	/* Not in the file: the device was unbound before the page existed. */
	bfd = open(file, O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, bfd);
	ASSERT_EQ(4096, pread(bfd, got, sizeof(got), 0));
	close(bfd);
	ASSERT_NE(0xab, got[0]);
	if (sw.written == 4096) {
		ASSERT_EQ(-1, second) {
			TH_LOG("the write was lost, and fsync() returned 0");
		}
		ASSERT_EQ(EIO, second_errno);
	}
	close(fd);
	lt_release(n);
	munmap(buf, 4096);
	munmap(page, 4096);
	close(uffd);
out:
	unlink(file);
	free(file);
}

/*
 * A short transfer at a byte offset that is not a whole number of sectors
 * (losetup -o 100 over a file on a full tmpfs): the rest used to be
 * retried from the request's sector, which advances by whole sectors
 * only, so data landed at the wrong place and the write still "succeeded".
 * The write must fail, or land where it belongs.
 */
TEST(short_write_at_unaligned_offset_lands_right_or_fails)
{
	char dir[] = "/tmp/shortw-XXXXXX", img[64], fill[64];
	unsigned char *buf, *got;
	ssize_t r;
	int n, fd, dfd, ffd;

	ASSERT_NE(NULL, mkdtemp(dir));
	ASSERT_EQ(0, mount("tmpfs", dir, "tmpfs", 0, "size=64k"));
	snprintf(img, sizeof(img), "%s/img", dir);
	snprintf(fill, sizeof(fill), "%s/fill", dir);
	ASSERT_EQ(0, close(open(img, O_RDWR | O_CREAT, 0600)));
	ASSERT_EQ(0, truncate(img, 1 * MiB));
	/* All but one page of the tmpfs taken by another file. */
	ffd = open(fill, O_RDWR | O_CREAT, 0600);
	ASSERT_LE(0, ffd);
	/* Aligned: the device is written with O_DIRECT. */
	ASSERT_EQ(0, posix_memalign((void **)&buf, 4096, 16 * 4096));
	ASSERT_EQ(0, posix_memalign((void **)&got, 4096, 16 * 4096));
	memset(buf, 0, 16 * 4096);
	for (int i = 0; i < 15; i++)
		if (write(ffd, buf, 4096) != 4096)
			break;
	close(ffd);

	fd = lt_attach_free_at(img, O_RDWR, 0, 100, &n);
	ASSERT_LE(0, fd);
	dfd = lt_open_dev(n, O_RDWR | O_DIRECT);
	ASSERT_LE(0, dfd);
	for (int i = 0; i < 8192; i++)
		buf[i] = i * 7 + 1;
	r = pwrite(dfd, buf, 8192, 0);
	if (r == 8192) {
		int ifd = open(img, O_RDONLY | O_CLOEXEC);

		ASSERT_LE(0, ifd);
		ASSERT_EQ(8192, pread(ifd, got, 8192, 100));
		close(ifd);
		ASSERT_EQ(0, memcmp(buf, got, 8192)) {
			TH_LOG("the write succeeded, but the file does not hold it at offset 100");
		}
	} else {
		TH_LOG("the write failed: %zd (%s)", r, strerror(errno));
	}
	close(dfd);
	ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
	close(fd);
	lt_ctl(LOOP_CTL_REMOVE, n);
	free(buf);
	free(got);
	umount(dir);
	rmdir(dir);
}

/* BLKPG: add partition @pno of @len bytes at 0 of the open device @fd. */
static int add_partition(int fd, int pno, long long len)
{
	struct blkpg_partition p = { .start = 0, .length = len, .pno = pno };
	struct blkpg_ioctl_arg a = {
		.op = BLKPG_ADD_PARTITION, .datalen = sizeof(p), .data = &p,
	};

	return ioctl(fd, BLKPG, &a) ? -errno : 0;
}

/*
 * A cycle through a partition: device A gets a partition (BLKPG) covering
 * all of it, B is attached over that partition, then LOOP_CHANGE_FD asks
 * for A over B. The chain A -> B -> A's partition -> A must be refused
 * (EBADF) like any other cycle; it used to pass (partitions have another
 * major and device number), and the first read of A never returned.
 */
TEST(cycle_through_a_partition_is_refused)
{
	char *file = lt_make_file("cycpart", 4 * MiB, 0x21);
	char part[64];
	int fa, fb, na, nb, bfd, pfd;

	ASSERT_NE(NULL, file);
	fa = lt_attach_free_at(file, O_RDONLY, 0, 0, &na);
	ASSERT_LE(0, fa);
	ASSERT_EQ(0, add_partition(fa, 1, 4 * MiB)) {
		TH_LOG("BLKPG on loop%d: %s", na, strerror(errno));
	}
	snprintf(part, sizeof(part), "/dev/loop%dp1", na);
	for (int i = 0; i < 100 && access(part, F_OK); i++)
		usleep(10000);
	pfd = open(part, O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, pfd) {
		TH_LOG("open %s: %s", part, strerror(errno));
	}
	nb = lt_get_free();
	ASSERT_LE(0, nb);
	fb = lt_open_dev(nb, O_RDWR);
	ASSERT_LE(0, fb);
	ASSERT_EQ(0, lt_configure_fd(fb, pfd, 0, 0, 0, 0, part));
	close(pfd);
	bfd = lt_open_dev(nb, O_RDONLY);
	ASSERT_LE(0, bfd);
	ASSERT_EQ(-1, ioctl(fa, LOOP_CHANGE_FD, bfd)) {
		TH_LOG("loop%d over loop%d over loop%dp1: a cycle", na, nb, na);
	}
	ASSERT_EQ(EBADF, errno);
	close(bfd);
	ASSERT_EQ(0, ioctl(fb, LOOP_CLR_FD));
	close(fb);
	ASSERT_EQ(0, ioctl(fa, LOOP_CLR_FD));
	close(fa);
	lt_ctl(LOOP_CTL_REMOVE, na);
	lt_ctl(LOOP_CTL_REMOVE, nb);
	unlink(file);
	free(file);
}

/*
 * LOOP_CHANGE_FD under a mounted read-only filesystem (what it is for):
 * the media change tells the filesystem, which takes its own locks; it
 * used to happen under disk->open_mutex (a lockdep report on 6.12's debug
 * kernel). The switch must succeed; the kernel log stays clean.
 */
TEST(change_fd_under_a_mounted_filesystem)
{
	char mnt[] = "/tmp/chfd-mnt-XXXXXX";
	char *img = lt_make_file("chfd", 0, 0), *img2, cmd[512], dev[64];
	int fd, nfd, n;

	ASSERT_NE(NULL, img);
	ASSERT_EQ(0, truncate(img, 16 * MiB));
	snprintf(cmd, sizeof(cmd), "mkfs.ext4 -q -F %s >/dev/null 2>&1", img);
	ASSERT_EQ(0, lt_run(cmd));
	ASSERT_EQ(0, asprintf(&img2, "%s.copy", img) < 0);
	snprintf(cmd, sizeof(cmd), "cp %s %s", img, img2);
	ASSERT_EQ(0, lt_run(cmd));
	ASSERT_NE(NULL, mkdtemp(mnt));
	fd = lt_attach_free_at(img, O_RDONLY, 0, 0, &n);
	ASSERT_LE(0, fd);
	snprintf(dev, sizeof(dev), "/dev/loop%d", n);
	ASSERT_EQ(0, mount(dev, mnt, "ext4", MS_RDONLY, NULL));
	nfd = open(img2, O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, nfd);
	ASSERT_EQ(0, ioctl(fd, LOOP_CHANGE_FD, nfd)) {
		TH_LOG("LOOP_CHANGE_FD under a mount: %s", strerror(errno));
	}
	close(nfd);
	ASSERT_EQ(0, umount(mnt));
	ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
	close(fd);
	rmdir(mnt);
	unlink(img);
	unlink(img2);
	free(img);
	free(img2);
}

/*
 * Writes through a LOOP_SET_STATUS that moves the window: the new offset
 * and the old size must never be in force together, or a write beyond the
 * new size limit lands outside the window (here: at 2.5 MiB of the file,
 * the old window's 1.5 MiB moved by the new 1 MiB offset, past the new
 * 1 MiB limit). Direct writes of 'Y' at device offset 1.5 MiB keep going
 * while the window moves to offset 1 MiB, size limit 1 MiB.
 */
struct window_writer {
	int fd;
	_Atomic int stop;
	_Atomic long writes;
};

static void *window_write_loop(void *arg)
{
	struct window_writer *w = arg;
	void *buf;

	if (posix_memalign(&buf, 4096, 4096))
		return NULL;
	memset(buf, 'Y', 4096);
	while (!atomic_load(&w->stop))
		if (pwrite(w->fd, buf, 4096, 3 * MiB / 2) == 4096)
			atomic_fetch_add(&w->writes, 1);
	free(buf);
	return NULL;
}

TEST(set_status_window_move_never_writes_outside_it)
{
	char *file = lt_make_file("window", 4 * MiB, 0);
	double end = lt_deadline(30);
	int round;

	ASSERT_NE(NULL, file);
	for (round = 0; round < 40 && lt_now() < end; round++) {
		struct window_writer w = { .fd = -1 };
		struct loop_info64 info;
		unsigned char c;
		pthread_t thr;
		int fd, n, bfd;

		fd = lt_attach_free_at(file, O_RDWR, 0, 0, &n);
		ASSERT_LE(0, fd);
		ASSERT_EQ(0, ioctl(fd, LOOP_GET_STATUS64, &info));
		info.lo_sizelimit = 4 * MiB;
		ASSERT_EQ(0, ioctl(fd, LOOP_SET_STATUS64, &info));
		w.fd = lt_open_dev(n, O_RDWR | O_DIRECT);
		ASSERT_LE(0, w.fd);
		ASSERT_EQ(0, pthread_create(&thr, NULL, window_write_loop, &w));
		while (atomic_load(&w.writes) < 2)
			usleep(100);
		info.lo_offset = 1 * MiB;
		info.lo_sizelimit = 1 * MiB;
		ASSERT_EQ(0, ioctl(fd, LOOP_SET_STATUS64, &info));
		usleep(1000);
		atomic_store(&w.stop, 1);
		pthread_join(thr, NULL);
		close(w.fd);
		ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
		close(fd);
		bfd = open(file, O_RDWR | O_CLOEXEC);
		ASSERT_LE(0, bfd);
		ASSERT_EQ(1, pread(bfd, &c, 1, 5 * MiB / 2));
		ASSERT_NE('Y', c) {
			TH_LOG("round %d: a write landed at 2.5 MiB, beyond the new window",
			       round);
		}
		/* Back to zeroes for the next round. */
		ASSERT_EQ(0, ftruncate(bfd, 0));
		ASSERT_EQ(0, ftruncate(bfd, 4 * MiB));
		close(bfd);
	}
	unlink(file);
	free(file);
}

/*
 * An attacher waiting for a teardown used to hold the device's claim
 * meanwhile, so that a second attacher (or mount, mkfs) waited for the
 * claim uninterruptibly: SIGKILL did not free it while the teardown ran.
 * Here the teardown writes back a lot, A attaches (waits), B attaches
 * (waits), B is killed: B must be gone well before the teardown is.
 */
static pid_t attach_in_child(int n, const char *file)
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd = lt_open_dev(n, O_RDWR);

		if (fd < 0)
			_exit(1);
		lt_configure(fd, file, O_RDWR, 0, 0, 0, 0);
		_exit(0);
	}
	return pid;
}

TEST(attacher_waiting_for_teardown_can_be_killed)
{
	char *file = lt_make_file("claimw", 96 * MiB, 0);
	char *other = lt_make_file("claimw2", 1 * MiB, 0);
	unsigned char *data = malloc(8 * MiB);
	struct loop_info64 info;
	int fd, n, status;
	double t0, dead;
	pid_t a, b, d;

	ASSERT_NE(NULL, file);
	ASSERT_NE(NULL, other);
	ASSERT_NE(NULL, data);
	memset(data, 0x3c, 8 * MiB);
	fd = lt_attach_free_at(file, O_RDWR, 0, 0, &n);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, lt_dirty(fd, data, 8 * MiB, 0, lt_scaled(96 * MiB, 8 * MiB)));
	/* The teardown of a sole opener's LOOP_CLR_FD, in another process. */
	d = fork();
	ASSERT_LE(0, d);
	if (d == 0)
		_exit(ioctl(fd, LOOP_CLR_FD) ? 1 : 0);
	close(fd);
	usleep(20000);
	a = attach_in_child(n, other);
	ASSERT_LE(0, a);
	usleep(20000);
	b = attach_in_child(n, other);
	ASSERT_LE(0, b);
	usleep(50000);
	t0 = lt_now();
	ASSERT_EQ(0, kill(b, SIGKILL));
	ASSERT_EQ(b, waitpid(b, &status, 0));
	dead = lt_now() - t0;
	/*
	 * Did the teardown end before B could die? Then we learnt nothing.
	 * Else B died at once: within 0.5 s, longer on a slower guest (the
	 * debug kernel's exit of B alone took 0.6 s; its teardown writes
	 * back for tens of seconds).
	 */
	if (waitpid(d, &status, WNOHANG) == d)
		TH_LOG("the teardown ended first: %.2f s", dead);
	else
		ASSERT_GT(0.5 / lt_time_scale(), dead) {
			TH_LOG("B took %.2f s to die while the teardown ran", dead);
		}
	waitpid(d, &status, 0);
	ASSERT_EQ(a, waitpid(a, &status, 0));
	fd = lt_open_dev(n, O_RDWR);
	ASSERT_LE(0, fd);
	if (!ioctl(fd, LOOP_GET_STATUS64, &info))
		ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
	close(fd);
	lt_ctl(LOOP_CTL_REMOVE, n);
	free(data);
	unlink(file);
	unlink(other);
	free(file);
	free(other);
}

/*
 * LOOP_CTL_REMOVE of a device that its autoclear-delete teardown deletes:
 * when REMOVE answers 0, the device is gone and its number free (a
 * LOOP_CTL_ADD of it works at once). It used to answer while the teardown
 * was still releasing the file and deleting the disk.
 */
TEST(remove_answers_when_autoclear_delete_is_done)
{
	char *file = lt_make_file("rmdone", 16 * MiB, 0);
	unsigned char *data = malloc(4 * MiB);
	double end = lt_deadline(30);
	int round, zero = 0;

	ASSERT_NE(NULL, file);
	ASSERT_NE(NULL, data);
	memset(data, 0x55, 4 * MiB);
	for (round = 0; round < 40 && (round < lt_least(4) || lt_now() < end);
	     round++) {
		int fd, n, err;
		double t0;
		pid_t pid;

		fd = lt_attach_free_at(file, O_RDWR, LO_FLAGS_AUTOCLEAR |
				 LO_FLAGS_AUTOCLEAR_DELETE, 0, &n);
		ASSERT_LE(0, fd);
		/* Something to write back: the teardown takes a while. */
		ASSERT_EQ(0, lt_dirty(fd, data, 4 * MiB, 0,
				      lt_scaled(16 * MiB, 4 * MiB)));
		pid = fork();
		ASSERT_LE(0, pid);
		if (pid == 0) {
			close(fd);
			_exit(0);
		}
		close(fd);	/* the child's close is the last, or ours */
		t0 = lt_now();
		do {
			err = lt_ctl(LOOP_CTL_REMOVE, n);
		} while (err == -EBUSY && lt_now() < t0 + 30);
		waitpid(pid, NULL, 0);
		if (!err) {
			zero++;
			ASSERT_EQ(n, lt_ctl(LOOP_CTL_ADD, n)) {
				TH_LOG("round %d: REMOVE(%d) answered 0, yet ADD(%d) fails",
				       round, n, n);
			}
			lt_ctl(LOOP_CTL_REMOVE, n);
		} else {
			ASSERT_EQ(-ENODEV, err);
		}
	}
	TH_LOG("%d rounds, REMOVE answered 0 in %d", round, zero);
	free(data);
	unlink(file);
	free(file);
}

/*
 * A partition added by hand (BLKPG) while the device runs down, and opened:
 * it is not one the rundown could drop, and it must not serve the next
 * attachment. Its descriptor either gets I/O errors, or the next attach
 * is refused (EBUSY) while it is open; the next attachment's file stays
 * untouched.
 */
TEST(partition_added_during_rundown_never_serves_next_attachment)
{
	char *file = lt_make_file("blkpgrd", 64 * MiB, 0);
	char *plain = lt_make_file("blkpgplain", 8 * MiB, 0);
	unsigned char *data = malloc(8 * MiB);
	char part[64], buf[4096];
	int fd, n, other, pfd = -1, status, err, fd2;
	_Atomic int *go;
	off_t bad = 0;
	pid_t pid;

	ASSERT_NE(NULL, file);
	ASSERT_NE(NULL, plain);
	ASSERT_NE(NULL, data);
	go = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, go);
	memset(data, 0x44, 8 * MiB);
	fd = lt_attach_free_at(file, O_RDWR, 0, 0, &n);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, lt_dirty(fd, data, 8 * MiB, 0, lt_scaled(64 * MiB, 8 * MiB)));
	/* The sole opener detaches in a child; the teardown writes back. */
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		go[0] = 1;
		_exit(ioctl(fd, LOOP_CLR_FD) ? 1 : 0);
	}
	close(fd);
	while (!go[0])
		;
	usleep(10000);
	other = lt_open_dev(n, O_RDWR);
	ASSERT_LE(0, other);
	snprintf(part, sizeof(part), "/dev/loop%dp1", n);
	if (!add_partition(other, 1, 1 * MiB)) {
		for (int i = 0; i < 100 && pfd < 0; i++) {
			pfd = open(part, O_RDWR | O_CLOEXEC);
			if (pfd < 0)
				usleep(10000);
		}
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	if (pfd < 0)
		TH_LOG("no partition could be added and opened during the rundown");
	/* The next attachment, with the partition (maybe) open. */
	err = lt_configure(other, plain, O_RDWR, 0, 0, 0, 0);
	if (err) {
		ASSERT_EQ(-EBUSY, err);
		ASSERT_LE(0, pfd);
		close(pfd);
		pfd = -1;
		ASSERT_EQ(0, lt_configure(other, plain, O_RDWR, 0, 0, 0, 0));
	}
	if (pfd >= 0) {
		memset(buf, 0xee, sizeof(buf));
		if (pwrite(pfd, buf, sizeof(buf), 0) == sizeof(buf))
			fsync(pfd);
		close(pfd);
	}
	fd2 = other;
	/* Opened during the rundown: it hears of that rundown's errors. */
	fsync(fd2);
	ASSERT_EQ(0, ioctl(fd2, LOOP_CLR_FD));
	close(fd2);
	{
		unsigned char b[65536];
		int pf = open(plain, O_RDONLY | O_CLOEXEC);

		ASSERT_LE(0, pf);
		for (off_t off = 0; off < 8 * MiB; off += sizeof(b)) {
			ASSERT_EQ((ssize_t)sizeof(b), pread(pf, b, sizeof(b), off));
			for (size_t i = 0; i < sizeof(b); i++)
				if (b[i] && !bad)
					bad = off + i + 1;
		}
		close(pf);
	}
	ASSERT_EQ(0, bad) {
		TH_LOG("byte %lld of the next attachment's file written through loop%dp1",
		       (long long)bad - 1, n);
	}
	lt_ctl(LOOP_CTL_REMOVE, n);
	munmap(go, 4096);
	free(data);
	unlink(file);
	unlink(plain);
	free(file);
	free(plain);
}

/*
 * A write accepted before a detach, left short by the backing file, has
 * its rest retried after the teardown took the capacity to 0: it must get
 * the answer it would get without the detach (the file system is full:
 * ENOSPC), not EIO for being "beyond the end" of a device whose capacity
 * the teardown zeroed (found by review). The write is held in the worker
 * by freezing the backing file's filesystem until the teardown has zeroed
 * the capacity and waits for it.
 */
struct held_write {
	int fd;
	void *buf;
	ssize_t written;
	int error;
};

static void *held_writer(void *arg)
{
	struct held_write *hw = arg;

	hw->written = pwrite(hw->fd, hw->buf, 65536, 0);
	hw->error = errno;
	return NULL;
}

static void *clear_fd(void *arg)
{
	return (void *)(long)ioctl(*(int *)arg, LOOP_CLR_FD);
}

/* Poll sysfs attribute @attr of loop@n until it reads @want; 0 if so. */
static int wait_sysfs(int n, const char *attr, const char *want)
{
	double end = lt_now() + 20;
	char buf[64];

	while (lt_now() < end) {
		if (!lt_sysfs(n, attr, buf, sizeof(buf)) && !strcmp(buf, want))
			return 0;
		usleep(1000);
	}
	return -1;
}

TEST(write_short_during_rundown_gets_its_own_error)
{
	char *outer = lt_make_file("fullfs", 8 * MiB, 0);
	char mnt[64], cmd[128], path[96], fill[96];
	struct held_write hw = { .written = -2 };
	pthread_t writer, clearer;
	int no, fo, n, fd, mfd, f, frozen = 0;
	unsigned char *buf;
	void *cleared;

	ASSERT_NE(NULL, outer);
	if (access("/usr/sbin/mkfs.ext4", X_OK))
		SKIP(return, "no mkfs.ext4");
	ASSERT_EQ(0, posix_memalign((void **)&buf, 4096, 65536));
	memset(buf, 0x77, 65536);
	fo = lt_attach_free(outer, 0, &no);
	ASSERT_LE(0, fo);
	snprintf(cmd, sizeof(cmd), "mkfs.ext4 -q -F -m 0 /dev/loop%d", no);
	ASSERT_EQ(0, lt_run(cmd));
	snprintf(mnt, sizeof(mnt), "/tmp/lt-fullfs-%d", getpid());
	ASSERT_EQ(0, mkdir(mnt, 0700));
	snprintf(path, sizeof(path), "/dev/loop%d", no);
	ASSERT_EQ(0, mount(path, mnt, "ext4", 0, NULL));
	/* Full, then 16 KiB given back: the 64 KiB write is cut short. */
	snprintf(fill, sizeof(fill), "%s/fill", mnt);
	f = open(fill, O_WRONLY | O_CREAT, 0600);
	ASSERT_LE(0, f);
	while (write(f, buf, 65536) > 0)
		;
	ASSERT_EQ(0, fsync(f));
	ASSERT_EQ(0, ftruncate(f, lseek(f, 0, SEEK_END) / 4096 * 4096 - 16384));
	close(f);
	sync();
	snprintf(path, sizeof(path), "%s/dev.img", mnt);
	f = open(path, O_RDWR | O_CREAT, 0600);
	ASSERT_LE(0, f);
	ASSERT_EQ(0, ftruncate(f, 1 * MiB));
	close(f);
	fd = lt_attach_free(path, 0, &n);
	ASSERT_LE(0, fd);
	/* The sole opener's descriptor: LOOP_CLR_FD tears down at once. */
	ASSERT_EQ(0, fcntl(fd, F_SETFL, O_DIRECT));
	mfd = open(mnt, O_RDONLY | O_DIRECTORY);
	ASSERT_LE(0, mfd);
	ASSERT_EQ(0, ioctl(mfd, FIFREEZE, 0));
	frozen = 1;
	hw = (struct held_write){ .fd = fd, .buf = buf, .written = -2 };
	ASSERT_EQ(0, pthread_create(&writer, NULL, held_writer, &hw));
	EXPECT_EQ(0, wait_sysfs(n, "inflight", "       0        1"));
	ASSERT_EQ(0, pthread_create(&clearer, NULL, clear_fd, &fd));
	EXPECT_EQ(0, wait_sysfs(n, "size", "0"));
	ASSERT_EQ(0, ioctl(mfd, FITHAW, 0));
	frozen = 0;
	pthread_join(writer, NULL);
	pthread_join(clearer, &cleared);
	EXPECT_EQ(0, (long)cleared);
	TH_LOG("write: %zd (%s)", hw.written,
	       hw.written < 0 ? lt_errname(hw.error) : "no error");
	EXPECT_EQ(-1, hw.written);
	EXPECT_EQ(ENOSPC, hw.error);
	if (frozen)
		ioctl(mfd, FITHAW, 0);
	close(mfd);
	close(fd);
	lt_release(n);
	umount(mnt);
	rmdir(mnt);
	close(fo);
	lt_release(no);
	unlink(outer);
	free(outer);
	free(buf);
}

TEST_HARNESS_MAIN
