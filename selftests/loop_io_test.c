// SPDX-License-Identifier: GPL-2.0
/*
 * I/O through the device compared with the backing file, with buffered and
 * with direct I/O to the backing file: writes, reads, offset, discard,
 * write-zeroes, flush.
 */
#include "loop_test_util.h"

#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/swap.h>
#include <sys/vfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <linux/aio_abi.h>

#include "kselftest_harness.h"

/* The cgroup test waits for removed cgroups to be freed (debug kernels). */
#undef TEST_TIMEOUT_DEFAULT
#define TEST_TIMEOUT_DEFAULT 180

#define MiB (1024 * 1024)
#define DEV_SIZE (16 * MiB)

FIXTURE(io) {
	int n;
	int fd;
	char *file;
	unsigned char *expect;
	unsigned char *buf;
};

FIXTURE_VARIANT(io) {
	bool direct;
};

FIXTURE_VARIANT_ADD(io, buffered) {
	.direct = false,
};

FIXTURE_VARIANT_ADD(io, direct) {
	.direct = true,
};

FIXTURE_SETUP(io)
{
	struct loop_info64 info;

	self->fd = -1;
	self->file = lt_make_file("io", DEV_SIZE, 0x11);
	ASSERT_NE(NULL, self->file);
	self->n = lt_get_free();
	ASSERT_LE(0, self->n);
	self->fd = lt_open_dev(self->n, O_RDWR |
			       (variant->direct ? O_DIRECT : 0));
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, lt_configure(self->fd, self->file, O_RDWR,
				  variant->direct ? LO_FLAGS_DIRECT_IO : 0,
				  0, 0, 0));
	ASSERT_EQ(0, ioctl(self->fd, LOOP_GET_STATUS64, &info));
	if (variant->direct && !(info.lo_flags & LO_FLAGS_DIRECT_IO))
		SKIP(return, "backing filesystem %s cannot do O_DIRECT",
		     lt_dir());
	self->expect = malloc(DEV_SIZE);
	ASSERT_NE(NULL, self->expect);
	memset(self->expect, 0x11, DEV_SIZE);
	self->buf = mmap(NULL, 2 * MiB, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, self->buf);
	srandom(getpid());
}

FIXTURE_TEARDOWN(io)
{
	if (self->fd >= 0)
		close(self->fd);
	lt_release(self->n);
	unlink(self->file);
	free(self->file);
	free(self->expect);
}

/* Compare the whole backing file with what we expect. */
static int backing_matches(const char *file, const unsigned char *expect,
			   off_t off)
{
	unsigned char *got = malloc(DEV_SIZE);
	int fd = open(file, O_RDONLY);
	int ret = -1;

	if (got && fd >= 0 && pread(fd, got, DEV_SIZE, off) == DEV_SIZE)
		ret = memcmp(got, expect, DEV_SIZE) ? 1 : 0;
	if (ret == 1) {
		for (off_t i = 0; i < DEV_SIZE; i++)
			if (got[i] != expect[i]) {
				fprintf(stderr, "# first difference at %lld\n",
					(long long)i);
				break;
			}
	}
	free(got);
	if (fd >= 0)
		close(fd);
	return ret;
}

TEST_F(io, writes_reach_backing_file)
{
	int i;

	/* 200 writes, fewer on a slower guest (lt_least()). */
	for (i = 0; i < lt_least(200); i++) {
		size_t len = 4096 * (1 + random() % 64);
		off_t off = 4096 * (random() % ((DEV_SIZE - len) / 4096));

		memset(self->buf, random() & 0xff, len);
		self->buf[0] = i;
		ASSERT_EQ((ssize_t)len, pwrite(self->fd, self->buf, len, off));
		memcpy(self->expect + off, self->buf, len);
	}
	ASSERT_EQ(0, fsync(self->fd));
	ASSERT_EQ(0, backing_matches(self->file, self->expect, 0));
}

TEST_F(io, reads_see_backing_file)
{
	int bfd = open(self->file, O_RDWR);
	off_t off;

	ASSERT_LE(0, bfd);
	for (off = 0; off < DEV_SIZE; off += MiB) {
		memset(self->buf, (int)(off / MiB) + 1, MiB);
		ASSERT_EQ(MiB, pwrite(bfd, self->buf, MiB, off));
	}
	ASSERT_EQ(0, fsync(bfd));
	close(bfd);
	/* Drop what the device cached before the file changed. */
	ASSERT_EQ(0, ioctl(self->fd, BLKFLSBUF, 0));
	for (off = 0; off < DEV_SIZE; off += MiB) {
		ASSERT_EQ(MiB, pread(self->fd, self->buf, MiB, off));
		ASSERT_EQ((int)(off / MiB) + 1, self->buf[0]);
		ASSERT_EQ((int)(off / MiB) + 1, self->buf[MiB - 1]);
	}
}

TEST_F(io, large_requests)
{
	/* 2 MiB in one call: several bios, merged into large requests. */
	for (int i = 0; i < 2 * MiB; i++)
		self->buf[i] = i * 7;
	ASSERT_EQ(2 * MiB, pwrite(self->fd, self->buf, 2 * MiB, 3 * MiB));
	memcpy(self->expect + 3 * MiB, self->buf, 2 * MiB);
	ASSERT_EQ(0, fsync(self->fd));
	ASSERT_EQ(0, backing_matches(self->file, self->expect, 0));
	memset(self->buf, 0, 2 * MiB);
	ASSERT_EQ(0, ioctl(self->fd, BLKFLSBUF, 0));
	ASSERT_EQ(2 * MiB, pread(self->fd, self->buf, 2 * MiB, 3 * MiB));
	ASSERT_EQ(0, memcmp(self->buf, self->expect + 3 * MiB, 2 * MiB));
}

TEST_F(io, discard_and_zeroout)
{
	__u64 range[2] = { 1 * MiB, 2 * MiB };

	ASSERT_EQ(0, ioctl(self->fd, BLKDISCARD, range));
	memset(self->expect + 1 * MiB, 0, 2 * MiB);
	range[0] = 8 * MiB;
	range[1] = 1 * MiB;
	ASSERT_EQ(0, ioctl(self->fd, BLKZEROOUT, range));
	memset(self->expect + 8 * MiB, 0, 1 * MiB);
	ASSERT_EQ(0, fsync(self->fd));
	ASSERT_EQ(0, backing_matches(self->file, self->expect, 0));
	ASSERT_EQ(MiB, pread(self->fd, self->buf, MiB, 1 * MiB));
	ASSERT_EQ(0, self->buf[0] | self->buf[MiB - 1]);
}

TEST_F(io, offset_shifts_data)
{
	struct loop_info64 info;

	ASSERT_EQ(0, ioctl(self->fd, LOOP_GET_STATUS64, &info));
	info.lo_offset = 1 * MiB;
	ASSERT_EQ(0, ioctl(self->fd, LOOP_SET_STATUS64, &info));
	ASSERT_EQ(DEV_SIZE - MiB, lt_size(self->fd));
	memset(self->buf, 0x77, 4096);
	ASSERT_EQ(4096, pwrite(self->fd, self->buf, 4096, 0));
	ASSERT_EQ(0, fsync(self->fd));
	memset(self->expect + MiB, 0x77, 4096);
	ASSERT_EQ(0, backing_matches(self->file, self->expect, 0));
}

/*
 * Writers in two block cgroups at once: each cgroup's requests go to a
 * worker of their own, created and freed as they come and go. Each
 * process writes and reads back its own half of the device many times.
 */
TEST_F(io, writers_in_two_cgroups)
{
	static const char * const groups[] = { "/sys/fs/cgroup/loop-a",
					       "/sys/fs/cgroup/loop-b" };
	pid_t pid[2];
	int i, status;

	mkdir("/sys/fs/cgroup", 0755);
	if (access("/sys/fs/cgroup/cgroup.subtree_control", F_OK))
		mount("cgroup2", "/sys/fs/cgroup", "cgroup2", 0, NULL);
	if (lt_write_str("/sys/fs/cgroup/cgroup.subtree_control", "+io"))
		SKIP(return, "no cgroup2 io controller");
	for (i = 0; i < 2; i++) {
		mkdir(groups[i], 0755);
		pid[i] = fork();
		ASSERT_LE(0, pid[i]);
		if (pid[i] == 0) {
			char path[128], pidstr[16];
			off_t base = (off_t)i * (DEV_SIZE / 2);
			unsigned char *b = self->buf;
			int round, k;

			snprintf(path, sizeof(path), "%s/cgroup.procs",
				 groups[i]);
			snprintf(pidstr, sizeof(pidstr), "%d", getpid());
			if (lt_write_str(path, pidstr))
				_exit(1);
			for (round = 0; round < 40; round++) {
				memset(b, 0x20 + i * 16 + round % 16, 65536);
				for (k = 0; k < 8; k++)
					if (pwrite(self->fd, b, 65536,
						   base + k * 65536) != 65536)
						_exit(2);
				for (k = 0; k < 8; k++) {
					if (pread(self->fd, b + 65536, 65536,
						  base + k * 65536) != 65536)
						_exit(3);
					if (memcmp(b, b + 65536, 65536))
						_exit(4);
				}
			}
			_exit(0);
		}
	}
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(pid[i], waitpid(pid[i], &status, 0));
		ASSERT_TRUE(WIFEXITED(status));
		EXPECT_EQ(0, WEXITSTATUS(status)) {
			TH_LOG("writer in %s: step %d failed", groups[i],
			       WEXITSTATUS(status));
		}
	}
	for (i = 0; i < 2; i++)
		rmdir(groups[i]);
	ASSERT_EQ(0, fsync(self->fd));
	for (i = 0; i < 2; i++)
		memset(self->expect + (size_t)i * (DEV_SIZE / 2),
		       0x20 + i * 16 + 39 % 16, 8 * 65536);
	ASSERT_EQ(0, backing_matches(self->file, self->expect, 0));
}

/* nr_dying_descendants of the root cgroup, or -1. */
static long dying_cgroups(void)
{
	char line[128];
	long n = -1;
	FILE *f = fopen("/sys/fs/cgroup/cgroup.stat", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "nr_dying_descendants %ld", &n) == 1)
			break;
	fclose(f);
	return n;
}

/*
 * Direct I/O at a deep queue from two cgroups at once, then the cgroups
 * removed. The worker used to read a request's cgroup pointers again after
 * issuing it asynchronously, when the request may already have completed
 * and its tag been reused by the next ->queue_rq, from the other cgroup:
 * one memory cgroup's reference put twice (a refcount warning once it is
 * removed), the other's leaked (it never goes away). Afterwards the
 * removed cgroups must be freed: nr_dying_descendants of the root returns
 * to what it was. Over a file on a real block device (the scratch ext4),
 * where direct I/O completes asynchronously.
 */
TEST(direct_io_from_two_cgroups_frees_the_cgroups)
{
	static const char * const groups[] = { "/sys/fs/cgroup/loop-dio-a",
					       "/sys/fs/cgroup/loop-dio-b" };
	struct loop_info64 info;
	char *file, dev[32];
	long before, now = -1;
	pid_t pid[2];
	int n, fd, i, status;

	mkdir("/sys/fs/cgroup", 0755);
	if (access("/sys/fs/cgroup/cgroup.subtree_control", F_OK))
		mount("cgroup2", "/sys/fs/cgroup", "cgroup2", 0, NULL);
	if (lt_write_str("/sys/fs/cgroup/cgroup.subtree_control",
			 "+io +memory"))
		SKIP(return, "no cgroup2 io and memory controllers");
	if (access("/usr/bin/fio", X_OK))
		SKIP(return, "no fio");
	/*
	 * Written, not allocated (lt_make_file() allocates zeros): direct
	 * reads of unwritten extents complete at once without I/O, and a
	 * first write into one changes the extent tree, whose new blocks
	 * are charged to the writer's cgroup and keep it from being freed
	 * until they are written back.
	 */
	file = lt_make_file("diocg", 64 * MiB, 0x11);
	ASSERT_NE(NULL, file);
	n = lt_get_free();
	ASSERT_LE(0, n);
	fd = lt_open_dev(n, O_RDWR);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, lt_configure(fd, file, O_RDWR, LO_FLAGS_DIRECT_IO,
				  0, 0, 0));
	ASSERT_EQ(0, ioctl(fd, LOOP_GET_STATUS64, &info));
	if (!(info.lo_flags & LO_FLAGS_DIRECT_IO))
		SKIP(goto out, "no direct I/O to %s", lt_dir());
	before = dying_cgroups();
	ASSERT_LE(0, before);
	snprintf(dev, sizeof(dev), "--filename=/dev/loop%d", n);
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(0, mkdir(groups[i], 0755));
		pid[i] = fork();
		ASSERT_LE(0, pid[i]);
		if (pid[i] == 0) {
			char path[128], pidstr[16], offset[32];

			snprintf(path, sizeof(path), "%s/cgroup.procs",
				 groups[i]);
			snprintf(pidstr, sizeof(pidstr), "%d", getpid());
			if (lt_write_str(path, pidstr))
				_exit(100);
			snprintf(offset, sizeof(offset), "--offset=%dm", i * 32);
			execl("/usr/bin/fio", "fio", "--name=dio", dev, offset,
			      "--size=32m", "--direct=1", "--ioengine=libaio",
			      "--iodepth=32", "--rw=randrw", "--bs=4k",
			      "--time_based", "--runtime=6", "--numjobs=2",
			      "--eta=never", "--output=/dev/null", NULL);
			_exit(101);
		}
	}
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(pid[i], waitpid(pid[i], &status, 0));
		ASSERT_TRUE(WIFEXITED(status));
		EXPECT_EQ(0, WEXITSTATUS(status)) {
			TH_LOG("fio in %s: exit %d", groups[i],
			       WEXITSTATUS(status));
		}
	}
	TH_LOG("%s: nowait_issued %ld", lt_dir(), lt_nowait_issued(n));
	for (i = 0; i < 2; i++)
		ASSERT_EQ(0, rmdir(groups[i]));
	ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
	close(fd);
	fd = -1;
	lt_write_str("/proc/sys/vm/drop_caches", "3");
	for (i = 0; i < 200; i++) {
		now = dying_cgroups();
		if (now <= before)
			break;
		usleep(100000);
	}
	ASSERT_GE(before, now) {
		TH_LOG("%ld removed cgroups still not freed after 20 s (%ld before)",
		       now - before, before);
	}
out:
	if (fd >= 0)
		close(fd);
	lt_release(n);
	unlink(file);
	free(file);
}

#define NEST_FILES 1024

/* Child: fsync-heavy writes into the upper filesystem until @end. */
static int nest_writer(const char *mnt, double end)
{
	char path[PATH_MAX], buf[16384];
	int i, fd;

	memset(buf, 0x3c, sizeof(buf));
	for (i = 0; lt_now() < end; i++) {
		snprintf(path, sizeof(path), "%s/w%d", mnt, i % 64);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || write(fd, buf, sizeof(buf)) != sizeof(buf) ||
		    fsync(fd))
			return 1;
		close(fd);
	}
	return 0;
}

/*
 * Child: changes the mode of every file (a transaction each, which reads
 * the inode's table block if it is not cached: plugged, inside the
 * transaction) and drops the upper filesystem's clean metadata buffers
 * (BLKFLSBUF, then the page cache) between passes, until @end.
 */
static int nest_chmod(const char *mnt, int n, double end)
{
	char path[PATH_MAX];
	int pass, i, fd = lt_open_dev(n, O_RDONLY);

	if (fd < 0)
		return 1;
	for (pass = 0; lt_now() < end; pass++) {
		if (ioctl(fd, BLKFLSBUF, 0) ||
		    lt_write_str("/proc/sys/vm/drop_caches", "1"))
			return 2;
		for (i = 0; i < NEST_FILES && lt_now() < end; i++) {
			snprintf(path, sizeof(path), "%s/f%d", mnt, i);
			if (chmod(path, pass & 1 ? 0644 : 0600))
				return 3;
		}
	}
	close(fd);
	return 0;
}

/*
 * A filesystem on a device with direct I/O over a file on ext4 (the
 * scratch filesystem), fsync-heavy. Both upper filesystems issue I/O from
 * inside their own transactions, plugged, so that it reaches ->queue_rq
 * from a task whose current->journal_info holds their handle: ext4 reads
 * inode table blocks in a transaction, btrfs writes its tree and log
 * blocks in one (commit, fsync). The backing ext4 updates the file's times
 * on those reads and writes, a transaction of its own: issued from
 * ->queue_rq, it would take the upper handle for its own (a jbd2 BUG, or
 * worse with a btrfs handle). jbd2 also sets a no-fs allocation scope for
 * its handles, which the fast path refuses too; btrfs does not. Also: the
 * fast path was used, and the upper filesystem checks clean afterwards.
 */
FIXTURE(nest) {
};

FIXTURE_VARIANT(nest) {
	const char *fstype;
	const char *mkfs;
	const char *fsck;
	off_t size;
	bool fast_path_used;
};

FIXTURE_VARIANT_ADD(nest, ext4) {
	.fstype = "ext4",
	.mkfs = "mkfs.ext4 -q -F -N 4096",
	.fsck = "e2fsck -f -n",
	.size = 48 * MiB,
	.fast_path_used = true,
};

FIXTURE_VARIANT_ADD(nest, btrfs) {
	.fstype = "btrfs",
	.mkfs = "mkfs.btrfs -q -f",
	.fsck = "btrfs check --readonly",
	.size = 128 * MiB,
};

FIXTURE_SETUP(nest)
{
}

FIXTURE_TEARDOWN(nest)
{
}

TEST_F(nest, nowait_keeps_stacked_transactions_apart)
{
	char *file, mnt[64], dev[32], cmd[160], path[PATH_MAX], tool[64];
	struct loop_info64 info;
	long before, after;
	int n, fd, i, f, status;
	pid_t pid[2];
	double end;

	snprintf(tool, sizeof(tool), "/usr/sbin/mkfs.%s", variant->fstype);
	if (access(tool, X_OK))
		SKIP(return, "no %s", tool);
	/*
	 * Written, not allocated: a direct write into an unwritten extent
	 * cannot be taken without waiting, and would go to the worker.
	 */
	file = lt_make_file("nest", variant->size, 0x5a);
	ASSERT_NE(NULL, file);
	fd = lt_attach_free(file, LO_FLAGS_DIRECT_IO, &n);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ioctl(fd, LOOP_GET_STATUS64, &info));
	if (!(info.lo_flags & LO_FLAGS_DIRECT_IO))
		SKIP(goto out, "no direct I/O to %s", lt_dir());
	snprintf(dev, sizeof(dev), "/dev/loop%d", n);
	snprintf(cmd, sizeof(cmd), "%s %s >/dev/null", variant->mkfs, dev);
	ASSERT_EQ(0, lt_run(cmd));
	snprintf(mnt, sizeof(mnt), "/tmp/lt-nest-%d", getpid());
	ASSERT_EQ(0, mkdir(mnt, 0700));
	i = mount(dev, mnt, variant->fstype, 0, NULL) ? -errno : 0;
	if (i == -ENODEV) {
		rmdir(mnt);
		SKIP(goto out, "no %s in this kernel", variant->fstype);
	}
	ASSERT_EQ(0, i);
	for (i = 0; i < NEST_FILES; i++) {
		snprintf(path, sizeof(path), "%s/f%d", mnt, i);
		f = open(path, O_WRONLY | O_CREAT, 0600);
		ASSERT_LE(0, f);
		close(f);
	}
	sync();
	before = lt_nowait_issued(n);
	ASSERT_LE(0, before);
	end = lt_deadline(30);
	for (i = 0; i < 2; i++) {
		pid[i] = fork();
		ASSERT_LE(0, pid[i]);
		if (pid[i] == 0)
			_exit(i ? nest_chmod(mnt, n, end) :
				  nest_writer(mnt, end));
	}
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(pid[i], waitpid(pid[i], &status, 0));
		ASSERT_TRUE(WIFEXITED(status));
		EXPECT_EQ(0, WEXITSTATUS(status)) {
			TH_LOG("%s: exit %d", i ? "chmod" : "writer",
			       WEXITSTATUS(status));
		}
	}
	after = lt_nowait_issued(n);
	ASSERT_EQ(0, umount(mnt));
	rmdir(mnt);
	snprintf(cmd, sizeof(cmd), "%s %s >/dev/null 2>&1", variant->fsck, dev);
	EXPECT_EQ(0, lt_run(cmd));
	TH_LOG("%s: %ld requests issued by ->queue_rq", variant->fstype,
	       after - before);
	/*
	 * Not vacuous: the fast path was in use. With btrfs above, every
	 * request comes from inside a btrfs transaction or from a workqueue
	 * worker, and is refused: 0 is right there, and the breakage
	 * nowait-ignores-journal-info shows what the refusal prevents (a
	 * crash in jbd2__journal_start() on Debian's 6.12).
	 */
	if (variant->fast_path_used)
		EXPECT_LT(0, after - before);
out:
	close(fd);
	lt_release(n);
	unlink(file);
	free(file);
}

/*
 * One read or write of @len bytes at @off through io_submit(), as fio's
 * libaio engine does: the block layer dispatches it from the submitter's
 * plug, where the fast path may issue it. Returns the result (bytes or
 * -errno), or -1000 - errno if the aio calls themselves failed.
 */
static long aio_rw(int fd, void *buf, size_t len, off_t off, bool write)
{
	aio_context_t ctx = 0;
	struct iocb cb = { 0 }, *cbs[1] = { &cb };
	struct io_event ev;
	long ret;

	if (syscall(__NR_io_setup, 1, &ctx))
		return -1000 - errno;
	cb.aio_fildes = fd;
	cb.aio_lio_opcode = write ? IOCB_CMD_PWRITE : IOCB_CMD_PREAD;
	cb.aio_buf = (unsigned long)buf;
	cb.aio_nbytes = len;
	cb.aio_offset = off;
	ret = syscall(__NR_io_submit, ctx, 1, cbs);
	if (ret == 1)
		ret = syscall(__NR_io_getevents, ctx, 1, 1, &ev, NULL) == 1 ?
		      (long)ev.res : -1000 - errno;
	else
		ret = -1000 - errno;
	syscall(__NR_io_destroy, ctx);
	return ret;
}

/*
 * A backing file on an ext4 mounted with data=journal (itself on a loop
 * device over the scratch filesystem): ext4 takes its direct I/O as
 * buffered, and answers IOCB_NOWAIT writes with EOPNOTSUPP. The fast path
 * must hand them to the worker (found by review: the requests failed),
 * and stop asking: reads and writes through io_submit() all succeed, and
 * the data is in the file.
 */
TEST(nowait_eopnotsupp_goes_to_the_worker)
{
	char *outer = lt_make_file("jfs", 32 * MiB, 0), *file = NULL;
	char mnt[64], dev[32], cmd[128];
	unsigned char *buf, *got;
	struct loop_info64 info;
	int na, fa, n, fd, d, bfd, i;
	long before;

	ASSERT_NE(NULL, outer);
	if (access("/usr/sbin/mkfs.ext4", X_OK))
		SKIP(return, "no mkfs.ext4");
	fa = lt_attach_free(outer, 0, &na);
	ASSERT_LE(0, fa);
	snprintf(dev, sizeof(dev), "/dev/loop%d", na);
	snprintf(cmd, sizeof(cmd), "mkfs.ext4 -q -F %s", dev);
	ASSERT_EQ(0, lt_run(cmd));
	snprintf(mnt, sizeof(mnt), "/tmp/lt-jdata-%d", getpid());
	ASSERT_EQ(0, mkdir(mnt, 0700));
	ASSERT_EQ(0, mount(dev, mnt, "ext4", 0, "data=journal"));
	file = lt_make_file_at(mnt, "jdata", 4 * MiB, 0x21);
	ASSERT_NE(NULL, file);
	fd = lt_attach_free(file, LO_FLAGS_DIRECT_IO, &n);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ioctl(fd, LOOP_GET_STATUS64, &info));
	if (!(info.lo_flags & LO_FLAGS_DIRECT_IO))
		SKIP(goto out, "no direct I/O to a data=journal ext4");
	before = lt_nowait_issued(n);
	d = lt_open_dev(n, O_RDWR | O_DIRECT);
	ASSERT_LE(0, d);
	ASSERT_EQ(0, posix_memalign((void **)&buf, 4096, 65536));
	ASSERT_EQ(0, posix_memalign((void **)&got, 4096, 65536));
	for (i = 0; i < 16; i++) {
		memset(buf, 0x40 + i, 65536);
		ASSERT_EQ(65536, aio_rw(d, buf, 65536, i * 65536, true))
			TH_LOG("write %d", i);
		ASSERT_EQ(65536, aio_rw(d, got, 65536, i * 65536, false))
			TH_LOG("read %d", i);
		ASSERT_EQ(0, memcmp(buf, got, 65536));
	}
	ASSERT_EQ(0, fsync(d));
	TH_LOG("%ld attempts taken by the fast path", lt_nowait_issued(n) - before);
	close(d);
	ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
	bfd = open(file, O_RDONLY);
	ASSERT_LE(0, bfd);
	for (i = 0; i < 16; i++) {
		memset(buf, 0x40 + i, 65536);
		ASSERT_EQ(65536, pread(bfd, got, 65536, i * 65536));
		ASSERT_EQ(0, memcmp(buf, got, 65536)) TH_LOG("block %d", i);
	}
	close(bfd);
	free(buf);
	free(got);
out:
	close(fd);
	lt_release(n);
	unlink(file);
	free(file);
	umount(mnt);
	rmdir(mnt);
	close(fa);
	lt_release(na);
	unlink(outer);
	free(outer);
}

/*
 * A buffered device at an offset just short of a page boundary: a read
 * whose first bytes are cached and the rest not gets from IOCB_NOWAIT a
 * transfer shorter than a sector. It must be done again by the worker,
 * not failed (found by review: the short-transfer rule rounded it down to
 * nothing and failed it with EIO).
 */
TEST(nowait_short_read_below_a_sector_is_retried)
{
	const off_t offset = 4096 - 100;
	char *file = lt_make_file("short", 4 * MiB, 0x33);
	unsigned char *got, expect[4096];
	int n, fd, dev, bfd, round;
	char c;

	ASSERT_NE(NULL, file);
	ASSERT_EQ(0, posix_memalign((void **)&got, 4096, 4096));
	memset(expect, 0x33, sizeof(expect));
	n = lt_get_free();
	ASSERT_LE(0, n);
	fd = lt_open_dev(n, O_RDWR);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, lt_configure(fd, file, O_RDWR, 0, offset, 0, 0));
	dev = lt_open_dev(n, O_RDONLY | O_DIRECT);
	ASSERT_LE(0, dev);
	bfd = open(file, O_RDONLY);
	ASSERT_LE(0, bfd);
	ASSERT_EQ(0, posix_fadvise(bfd, 0, 0, POSIX_FADV_RANDOM));
	for (round = 0; round < 64; round++) {
		off_t page = (off_t)round * 8192;

		/* Only the page holding the first 100 bytes is cached. */
		ASSERT_EQ(0, posix_fadvise(bfd, 0, 0, POSIX_FADV_DONTNEED));
		ASSERT_EQ(1, pread(bfd, &c, 1, page));
		ASSERT_EQ(4096, aio_rw(dev, got, 4096, page, false)) {
			TH_LOG("round %d", round);
		}
		ASSERT_EQ(0, memcmp(expect, got, 4096));
	}
	TH_LOG("nowait_issued %ld", lt_nowait_issued(n));
	close(bfd);
	close(dev);
	close(fd);
	lt_release(n);
	unlink(file);
	free(file);
	free(got);
}

/*
 * Attach @file (buffered) to a free device, and open that device for
 * direct reads: the device's fd, or -1; *@n and *@fd (the attacher's
 * open, for LOOP_CLR_FD) are set on success.
 */
static int attach_direct_reader(const char *file, int *n, int *fd)
{
	int dev;

	*fd = lt_attach_free(file, 0, n);
	if (*fd < 0)
		return -1;
	dev = lt_open_dev(*n, O_RDONLY | O_DIRECT);
	if (dev < 0)
		close(*fd);
	return dev;
}

/*
 * A direct read with RWF_NOWAIT reaches ->queue_rq as a REQ_NOWAIT request:
 * its submitter must not wait, and IOCB_NOWAIT on the backing file may
 * still allocate or wait for a lock, so it goes to the worker, as every
 * request does with the stock driver, and its answer is the stock one
 * (the data). The same reads without the flag take the fast path, so the
 * file does qualify (found by review: the fast path issued REQ_NOWAIT
 * requests itself).
 */
TEST(nowait_flagged_requests_go_to_the_worker)
{
	char *file = lt_make_file("rwfnw", 4 * MiB, 0x5c);
	unsigned char *got, expect[4096];
	long before, mid, after;
	int n, fd, dev, bfd, i;
	struct iovec iov;
	ssize_t r;

	ASSERT_NE(NULL, file);
	ASSERT_EQ(0, posix_memalign((void **)&got, 4096, 4096));
	memset(expect, 0x5c, sizeof(expect));
	/* Every page of the backing file cached: nothing to wait for. */
	bfd = open(file, O_RDONLY);
	ASSERT_LE(0, bfd);
	for (i = 0; i < 4 * MiB / 4096; i++)
		ASSERT_EQ(4096, pread(bfd, got, 4096, (off_t)i * 4096));
	close(bfd);
	dev = attach_direct_reader(file, &n, &fd);
	ASSERT_LE(0, dev);
	before = lt_nowait_issued(n);
	ASSERT_LE(0, before);
	iov = (struct iovec){ .iov_base = got, .iov_len = 4096 };
	for (i = 0; i < 64; i++) {
		memset(got, 0, 4096);
		r = preadv2(dev, &iov, 1, (off_t)i * 4096, RWF_NOWAIT);
		ASSERT_EQ(4096, r) TH_LOG("read %d: %s", i, lt_errname(errno));
		ASSERT_EQ(0, memcmp(expect, got, 4096));
	}
	mid = lt_nowait_issued(n);
	for (i = 0; i < 64; i++)
		ASSERT_EQ(4096, preadv2(dev, &iov, 1, (off_t)i * 4096, 0));
	after = lt_nowait_issued(n);
	TH_LOG("fast path: %ld with RWF_NOWAIT, %ld without", mid - before,
	       after - mid);
	EXPECT_EQ(before, mid);
	EXPECT_EQ(64, after - mid);
	close(dev);
	ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
	close(fd);
	lt_release(n);
	unlink(file);
	free(file);
	free(got);
}

#define DEEP_QD		32
#define DEEP_ROUNDS	20
#define DEPTH_PARAM	"/sys/module/loop/parameters/nowait_depth"

/*
 * DEEP_ROUNDS batches of DEEP_QD direct 4 KiB reads of loop device @n open
 * as @dev, of every other block (adjacent ones would merge into one
 * request in io_submit()'s plug), each batch submitted by one io_submit()
 * and reaped whole; every block checked against @fill. Counts in @shared
 * the batches of which the fast path left some to the worker. Returns 0,
 * or the failing read's number + 1.
 */
static int deep_batches(int n, int dev, unsigned char fill,
			unsigned char *bufs, int *shared)
{
	struct iocb cb[DEEP_QD], *cbs[DEEP_QD];
	struct timespec limit = { .tv_sec = 30 };
	struct io_event ev[DEEP_QD];
	aio_context_t ctx = 0;
	int round, i, bad = 0;
	long issued;

	*shared = 0;
	if (syscall(__NR_io_setup, DEEP_QD, &ctx))
		return 1;
	for (round = 0; round < DEEP_ROUNDS && !bad; round++) {
		for (i = 0; i < DEEP_QD; i++) {
			memset(bufs + i * 4096, 0, 4096);
			cb[i] = (struct iocb){
				.aio_fildes = dev,
				.aio_lio_opcode = IOCB_CMD_PREAD,
				.aio_buf = (unsigned long)(bufs + i * 4096),
				.aio_nbytes = 4096,
				/* Every other block: no two merge. */
				.aio_offset = (off_t)(round * DEEP_QD + i) * 8192,
			};
			cbs[i] = &cb[i];
		}
		issued = lt_nowait_issued(n);
		if (syscall(__NR_io_submit, ctx, DEEP_QD, cbs) != DEEP_QD ||
		    syscall(__NR_io_getevents, ctx, DEEP_QD, DEEP_QD, ev,
			    &limit) != DEEP_QD) {
			bad = round * DEEP_QD + 1;
			break;
		}
		if (lt_nowait_issued(n) - issued < DEEP_QD)
			(*shared)++;
		for (i = 0; i < DEEP_QD && !bad; i++)
			if (ev[i].res != 4096)
				bad = round * DEEP_QD + i + 1;
		for (i = 0; i < DEEP_QD * 4096 && !bad; i++)
			if (bufs[i] != fill)
				bad = round * DEEP_QD + i / 4096 + 1;
	}
	syscall(__NR_io_destroy, ctx);
	return bad;
}

/*
 * A submitter that keeps many direct reads in flight (fio at depth 32)
 * would issue them all on its own CPU through the fast path; past
 * nowait_depth requests in the device, unless the workers are far behind,
 * the worker takes them, as stock's does (found by bench/: the fast path
 * alone made 0.57 of stock's IOPS at depth 32). With the parameter at 0 the fast path
 * takes every one of the same reads, so the file does qualify. At 1 (so
 * that a slow guest, whose reads complete nearly as fast as it submits,
 * still has two in flight) the worker takes some in most batches, not
 * only in the first ones: a worker that stopped counting what it issued
 * would soon look far behind for ever. The data is right either way.
 */
TEST(deep_queues_share_the_work_with_a_worker)
{
	char *file = lt_make_file("deep", 2 * DEEP_QD * DEEP_ROUNDS * 4096, 0x3d);
	int n, fd, dev, f, shared0, shared1;
	long before, mid, after;
	struct loop_info64 info;
	unsigned char *bufs;
	char depth[16] = "";

	ASSERT_NE(NULL, file);
	ASSERT_EQ(0, posix_memalign((void **)&bufs, 4096, DEEP_QD * 4096));
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		SKIP(goto out_file, "one CPU");
	f = open(DEPTH_PARAM, O_RDONLY);
	ASSERT_LE(0, f);
	ASSERT_LT(0, read(f, depth, sizeof(depth) - 1));
	close(f);
	/* Clean on disk: IOCB_NOWAIT direct reads refuse dirty ranges. */
	sync();
	fd = lt_attach_free(file, LO_FLAGS_DIRECT_IO, &n);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ioctl(fd, LOOP_GET_STATUS64, &info));
	if (!(info.lo_flags & LO_FLAGS_DIRECT_IO))
		SKIP(goto out, "no direct I/O to %s", lt_dir());
	dev = lt_open_dev(n, O_RDONLY | O_DIRECT);
	ASSERT_LE(0, dev);
	before = lt_nowait_issued(n);
	ASSERT_LE(0, before);
	ASSERT_EQ(0, lt_write_str(DEPTH_PARAM, "0"));
	EXPECT_EQ(0, deep_batches(n, dev, 0x3d, bufs, &shared0));
	mid = lt_nowait_issued(n);
	EXPECT_EQ(0, lt_write_str(DEPTH_PARAM, "1"));
	EXPECT_EQ(0, deep_batches(n, dev, 0x3d, bufs, &shared1));
	after = lt_nowait_issued(n);
	/* The value it had at the start (the module's default, or a test's). */
	ASSERT_EQ(0, lt_write_str(DEPTH_PARAM, depth));
	close(dev);
	TH_LOG("%s: fast path took %ld of %d reads with nowait_depth 0, %ld with 1 (worker shared %d of %d batches)",
	       lt_dir(), mid - before, DEEP_QD * DEEP_ROUNDS, after - mid,
	       shared1, DEEP_ROUNDS);
	EXPECT_EQ(DEEP_QD * DEEP_ROUNDS, mid - before);
	EXPECT_EQ(0, shared0);
	EXPECT_LT(0, after - mid);
	EXPECT_LE(DEEP_ROUNDS / 2, shared1);
out:
	ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
	close(fd);
	lt_release(n);
out_file:
	unlink(file);
	free(file);
	free(bufs);
}

/*
 * Direct I/O to a block device as backing file: the block layer fails a
 * REQ_NOWAIT bio that it would have to split with EAGAIN, and blkdev's
 * direct I/O marks its bios so under IOCB_NOWAIT. A request larger than
 * the device below takes must go to the worker at once instead of being
 * tried, refused and done again (found by review: every such request was
 * issued twice). The lower device here is another loop device whose
 * max_sectors_kb is 64: 256 KiB reads are left to the worker, 4 KiB reads
 * still take the fast path, and the data is right.
 */
TEST(nowait_leaves_what_the_device_below_would_split)
{
	char *file = lt_make_file("split", 4 * MiB, 0x6b);
	char lower[32], path[96], kb[16] = "";
	long before, mid, after;
	struct loop_info64 info;
	int nb, fb, n, fd, dev, i, j, f;
	unsigned char *buf;

	ASSERT_NE(NULL, file);
	ASSERT_EQ(0, posix_memalign((void **)&buf, 4096, 256 * 1024));
	fb = lt_attach_free(file, 0, &nb);
	ASSERT_LE(0, fb);
	snprintf(path, sizeof(path), "/sys/block/loop%d/queue/max_sectors_kb",
		 nb);
	f = open(path, O_RDONLY);
	ASSERT_LE(0, f);
	ASSERT_LT(0, read(f, kb, sizeof(kb) - 1));
	close(f);
	ASSERT_EQ(0, lt_write_str(path, "64"));
	snprintf(lower, sizeof(lower), "/dev/loop%d", nb);
	fd = lt_attach_free(lower, LO_FLAGS_DIRECT_IO, &n);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ioctl(fd, LOOP_GET_STATUS64, &info));
	if (!(info.lo_flags & LO_FLAGS_DIRECT_IO))
		SKIP(goto out, "no direct I/O to a loop device");
	dev = lt_open_dev(n, O_RDONLY | O_DIRECT);
	ASSERT_LE(0, dev);
	before = lt_nowait_issued(n);
	ASSERT_LE(0, before);
	for (i = 0; i < 16; i++) {
		memset(buf, 0, 256 * 1024);
		ASSERT_EQ(256 * 1024, pread(dev, buf, 256 * 1024,
					    (off_t)i * 256 * 1024));
		for (j = 0; j < 256 * 1024; j++)
			ASSERT_EQ(0x6b, buf[j]) TH_LOG("read %d byte %d", i, j);
	}
	mid = lt_nowait_issued(n);
	for (i = 0; i < 16; i++) {
		memset(buf, 0, 4096);
		ASSERT_EQ(4096, pread(dev, buf, 4096, (off_t)i * 8192));
		for (j = 0; j < 4096; j++)
			ASSERT_EQ(0x6b, buf[j]) TH_LOG("read %d byte %d", i, j);
	}
	after = lt_nowait_issued(n);
	close(dev);
	TH_LOG("fast path: %ld of 16 reads of 256 KiB, %ld of 16 of 4 KiB",
	       mid - before, after - mid);
	EXPECT_EQ(before, mid);
	EXPECT_EQ(16, after - mid);
out:
	ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
	close(fd);
	lt_release(n);
	/* The queue outlives the binding: the next user gets its own limit. */
	EXPECT_EQ(0, lt_write_str(path, kb));
	ASSERT_EQ(0, ioctl(fb, LOOP_CLR_FD));
	close(fb);
	lt_release(nb);
	unlink(file);
	free(file);
	free(buf);
}

/*
 * KiB of the shared tmpfs mapping at @map in swap, from /proc/self/smaps
 * ("Swap:" counts the file's pages in swap exactly), or -1.
 */
static long mapping_swap_kib(void *map)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	unsigned long start, end;
	char line[256];
	bool ours = false;
	long kib = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		/* A mapping's first line: "start-end perms ...". */
		if (sscanf(line, "%lx-%lx ", &start, &end) == 2)
			ours = start == (unsigned long)map;
		else if (ours && sscanf(line, "Swap: %ld kB", &kib) == 1)
			break;
	}
	fclose(f);
	return kib;
}

/* A swap file of @size bytes at @path, written (no holes), swapped on. */
static int swap_on_file(const char *path, off_t size)
{
	unsigned char page[4096] = { 0 };
	__u32 *info = (__u32 *)(page + 1024);
	off_t done;
	int fd, err = 0;

	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return -errno;
	for (done = 0; done < size && !err; done += sizeof(page))
		if (write(fd, page, sizeof(page)) != sizeof(page))
			err = -EIO;
	/* The header mkswap writes: version 1, the last page, no bad ones. */
	info[0] = 1;
	info[1] = size / sizeof(page) - 1;
	memcpy(page + sizeof(page) - 10, "SWAPSPACE2", 10);
	if (!err && (pwrite(fd, page, sizeof(page), 0) != sizeof(page) ||
		     fsync(fd)))
		err = -EIO;
	close(fd);
	if (!err && swapon(path, 0))
		err = -errno;
	return err;
}

/*
 * tmpfs has no FMODE_NOWAIT, but its read of pages in memory waits for no
 * I/O: such reads take the fast path, direct reads of the device as well
 * as its own readahead (which runs in a no-fs scope), holes too. A read
 * that meets a page swapped out goes to the worker, which swaps it in.
 * The data is the file's in every case.
 */
TEST(nowait_reads_tmpfs_pages_in_memory)
{
	char *file = lt_make_file_at("/tmp", "shmrd", 4 * MiB, 0x3c);
	long before, direct, ahead, swapped, kib;
	unsigned char *buf, *map = NULL;
	char swapfile[128] = "";
	int n, fd, dev, bfd, i, j;
	struct statfs sfs;

	ASSERT_NE(NULL, file);
	ASSERT_EQ(0, statfs("/tmp", &sfs));
	if (sfs.f_type != 0x01021994) {
		unlink(file);
		SKIP(return, "/tmp is not tmpfs");
	}
	ASSERT_EQ(0, posix_memalign((void **)&buf, 4096, 64 * 1024));
	/* 4 MiB written, then a 4 MiB hole. */
	bfd = open(file, O_RDWR);
	ASSERT_LE(0, bfd);
	ASSERT_EQ(0, ftruncate(bfd, 8 * MiB));
	dev = attach_direct_reader(file, &n, &fd);
	ASSERT_LE(0, dev);
	before = lt_nowait_issued(n);
	ASSERT_LE(0, before);
	for (i = 0; i < 64; i++) {
		int at = i < 48 ? i : 1024 + i;	/* the last 16 in the hole */
		int want = i < 48 ? 0x3c : 0;

		memset(buf, 0xee, 4096);
		ASSERT_EQ(4096, pread(dev, buf, 4096, (off_t)at * 4096));
		for (j = 0; j < 4096; j++)
			ASSERT_EQ(want, buf[j]) TH_LOG("read %d byte %d", i, j);
	}
	direct = lt_nowait_issued(n) - before;
	/* Buffered reads of the device: its readahead. */
	close(dev);
	dev = lt_open_dev(n, O_RDONLY);
	ASSERT_LE(0, dev);
	ASSERT_EQ(0, posix_fadvise(dev, 0, 0, POSIX_FADV_DONTNEED));
	before = lt_nowait_issued(n);
	for (i = 0; i < 16; i++) {
		ASSERT_EQ(64 * 1024, pread(dev, buf, 64 * 1024,
					   (off_t)i * 64 * 1024));
		for (j = 0; j < 64 * 1024; j++)
			ASSERT_EQ(0x3c, buf[j]) TH_LOG("read %d byte %d", i, j);
	}
	ahead = lt_nowait_issued(n) - before;
	TH_LOG("fast path: %ld of 64 direct reads, %ld requests of readahead",
	       direct, ahead);
	/* Less a probe of loop_tmpfs_queued() (one in 1024 reads). */
	EXPECT_LE(64 - 1, direct);
	EXPECT_LT(0, ahead);

	/*
	 * The first MiB of the file swapped out, if there is swap to use.
	 * From here on, failures go to out: the swap file must go.
	 */
	snprintf(swapfile, sizeof(swapfile), "%s/lt-swap-%d", lt_dir(),
		 getpid());
	i = swap_on_file(swapfile, 16 * MiB);
	if (i) {
		TH_LOG("no swap (%s): the swapped-out case is not run",
		       strerror(-i));
		unlink(swapfile);
		*swapfile = 0;
		goto out;
	}
	/* Mapped in: MADV_PAGEOUT sees the pages through the page table. */
	map = mmap(NULL, MiB, PROT_READ, MAP_SHARED | MAP_POPULATE, bfd, 0);
	EXPECT_NE(MAP_FAILED, map);
	if (map == MAP_FAILED)
		goto out;
	/* A page in another CPU's LRU batch stays: ask again. */
	for (i = 0, kib = 0; i < 5 && kib != 1024; i++) {
		EXPECT_EQ(0, madvise(map, MiB, MADV_PAGEOUT));
		kib = mapping_swap_kib(map);
	}
	munmap(map, MiB);
	if (kib != 1024) {
		TH_LOG("%ld KiB of 1024 swapped out: the swapped-out case is not run",
		       kib);
		goto out;
	}
	close(dev);
	dev = lt_open_dev(n, O_RDONLY | O_DIRECT);
	EXPECT_LE(0, dev);
	if (dev < 0)
		goto out;
	before = lt_nowait_issued(n);
	for (i = 0; i < 64; i++) {
		memset(buf, 0xee, 4096);
		EXPECT_EQ(4096, pread(dev, buf, 4096, (off_t)i * 4096));
		for (j = 0; j < 4096 && buf[j] == 0x3c; j++)
			;
		EXPECT_EQ(4096, j) TH_LOG("read %d: byte %d is 0x%02x", i, j,
					  j < 4096 ? buf[j] : 0);
	}
	swapped = lt_nowait_issued(n) - before;
	TH_LOG("%ld KiB swapped out; fast path: %ld of 64 reads of it", kib,
	       swapped);
	EXPECT_EQ(0, swapped);
out:
	if (*swapfile) {
		EXPECT_EQ(0, swapoff(swapfile));
		unlink(swapfile);
	}
	if (dev >= 0)
		close(dev);
	ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
	close(fd);
	lt_release(n);
	close(bfd);
	unlink(file);
	free(file);
	free(buf);
}

#define QUEUE_READS	12288
#define WAITED_READS	256
/* The blocks read, at every other 4 KiB (no two reads merge). */
#define QUEUE_BLOCKS	2048
/* The driver's LOOP_TMPFS_WINDOW and LOOP_TMPFS_PROBE (loop_io.c). */
#define TMPFS_WINDOW	32
#define TMPFS_PROBE	1024
_Static_assert(QUEUE_READS / 4 > 2 * (TMPFS_PROBE + TMPFS_WINDOW),
	       "the queued phase finds the queue even after a missed probe");

/* Does read @i of reads_at_depth() hold what it should? */
static int queue_block_ok(const unsigned char *b, int i, unsigned char fill)
{
	__u64 want = i % QUEUE_BLOCKS, got;
	int k;

	memcpy(&got, b, sizeof(got));
	if (got != want)
		return 0;
	for (k = sizeof(got); k < 4096; k++)
		if (b[k] != fill)
			return 0;
	return 1;
}

/*
 * @count direct 4 KiB reads of @dev, read i of block i % QUEUE_BLOCKS
 * (at every other 4 KiB), each checked (queue_block_ok()); @depth of them
 * kept in flight, each submitted by an io_submit() of its own as one
 * completes (fio's way at --iodepth 32), or, at depth 1, each waited for
 * with pread(). Returns 0, or the failing read's number + 1 (1 if the
 * aio context could not be set up).
 */
static int reads_at_depth(int dev, int depth, int count, unsigned char fill,
			  unsigned char *bufs)
{
	struct timespec limit = { .tv_sec = 30 };
	int sent = 0, done = 0, nfree, i, j;
	int slots[DEEP_QD], read_of[DEEP_QD];
	struct iocb cb[DEEP_QD], *cbp;
	struct io_event ev[DEEP_QD];
	aio_context_t ctx = 0;

	if (depth == 1) {
		for (i = 0; i < count; i++) {
			memset(bufs, 0, 4096);
			if (pread(dev, bufs, 4096,
				  (off_t)(i % QUEUE_BLOCKS) * 8192) != 4096 ||
			    !queue_block_ok(bufs, i, fill))
				return i + 1;
		}
		return 0;
	}
	if (depth > DEEP_QD || syscall(__NR_io_setup, depth, &ctx))
		return 1;
	for (nfree = 0; nfree < depth; nfree++)
		slots[nfree] = nfree;
	while (done < count) {
		/* Refill the free slots, one io_submit() per read. */
		while (nfree && sent < count) {
			int slot = slots[--nfree];

			cbp = &cb[slot];
			bufs[slot * 4096] = ~fill;
			read_of[slot] = sent;
			*cbp = (struct iocb){
				.aio_fildes = dev,
				.aio_lio_opcode = IOCB_CMD_PREAD,
				.aio_buf = (unsigned long)(bufs + slot * 4096),
				.aio_nbytes = 4096,
				.aio_offset = (off_t)(sent % QUEUE_BLOCKS) * 8192,
				.aio_data = slot,
			};
			if (syscall(__NR_io_submit, ctx, 1, &cbp) != 1) {
				j = sent + 1;
				goto out;
			}
			sent++;
		}
		j = syscall(__NR_io_getevents, ctx, 1, depth, ev, &limit);
		if (j < 1) {
			j = done + 1;
			goto out;
		}
		for (i = 0; i < j; i++) {
			int slot = ev[i].data;

			if (ev[i].res != 4096 ||
			    !queue_block_ok(bufs + slot * 4096, read_of[slot],
					    fill)) {
				j = read_of[slot] + 1;
				goto out;
			}
			slots[nfree++] = slot;
		}
		done += j;
	}
	j = 0;
out:
	/* Waits for the reads still in flight: @bufs is theirs until then. */
	syscall(__NR_io_destroy, ctx);
	return j;
}

/* Is the module parameter @name set to something other than @off? */
static int param_is_not(const char *name, char off)
{
	char path[96], c = off;
	int f;

	snprintf(path, sizeof(path), "/sys/module/loop/parameters/%s", name);
	f = open(path, O_RDONLY);
	if (f >= 0) {
		if (read(f, &c, 1) != 1)
			c = off;
		close(f);
	}
	return c != off;
}

/*
 * A read of tmpfs that takes the fast path is copied in ->queue_rq, so it
 * completes before its submitter submits the next. A submitter that keeps
 * a queue of them (fio at depth 32, each read submitted alone) would copy
 * them all on its own CPU, where the workers would copy them while it
 * submits (found by bench/: tmpfs-buffered rand-read-qd32 at 0.48 of
 * stock's IOPS). Reads that keep arriving while another is in the device
 * go to the workers; once reads are waited for again, the fast path
 * takes them again, after at most two windows (TMPFS_WINDOW reads). On
 * 6.1 the queue is found only through a probe (a read in TMPFS_PROBE to
 * a worker). The submitter checks each read with memcmp(): one slower
 * than the workers' copy (a byte loop under TCG) leaves them idle and
 * rightly keeps the fast path (measured in development: 639 of 2048).
 * The data is right either way, each block read where it should be.
 */
TEST(tmpfs_reads_of_a_queueing_submitter_go_to_the_workers)
{
	long before, waited, queued, again;
	unsigned char *bufs = NULL;
	char *file = NULL, idle[32];
	int n, fd, dev, bfd, i;
	struct statfs sfs;

	ASSERT_EQ(0, statfs("/tmp", &sfs));
	if (sfs.f_type != 0x01021994)
		SKIP(return, "/tmp is not tmpfs");
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		SKIP(return, "one CPU");
	if (!param_is_not("nowait", 'N') || !param_is_not("nowait_depth", '0'))
		SKIP(return, "fast path or its queue rule turned off");
	file = lt_make_file_at("/tmp", "shmq", 2 * QUEUE_BLOCKS * 4096, 0x4e);
	ASSERT_NE(NULL, file);
	ASSERT_EQ(0, posix_memalign((void **)&bufs, 4096, DEEP_QD * 4096));
	/* Each block read carries its number. */
	bfd = open(file, O_RDWR);
	ASSERT_LE(0, bfd);
	for (i = 0; i < QUEUE_BLOCKS; i++) {
		__u64 v = i;

		ASSERT_EQ(sizeof(v), pwrite(bfd, &v, sizeof(v), (off_t)i * 8192));
	}
	close(bfd);
	dev = attach_direct_reader(file, &n, &fd);
	EXPECT_LE(0, dev);
	if (dev < 0)
		goto out_file;
	/* Nothing of anyone else's in the device when counting starts. */
	for (i = 0; i < 100; i++) {
		long r = 1, w = 1;

		if (!lt_sysfs(n, "inflight", idle, sizeof(idle)) &&
		    sscanf(idle, "%ld %ld", &r, &w) == 2 && !r && !w)
			break;
		usleep(10000);
	}
	before = lt_nowait_issued(n);
	EXPECT_LE(0, before);
	EXPECT_EQ(0, reads_at_depth(dev, 1, WAITED_READS, 0x4e, bufs));
	waited = lt_nowait_issued(n) - before;
	before += waited;
	EXPECT_EQ(0, reads_at_depth(dev, DEEP_QD, QUEUE_READS, 0x4e, bufs));
	queued = lt_nowait_issued(n) - before;
	before += queued;
	EXPECT_EQ(0, reads_at_depth(dev, 1, WAITED_READS, 0x4e, bufs));
	again = lt_nowait_issued(n) - before;
	TH_LOG("fast path: %ld of %d waited reads, %ld of %d queued at depth %d, then %ld of %d waited",
	       waited, WAITED_READS, queued, QUEUE_READS, DEEP_QD, again,
	       WAITED_READS);
	/*
	 * Less a probe, for reads of the device by others since the
	 * attach; two windows to change course back; a probe's period and
	 * a window to find the queue where only a probe finds it (6.1).
	 */
	EXPECT_LE(WAITED_READS - 1, waited);
	EXPECT_GT(QUEUE_READS / 4, queued);
	EXPECT_LE(WAITED_READS - 1 - 2 * TMPFS_WINDOW, again);
	close(dev);
	EXPECT_EQ(0, ioctl(fd, LOOP_CLR_FD));
	close(fd);
	lt_release(n);
out_file:
	unlink(file);
	free(file);
	free(bufs);
}

TEST_HARNESS_MAIN
