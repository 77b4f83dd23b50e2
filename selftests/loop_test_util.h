/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the loop selftests: backing files, getting a device
 * from /dev/loop-control, attaching with LOOP_CONFIGURE, sysfs reads.
 */
#ifndef LOOP_TEST_UTIL_H
#define LOOP_TEST_UTIL_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/fs.h>
#include <linux/loop.h>

#ifndef BLKGETDISKSEQ
#define BLKGETDISKSEQ _IOR(0x12, 128, __u64)
#endif

/* Where backing files go: a real filesystem if the guest has one. */
static inline const char *lt_dir(void)
{
	const char *d = getenv("LOOP_SCRATCH");

	return d && *d ? d : "/tmp";
}

/*
 * Create a backing file of @size bytes filled with @fill in directory @dir;
 * returns its path (to free), or NULL.
 */
static inline char *lt_make_file_at(const char *dir, const char *tag,
				    off_t size, int fill)
{
	static int seq;
	char *path;
	char buf[65536];
	off_t done = 0;
	int fd;

	if (asprintf(&path, "%s/lt-%s-%d-%d.img", dir, tag, getpid(),
		     seq++) < 0)
		return NULL;
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return NULL;
	/*
	 * Zeros need not be copied in: allocate them (tmpfs gives zeroed
	 * pages, ext4 unwritten extents), which is much quicker on the debug
	 * kernel. A filesystem without fallocate() gets them written.
	 */
	if (!fill && size && !fallocate(fd, 0, 0, size)) {
		close(fd);
		return path;
	}
	memset(buf, fill, sizeof(buf));
	while (done < size) {
		size_t n = size - done < (off_t)sizeof(buf) ?
			   size - done : sizeof(buf);
		if (write(fd, buf, n) != (ssize_t)n) {
			close(fd);
			return NULL;
		}
		done += n;
	}
	close(fd);
	return path;
}

/* Create a backing file of @size bytes filled with @fill; returns path. */
static inline char *lt_make_file(const char *tag, off_t size, int fill)
{
	return lt_make_file_at(lt_dir(), tag, size, fill);
}

/*
 * Write an MBR with two Linux partitions (sectors 8-135 and 136-263) at
 * the start of @fd: a partition scan has something to find. 0 or -1.
 */
static inline int lt_write_mbr(int fd)
{
	unsigned char mbr[512] = { 0 };

	mbr[446 + 4] = 0x83;
	mbr[446 + 8] = 8;
	mbr[446 + 12] = 0x80;
	mbr[462 + 4] = 0x83;
	mbr[462 + 8] = 0x88;
	mbr[462 + 12] = 0x80;
	mbr[510] = 0x55;
	mbr[511] = 0xaa;
	return pwrite(fd, mbr, sizeof(mbr), 0) == sizeof(mbr) ? 0 : -1;
}

/* A free device number from /dev/loop-control, or -errno. */
static inline int lt_get_free(void)
{
	int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	int n;

	if (ctl < 0)
		return -errno;
	n = ioctl(ctl, LOOP_CTL_GET_FREE);
	if (n < 0)
		n = -errno;
	close(ctl);
	return n;
}

static inline int lt_ctl(unsigned long cmd, long arg)
{
	int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	int ret;

	if (ctl < 0)
		return -errno;
	ret = ioctl(ctl, cmd, arg);
	if (ret < 0)
		ret = -errno;
	close(ctl);
	return ret;
}

static inline int lt_open_dev(int n, int flags)
{
	char path[64];

	snprintf(path, sizeof(path), "/dev/loop%d", n);
	return open(path, flags | O_CLOEXEC);
}

/* Our LOOP_CTL_GET_FREE's hold (absent with the stock loop.ko). */
#define LT_HOLD_PARAM "/sys/module/loop/parameters/get_free_hold_ms"

/*
 * LOOP_CTL_GET_FREE's answer in a new process (another thread than the
 * caller's), waited for; with @open_close the child also opens and closes
 * the device it got (its close is the last: its hold ends). -1 on error.
 */
static inline int lt_get_free_in_child(int open_close)
{
	int pfd[2], n = -1;
	pid_t pid;

	if (pipe(pfd))
		return -1;
	pid = fork();
	if (pid == 0) {
		n = lt_get_free();
		if (n >= 0 && open_close) {
			int fd = lt_open_dev(n, O_RDWR);

			if (fd >= 0)
				close(fd);
		}
		_exit(write(pfd[1], &n, sizeof(n)) == sizeof(n) ? 0 : 1);
	}
	close(pfd[1]);
	if (pid < 0 || read(pfd[0], &n, sizeof(n)) != sizeof(n))
		n = -1;
	close(pfd[0]);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	return n;
}

/* Seconds on the monotonic clock. */
static inline double lt_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * Line-buffered stdout, so that run_all.sh can time each test by the TAP
 * lines as they come through its pipe.
 */
__attribute__((constructor)) static void lt_line_buffered(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
}

/*
 * The end of a test's time bound of @seconds, scaled by LOOP_TIME_SCALE
 * (make check shortens the bounds on some guests; rounds are bounded by
 * count as well).
 */
static inline double lt_time_scale(void)
{
	const char *scale = getenv("LOOP_TIME_SCALE");

	return scale && atof(scale) > 0 ? atof(scale) : 1;
}

static inline double lt_deadline(double seconds)
{
	return lt_now() + seconds * lt_time_scale();
}

/*
 * How much of @bytes to write for a teardown that must take a while: all
 * of it, or less on a guest with shorter time bounds (whose write-back is
 * as much slower); a multiple of @granule, at least one.
 */
static inline off_t lt_scaled(off_t bytes, off_t granule)
{
	off_t n = bytes / granule * lt_time_scale() + 0.5;

	return (n > 1 ? n : 1) * granule;
}

/*
 * Write @buf (@chunk bytes) over [@from, @to) of @fd, chunk by chunk: dirty
 * pages for a teardown to write back. 0, or -1 at the first short write.
 */
static inline int lt_dirty(int fd, const void *buf, off_t chunk, off_t from,
			   off_t to)
{
	for (off_t off = from; off < to; off += chunk)
		if (pwrite(fd, buf, chunk, off) != chunk)
			return -1;
	return 0;
}

/*
 * The least number of rounds a test bounded by time must have done to
 * count: @n, scaled down with its time bound (at least 1).
 */
static inline long lt_least(long n)
{
	double scale = lt_time_scale();
	long least = scale < 1 ? (long)(n * scale + 0.999) : n;

	return least > 0 ? least : 1;
}

/* Write the string @val to the file @path: 0 or -errno. */
static inline int lt_write_str(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t r;

	if (fd < 0)
		return -errno;
	r = write(fd, val, strlen(val));
	if (r < 0)
		r = -errno;
	close(fd);
	return r < 0 ? (int)r : r == (ssize_t)strlen(val) ? 0 : -EIO;
}

/* LOOP_CONFIGURE @devfd over the open file @fd; 0 or -errno. */
static inline int lt_configure_fd(int devfd, int fd, __u32 flags,
				  __u64 offset, __u64 sizelimit,
				  __u32 block_size, const char *name)
{
	struct loop_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.fd = fd;
	cfg.block_size = block_size;
	cfg.info.lo_flags = flags;
	cfg.info.lo_offset = offset;
	cfg.info.lo_sizelimit = sizelimit;
	if (name)
		snprintf((char *)cfg.info.lo_file_name, LO_NAME_SIZE, "%.*s",
			 LO_NAME_SIZE - 1, name);
	return ioctl(devfd, LOOP_CONFIGURE, &cfg) ? -errno : 0;
}

/* LOOP_CONFIGURE @devfd over @path; returns 0 or -errno. */
static inline int lt_configure(int devfd, const char *path, int open_flags,
			       __u32 flags, __u64 offset, __u64 sizelimit,
			       __u32 block_size)
{
	int fd = open(path, open_flags | O_CLOEXEC);
	int ret;

	if (fd < 0)
		return -errno;
	ret = lt_configure_fd(devfd, fd, flags, offset, sizelimit, block_size,
			      path);
	close(fd);
	return ret;
}

/* Run a shell command; its exit status, or -1 if it did not exit. */
static inline int lt_run(const char *cmd)
{
	int status = system(cmd);

	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/*
 * Attach @path (opened with @open_flags) at @offset to a free device with
 * @flags, as losetup -f does: LOOP_CTL_GET_FREE, open, LOOP_CONFIGURE, and
 * again on EBUSY (another attacher won the device). Returns the open
 * device's fd and its number in @np, or -errno.
 */
static inline int lt_attach_free_at(const char *path, int open_flags,
				    __u32 flags, __u64 offset, int *np)
{
	*np = -1;
	for (int tries = 0; tries < 100; tries++) {
		int n = lt_get_free();
		int fd, err;

		if (n < 0)
			return n;
		fd = lt_open_dev(n, O_RDWR);
		if (fd < 0)
			return -errno;
		err = lt_configure(fd, path, open_flags, flags, offset, 0, 0);
		if (!err) {
			*np = n;
			return fd;
		}
		close(fd);
		if (err != -EBUSY)
			return err;
	}
	return -EBUSY;
}

static inline int lt_attach_free(const char *path, __u32 flags, int *np)
{
	return lt_attach_free_at(path, O_RDWR, flags, 0, np);
}

/* Read /sys/block/loopN/<attr> into @buf, trailing newline removed. */
static inline int lt_sysfs(int n, const char *attr, char *buf, size_t len)
{
	char path[128];
	ssize_t r;
	int fd;

	snprintf(path, sizeof(path), "/sys/block/loop%d/%s", n, attr);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	r = read(fd, buf, len - 1);
	close(fd);
	if (r < 0)
		return -errno;
	buf[r] = 0;
	if (r > 0 && buf[r - 1] == '\n')
		buf[r - 1] = 0;
	return 0;
}

/* Requests loop@n's ->queue_rq issued itself (the IOCB_NOWAIT path). */
static inline long lt_nowait_issued(int n)
{
	char buf[32];

	if (lt_sysfs(n, "loop/nowait_issued", buf, sizeof(buf)))
		return -1;
	return atol(buf);
}

static inline int lt_exists(const char *fmt, int n)
{
	char path[128];

	snprintf(path, sizeof(path), fmt, n, n);
	return access(path, F_OK) == 0;
}

/*
 * Which loopN this is: the inode number of its sysfs directory, which
 * kernfs never hands out twice; 0 if there is no loopN. Tells the device
 * that should have gone from one that an open created again: opening
 * /dev/loopN whose node was looked up just before the device was deleted
 * makes the block layer create loopN anew (legacy autoload, stock too).
 */
static inline ino_t lt_dev_id(int n)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/sys/block/loop%d", n);
	return stat(path, &st) ? 0 : st.st_ino;
}

static inline __u64 lt_diskseq(int fd)
{
	__u64 seq = 0;

	if (ioctl(fd, BLKGETDISKSEQ, &seq) < 0)
		return 0;
	return seq;
}

static inline long long lt_size(int fd)
{
	unsigned long long size;

	if (ioctl(fd, BLKGETSIZE64, &size) < 0)
		return -errno;
	return size;
}

/* "0" for 0, else the errno's name ("EINVAL"); @e may be negative. */
static inline const char *lt_errname(int e)
{
	static char buf[16];
	const char *name;

	if (e < 0)
		e = -e;
	if (!e)
		return "0";
	name = strerrorname_np(e);
	if (name)
		return name;
	snprintf(buf, sizeof(buf), "%d", e);
	return buf;
}

/* A new device (LOOP_CTL_ADD, any free number): its number or -errno. */
static inline int lt_add_dev(void)
{
	return lt_ctl(LOOP_CTL_ADD, -1);
}

/*
 * Detach device @n and remove it, waiting up to a second for a teardown
 * that the last close started: 0 or -errno of LOOP_CTL_REMOVE.
 */
static inline int lt_remove_dev(int n)
{
	int fd = lt_open_dev(n, O_RDWR), ret, try;

	if (fd >= 0) {
		ioctl(fd, LOOP_CLR_FD);
		close(fd);
	}
	for (try = 0; try < 100; try++) {
		ret = lt_ctl(LOOP_CTL_REMOVE, n);
		if (ret != -EBUSY)
			break;
		usleep(10000);
	}
	return ret;
}

/* Best-effort cleanup of device @n: detach and remove it. */
static inline void lt_release(int n)
{
	int fd = lt_open_dev(n, O_RDWR);

	if (fd >= 0) {
		ioctl(fd, LOOP_CLR_FD);
		close(fd);
	}
	lt_ctl(LOOP_CTL_REMOVE, n);
}

#endif
