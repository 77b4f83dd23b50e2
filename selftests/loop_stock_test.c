// SPDX-License-Identifier: GPL-2.0
/*
 * User-visible answers of this loop.ko compared with the stock loop.ko of
 * the same kernel. Every case is a function that builds a scenario, says
 * what user space saw in an answer string ("configure=0 flag=1 dio=1
 * lbs=4096"), and removes every device and file it made.
 *
 *   loop_stock_test --record	print "name: answer" for the loaded driver
 *				(run_all.sh records the stock loop.ko's in
 *				the same guest, in /tmp/stock-answers.txt)
 *   LOOP_STOCK_ANSWERS=FILE loop_stock_test
 *				every answer of this driver must be stock's,
 *				except where deviations[] documents that ours
 *				deliberately differs on this kernel series
 *
 * Without LOOP_STOCK_ANSWERS every test is skipped. The backings are the
 * guest's (scripts/guest-init.sh): /tmp (tmpfs), LOOP_SCRATCH (ext4 on a
 * 512-byte disk), LOOP_SCRATCH4K (ext4 on a 4Kn disk) and LOOP_RAW4K (a raw
 * 4Kn disk); a case whose backing is missing answers "unavailable" (on
 * both drivers alike).
 */
#include "loop_test_util.h"

#include <dirent.h>
#include <stdarg.h>
#include <sys/mount.h>
#include <sys/swap.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <linux/falloc.h>

#include "kselftest_harness.h"

#define MiB (1024 * 1024)
#define ANS 256

#ifndef SWAP_FLAG_DISCARD_ONCE
#define SWAP_FLAG_DISCARD_ONCE 0x20000
#endif

enum group {
	G_DIO, G_CONTROL, G_DISCARD, G_ITER, G_RO_BELOW, G_MOUNTED, G_GET_FREE,
	G_LOG, G_SYSFS,
};
enum backing { B_TMPFS, B_EXT4, B_EXT4_4K, B_RAW4K };

struct scase {
	const char *name;
	enum group group;
	void (*run)(const struct scase *c, char *ans);
	int a, b, c;		/* the run function's parameters */
	const char *must;	/* our answer must contain this too */
};

struct deviation {
	const char *series;	/* "6.1", "6.12": uname -r's major.minor */
	const char *name;
	const char *ours;	/* our answer there */
};

/* Append " fmt..." to the answer @ans. */
static void __attribute__((format(printf, 2, 3)))
say(char *ans, const char *fmt, ...)
{
	size_t len = strlen(ans);
	va_list ap;

	if (len && len < ANS - 1) {
		ans[len++] = ' ';
		ans[len] = 0;
	}
	va_start(ap, fmt);
	vsnprintf(ans + len, ANS - len, fmt, ap);
	va_end(ap);
}

/* A new 4 MiB file (the raw disk's path for B_RAW4K), or NULL. */
static char *backing_path(int b)
{
	const char *dir = "/tmp";

	if (b == B_EXT4)
		dir = getenv("LOOP_SCRATCH");
	else if (b == B_EXT4_4K)
		dir = getenv("LOOP_SCRATCH4K");
	else if (b == B_RAW4K)
		dir = getenv("LOOP_RAW4K");
	if (!dir || !*dir)
		return NULL;
	if (b == B_RAW4K)
		return strdup(dir);
	return lt_make_file_at(dir, "stock", 4 * MiB, 0);
}

static void put_backing(int b, char *path)
{
	if (path && b != B_RAW4K)
		unlink(path);
	free(path);
}

/* A device of our own (LOOP_CTL_ADD), open O_RDWR in *@fd: number or -1. */
static int new_dev(int *fd)
{
	int n = lt_add_dev();

	*fd = n < 0 ? -1 : lt_open_dev(n, O_RDWR);
	if (*fd < 0 && n >= 0)
		lt_remove_dev(n);
	return *fd < 0 ? -1 : n;
}

/* Detach and remove a device from new_dev(). */
static void del_dev(int n, int fd)
{
	if (fd >= 0) {
		ioctl(fd, LOOP_CLR_FD);
		close(fd);
	}
	if (n >= 0)
		lt_remove_dev(n);
}

/* "0", or the name of errno if the call that returned @r failed. */
static const char *ename(long r)
{
	return lt_errname(r < 0 ? errno : 0);
}

/* "flag=F dio=D lbs=L" of the bound device @n. */
static void say_dio(char *ans, int n, int fd)
{
	char dio[16] = "?", lbs[16] = "?";
	struct loop_info64 info;

	if (ioctl(fd, LOOP_GET_STATUS64, &info))
		say(ans, "status=%s", lt_errname(errno));
	else
		say(ans, "flag=%d", !!(info.lo_flags & LO_FLAGS_DIRECT_IO));
	lt_sysfs(n, "loop/dio", dio, sizeof(dio));
	lt_sysfs(n, "queue/logical_block_size", lbs, sizeof(lbs));
	say(ans, "dio=%s lbs=%s", dio, lbs);
}

/*
 * 1. LOOP_CONFIGURE with block_size 0 over backing @a, opened with O_DIRECT
 * if @b, asking LO_FLAGS_DIRECT_IO if @c; with @c == 2, a plain attach and
 * then LOOP_SET_DIRECT_IO(1).
 */
static void dio_attach(const struct scase *c, char *ans)
{
	char *path = backing_path(c->a);
	int n, dev, fd, r;

	if (!path) {
		say(ans, "unavailable");
		return;
	}
	fd = open(path, O_RDWR | O_CLOEXEC | (c->b ? O_DIRECT : 0));
	if (fd < 0) {
		say(ans, "open=%s", lt_errname(errno));
		put_backing(c->a, path);
		return;
	}
	n = new_dev(&dev);
	r = lt_configure_fd(dev, fd, c->c == 1 ? LO_FLAGS_DIRECT_IO : 0,
			    0, 0, 0, NULL);
	close(fd);
	say(ans, "configure=%s", lt_errname(r));
	if (!r && c->c == 2)
		say(ans, "set_dio=%s",
		    ename(ioctl(dev, LOOP_SET_DIRECT_IO, 1)));
	if (!r)
		say_dio(ans, n, dev);
	del_dev(n, dev);
	put_backing(c->a, path);
}

/* 1. losetup -f --show --direct-io=on over a file on backing @a. */
static void losetup_dio(const struct scase *c, char *ans)
{
	char *path = backing_path(c->a), cmd[512], out[64] = "", dio[16];
	int n, st, fd;
	char seen[1024];
	FILE *p;

	if (!path) {
		say(ans, "unavailable");
		return;
	}
	/* The devices that exist now are not ours to remove. */
	for (n = 0; n < (int)sizeof(seen); n++)
		seen[n] = lt_exists("/sys/block/loop%d", n);
	snprintf(cmd, sizeof(cmd),
		 "/usr/sbin/losetup -f --show --direct-io=on '%s' 2>/dev/null",
		 path);
	p = popen(cmd, "r");
	if (!p) {
		say(ans, "popen=%s", lt_errname(errno));
		put_backing(c->a, path);
		return;
	}
	if (!fgets(out, sizeof(out), p))
		out[0] = 0;
	st = pclose(p);
	say(ans, "exit=%d", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	if (st == 0 && sscanf(out, "/dev/loop%d", &n) == 1) {
		if (lt_sysfs(n, "loop/dio", dio, sizeof(dio)))
			snprintf(dio, sizeof(dio), "?");
		say(ans, "dio=%s", dio);
		fd = lt_open_dev(n, O_RDWR);
		if (fd >= 0) {
			ioctl(fd, LOOP_CLR_FD);
			close(fd);
		}
		if (n >= (int)sizeof(seen) || !seen[n])
			lt_remove_dev(n);
	}
	put_backing(c->a, path);
}

/* 2. An ioctl on /dev/loop-control that it does not know (@a: which). */
static void control_ioctl(const struct scase *c, char *ans)
{
	int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);

	if (ctl < 0 || fd < 0)
		say(ans, "open=%s", lt_errname(errno));
	else if (c->a)
		say(ans, "LOOP_SET_FD=%s", ename(ioctl(ctl, LOOP_SET_FD, fd)));
	else
		say(ans, "ioctl_0x8F=%s", ename(ioctl(ctl, _IO('L', 0x8F))));
	close(ctl);
	close(fd);
}

/* 3. Discard of 512 bytes at 512 through a 512-byte loop on a 4Kn disk. */
static void discard_misaligned(const struct scase *c, char *ans)
{
	char *path = backing_path(B_RAW4K);
	__u64 range[2] = { 512, 512 };
	int n, dev, r;

	if (!path) {
		say(ans, "unavailable");
		return;
	}
	n = new_dev(&dev);
	r = lt_configure(dev, path, O_RDWR, 0, 0, 0, 512);
	say(ans, "configure=%s", lt_errname(r));
	if (!r) {
		say(ans, "BLKDISCARD=%s", ename(ioctl(dev, BLKDISCARD, range)));
		say(ans, "BLKZEROOUT=%s", ename(ioctl(dev, BLKZEROOUT, range)));
		r = fallocate(dev, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      512, 512);
		say(ans, "punch_hole=%s", ename(r));
	}
	del_dev(n, dev);
	put_backing(B_RAW4K, path);
}

/* 4. LOOP_CONFIGURE over /proc/meminfo, which has no ->write_iter. */
static void no_write_iter(const struct scase *c, char *ans)
{
	int fd = open("/proc/meminfo", O_RDWR | O_CLOEXEC), n, dev, r;
	struct loop_info64 info;

	if (fd < 0) {
		say(ans, "open_rdwr=%s open=O_RDONLY", lt_errname(errno));
		fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
	} else {
		say(ans, "open=O_RDWR");
	}
	n = new_dev(&dev);
	r = lt_configure_fd(dev, fd, 0, 0, 0, 0, NULL);
	say(ans, "configure=%s", lt_errname(r));
	if (!r && !ioctl(dev, LOOP_GET_STATUS64, &info))
		say(ans, "ro=%d", !!(info.lo_flags & LO_FLAGS_READ_ONLY));
	close(fd);
	del_dev(n, dev);
}

/* A regular file of /proc without ->read_iter, opened O_RDONLY, or -1. */
static int open_no_read_iter(void)
{
	int fd = open("/proc/self/environ", O_RDONLY | O_CLOEXEC);
	struct stat st;

	if (fd >= 0 && (fstat(fd, &st) || !S_ISREG(st.st_mode))) {
		close(fd);
		return -1;
	}
	return fd;
}

/* 4. LOOP_CONFIGURE over a regular file without ->read_iter. */
static void no_read_iter(const struct scase *c, char *ans)
{
	int fd = open_no_read_iter(), n, dev;

	if (fd < 0) {
		say(ans, "no-file");
		return;
	}
	n = new_dev(&dev);
	say(ans, "configure=%s",
	    lt_errname(lt_configure_fd(dev, fd, 0, 0, 0, 0, NULL)));
	close(fd);
	del_dev(n, dev);
}

/* 4. LOOP_CHANGE_FD of a read-only device over /proc/meminfo. */
static void change_fd_proc(const struct scase *c, char *ans)
{
	int fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC), n, dev, r;
	int cpu = open("/proc/cpuinfo", O_RDONLY | O_CLOEXEC);
	int nri = open_no_read_iter();

	n = new_dev(&dev);
	r = lt_configure_fd(dev, fd, 0, 0, 0, 0, NULL);
	say(ans, "configure=%s", lt_errname(r));
	if (!r) {
		say(ans, "to_cpuinfo=%s",
		    ename(ioctl(dev, LOOP_CHANGE_FD, cpu)));
		say(ans, "to_no_read_iter=%s",
		    ename(ioctl(dev, LOOP_CHANGE_FD, nri)));
	}
	close(fd);
	close(cpu);
	close(nri);
	del_dev(n, dev);
}

/* Is every byte of the file @path from @from on @fill? */
static int all_bytes(const char *path, off_t from, int fill)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), i, ok = fd >= 0;
	unsigned char buf[65536];
	ssize_t r;

	while (ok && (r = pread(fd, buf, sizeof(buf), from)) > 0) {
		for (i = 0; i < r; i++)
			ok &= buf[i] == fill;
		from += r;
	}
	if (fd >= 0)
		close(fd);
	return ok;
}

/*
 * 5. Device A read-only over a file of 0xAB, device B read-write over
 * /dev/loopA: every write-type request B sends down must fail on A. (On
 * 6.1 and 6.12, blkdev_issue_zeroout() and blkdev_write_iter() already
 * refuse a read-only A, so B's requests fail before they reach A.)
 */
static void ro_below(const struct scase *c, char *ans)
{
	char *path = lt_make_file("stock-ro", 4 * MiB, 0xab), *buf = NULL;
	int na, a, nb = -1, b = -1, afd, dfd, r;
	__u64 range[2] = { 0, MiB };
	char apath[64];

	na = new_dev(&a);
	r = lt_configure(a, path, O_RDONLY, 0, 0, 0, 0);
	say(ans, "configure_a=%s", lt_errname(r));
	snprintf(apath, sizeof(apath), "/dev/loop%d", na);
	afd = r ? -1 : open(apath, O_RDWR | O_CLOEXEC);
	if (!r && afd < 0)
		say(ans, "open_a_rdwr=%s", lt_errname(errno));
	if (afd >= 0) {
		nb = new_dev(&b);
		r = lt_configure_fd(b, afd, 0, 0, 0, 0, apath);
		close(afd);
		say(ans, "configure_b=%s", lt_errname(r));
	}
	if (afd >= 0 && !r) {
		say(ans, "BLKDISCARD=%s", ename(ioctl(b, BLKDISCARD, range)));
		say(ans, "BLKZEROOUT=%s", ename(ioctl(b, BLKZEROOUT, range)));
		r = fallocate(b, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      0, MiB);
		say(ans, "punch_hole=%s", ename(r));
		r = fallocate(b, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
			      0, MiB);
		say(ans, "zero_range=%s", ename(r));
		dfd = lt_open_dev(nb, O_RDWR | O_DIRECT);
		if (dfd < 0 || posix_memalign((void **)&buf, 4096, 4096)) {
			say(ans, "open_b_direct=%s", lt_errname(errno));
		} else {
			memset(buf, 0x5a, 4096);
			say(ans, "pwrite_direct=%s",
			    ename(pwrite(dfd, buf, 4096, 0)));
		}
		if (dfd >= 0)
			close(dfd);
		free(buf);
	}
	del_dev(nb, b);
	del_dev(na, a);
	say(ans, "a_unchanged=%d", path && all_bytes(path, 0, 0xab));
	if (path)
		unlink(path);
	free(path);
}

/*
 * 5. swapon with discard of device A, read-only over a file of 0xAB with a
 * swap header: the swap code sends REQ_OP_DISCARD bios straight to A,
 * which must fail there. (6.12's blkdev_issue_discard() does not check
 * read-only; 6.1's does and answers EPERM before A sees anything.)
 */
static void ro_swapon(const struct scase *c, char *ans)
{
	char *path = lt_make_file("stock-swap", 4 * MiB, 0xab), apath[64];
	char page[4096] = { 0 };
	__u32 *hdr = (__u32 *)(page + 1024);
	int na, a, fd, r = -EIO;

	hdr[0] = 1;				/* version */
	hdr[1] = 4 * MiB / sizeof(page) - 1;	/* last page */
	memcpy(page + sizeof(page) - 10, "SWAPSPACE2", 10);
	fd = path ? open(path, O_WRONLY | O_CLOEXEC) : -1;
	na = new_dev(&a);
	if (fd >= 0 && pwrite(fd, page, sizeof(page), 0) == sizeof(page))
		r = lt_configure(a, path, O_RDONLY, 0, 0, 0, 0);
	close(fd);
	say(ans, "configure_a=%s", lt_errname(r));
	snprintf(apath, sizeof(apath), "/dev/loop%d", na);
	if (!r) {
		r = swapon(apath, SWAP_FLAG_DISCARD | SWAP_FLAG_DISCARD_ONCE);
		say(ans, "swapon=%s", ename(r));
		if (!r)
			say(ans, "swapoff=%s", ename(swapoff(apath)));
	}
	del_dev(na, a);
	say(ans, "a_unchanged=%d", path && all_bytes(path, sizeof(page), 0xab));
	if (path)
		unlink(path);
	free(path);
}

/* LOOP_SET_STATUS64 of @dev with these fields changed: 0, or -1 and errno. */
static int set_status(int dev, __u64 offset, __u64 sizelimit, __u32 flags,
		      const char *name)
{
	struct loop_info64 info;

	if (ioctl(dev, LOOP_GET_STATUS64, &info))
		return -1;
	info.lo_offset = offset;
	info.lo_sizelimit = sizelimit;
	info.lo_flags |= flags;
	if (name)
		snprintf((char *)info.lo_file_name, LO_NAME_SIZE, "%s", name);
	return ioctl(dev, LOOP_SET_STATUS64, &info);
}

/* Write a file on the mount @dir and fsync it: 0, or -1 and errno. */
static int write_on(const char *dir)
{
	char path[128], buf[4096];
	int fd, r, e;

	snprintf(path, sizeof(path), "%s/probe", dir);
	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	memset(buf, 7, sizeof(buf));
	r = write(fd, buf, sizeof(buf)) == sizeof(buf) ? fsync(fd) : -1;
	e = errno;
	close(fd);
	errno = e;
	return r;
}

/* 6. LOOP_SET_STATUS64 while ext4 is mounted on the device, and after. */
static void mounted_set_status(const struct scase *c, char *ans)
{
	char *path = lt_make_file_at("/tmp", "stock-ext4", 64 * MiB, 0);
	char cmd[256], mnt[64], dpath[64];
	int n, dev, r;

	snprintf(mnt, sizeof(mnt), "/tmp/lst-mnt-%d", getpid());
	snprintf(cmd, sizeof(cmd),
		 "/usr/sbin/mkfs.ext4 -q -F '%s' >/dev/null 2>&1", path);
	if (!path || system(cmd) || mkdir(mnt, 0700)) {
		say(ans, "setup=%s", path ? "mkfs-or-mkdir" : "file");
		goto out;
	}
	n = new_dev(&dev);
	r = lt_configure(dev, path, O_RDWR, 0, 0, 0, 0);
	snprintf(dpath, sizeof(dpath), "/dev/loop%d", n);
	if (r || mount(dpath, mnt, "ext4", 0, NULL)) {
		say(ans, "configure=%s mount=%s", lt_errname(r),
		    lt_errname(r ? 0 : errno));
		goto out_dev;
	}
	r = set_status(dev, 4096, 0, 0, NULL);
	say(ans, "offset=%s", ename(r));
	if (!r)		/* Stock lets it change: put it back at once. */
		set_status(dev, 0, 0, 0, NULL);
	r = set_status(dev, 0, 32 * MiB, 0, NULL);
	say(ans, "sizelimit=%s", ename(r));
	if (!r)
		set_status(dev, 0, 0, 0, NULL);
	r = set_status(dev, 0, 0, LO_FLAGS_AUTOCLEAR, "loop_stock_test");
	say(ans, "flags_name=%s", ename(r));
	say(ans, "write_file=%s", ename(write_on(mnt)));
	if (umount(mnt))
		say(ans, "umount=%s", lt_errname(errno));
	r = set_status(dev, 4096, 0, 0, NULL);
	say(ans, "unmounted_offset=%s", ename(r));
out_dev:
	del_dev(n, dev);
out:
	rmdir(mnt);
	if (path)
		unlink(path);
	free(path);
}

static const char *same(int a, int b)
{
	return a < 0 || b < 0 ? "error" : a == b ? "same" : "other";
}

/*
 * Issue 17: who LOOP_CTL_GET_FREE hands a device to. The caller asks twice; a
 * second process asks; a third process asks after a process that got a
 * device opened and closed it without attaching; a fourth asks after the
 * caller attached its device and detached it again.
 */
#define HOLD_PARAM LT_HOLD_PARAM

static void get_free_callers(const struct scase *c, char *ans)
{
	char *path = backing_path(B_TMPFS);
	FILE *f = fopen(HOLD_PARAM, "r");
	char hold[32] = "";
	int n, fd, r, m;

	/*
	 * Ours: a hold long enough for the slowest guest's forks, once the
	 * holds of earlier processes (at most the old value) have ended.
	 */
	if (f) {
		if (fgets(hold, sizeof(hold), f))
			usleep((atoi(hold) + 100) * 1000);
		fclose(f);
		lt_write_str(HOLD_PARAM, "10000");
	}
	n = lt_get_free();

	say(ans, "again=%s", same(n, lt_get_free()));
	say(ans, "other_process=%s", same(n, lt_get_free_in_child(0)));
	m = lt_get_free_in_child(1);
	say(ans, "after_its_close=%s", same(m, lt_get_free_in_child(0)));
	fd = n < 0 ? -1 : lt_open_dev(n, O_RDWR);
	r = fd < 0 ? -errno : lt_configure(fd, path, O_RDWR, 0, 0, 0, 0);
	say(ans, "configure=%s", lt_errname(r));
	if (!r)
		ioctl(fd, LOOP_CLR_FD);
	if (fd >= 0)
		close(fd);
	say(ans, "after_attach_detach=%s", same(n, lt_get_free_in_child(0)));
	if (hold[0])
		lt_write_str(HOLD_PARAM, hold);
	put_backing(B_TMPFS, path);
}

/* Records of /dev/kmsg @kmsg that name "loop", up to the last one. */
static int loop_log_lines(int kmsg)
{
	char rec[8192];
	int lines = 0;
	ssize_t len;

	/* One record per read; EAGAIN when none is left (EPIPE: overrun). */
	while ((len = read(kmsg, rec, sizeof(rec) - 1)) != 0) {
		if (len < 0) {
			if (errno == EPIPE)
				continue;
			break;
		}
		rec[len] = 0;
		lines += !!strstr(rec, "loop");
	}
	return lines;
}

/*
 * Issue 17: kernel log lines about loop devices while 16 devices are
 * attached and detached, then while a bound device grows by
 * LOOP_SET_CAPACITY, which logs its capacity change (the log is read,
 * then). Stock 6.12 rate-limits its capacity lines to 10 in 5 s, which
 * the cases before may have used up: its answer can show fewer lines.
 */
static void log_attach_detach(const struct scase *c, char *ans)
{
	int kmsg = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	char *path = backing_path(B_TMPFS);
	int i, n, dev, r, fails = 0;

	if (kmsg < 0 || !path || lseek(kmsg, 0, SEEK_END) < 0) {
		say(ans, "setup=%s", lt_errname(errno));
		goto out;
	}
	for (i = 0; i < 16; i++) {
		n = new_dev(&dev);
		r = n < 0 ? -ENODEV : lt_configure(dev, path, O_RDWR, 0, 0, 0, 0);
		fails += !!r;
		del_dev(n, dev);
	}
	say(ans, "attach_failures=%d lines=%d", fails, loop_log_lines(kmsg));
	n = new_dev(&dev);
	r = n < 0 ? -ENODEV : lt_configure(dev, path, O_RDWR, 0, 0, 0, 0);
	if (!r && truncate(path, 8 * MiB))
		r = -errno;
	if (!r && ioctl(dev, LOOP_SET_CAPACITY, 0))
		r = -errno;
	say(ans, "set_capacity=%s lines=%d", lt_errname(r),
	    loop_log_lines(kmsg));
	del_dev(n, dev);
out:
	if (kmsg >= 0)
		close(kmsg);
	put_backing(B_TMPFS, path);
}

/*
 * "mode=755 uid=0 names=a:444,b:444" of /sys/block/loop@n/loop/ (the files
 * sorted), or "dir=ERR".
 * Our two files that stock lacks (autoclear_delete, nowait_issued: read
 * by loop_ioctl_test and loop_io_test) are left out, so that the rest of
 * the answer is compared with stock's as it is.
 */
static void say_loop_dir(char *ans, int n)
{
	char path[128], file[400], list[ANS / 2] = "";
	struct dirent **ents;
	size_t len = 0;
	struct stat st;
	int i, k;

	snprintf(path, sizeof(path), "/sys/block/loop%d/loop", n);
	if (stat(path, &st) || (k = scandir(path, &ents, NULL, alphasort)) < 0) {
		say(ans, "dir=%s", lt_errname(errno));
		return;
	}
	say(ans, "mode=%o uid=%u", st.st_mode & 07777, st.st_uid);
	for (i = 0; i < k; i++) {
		const char *name = ents[i]->d_name;

		snprintf(file, sizeof(file), "%s/%s", path, name);
		if (name[0] == '.' || !strcmp(name, "autoclear_delete") ||
		    !strcmp(name, "nowait_issued") || stat(file, &st) ||
		    len >= sizeof(list))
			continue;
		len += snprintf(list + len, sizeof(list) - len, "%s%s:%o",
				len ? "," : "", name, st.st_mode & 07777);
	}
	say(ans, "names=%s", list);
	for (i = 0; i < k; i++)
		free(ents[i]);
	free(ents);
}

/*
 * 9. /sys/block/loopN/loop/ over backing @a: its files and their modes
 * while bound; after
 * the last close of an autoclear device, what a read of a file opened
 * while bound answers and whether the directory is gone (when close()
 * returns: SPEC 2); and that it comes back at the next attach of the same
 * device, while a file opened before the detach stays dead.
 */
static void sysfs_loop_dir(const struct scase *c, char *ans)
{
	char *path = backing_path(c->a);
	int n, dev = -1, r, held = -1;
	char buf[64];

	if (!path) {
		say(ans, "unavailable");
		return;
	}
	n = new_dev(&dev);
	r = n < 0 ? -ENODEV : lt_configure(dev, path, O_RDWR,
					    LO_FLAGS_AUTOCLEAR, 0, 0, 0);
	say(ans, "configure=%s", lt_errname(r));
	if (r)
		goto out;
	say_loop_dir(ans, n);
	snprintf(buf, sizeof(buf), "/sys/block/loop%d/loop/offset", n);
	held = open(buf, O_RDONLY | O_CLOEXEC);
	close(dev);
	say(ans, "held_read=%s",
	    held < 0 ? "open_failed" : ename(pread(held, buf, sizeof(buf), 0)));
	say_loop_dir(ans, n);
	dev = lt_open_dev(n, O_RDWR);
	r = dev < 0 ? -errno : lt_configure(dev, path, O_RDWR, 0, 0, 0, 0);
	say(ans, "again=%s", lt_errname(r));
	if (!r) {
		r = lt_sysfs(n, "loop/offset", buf, sizeof(buf));
		say(ans, "offset=%s", r ? lt_errname(r) : buf);
		/* The old file stays dead: the new one is another node. */
		say(ans, "held_then=%s", held < 0 ? "open_failed" :
		    ename(pread(held, buf, sizeof(buf), 0)));
	}
out:
	if (held >= 0)
		close(held);
	del_dev(n, dev);
	put_backing(c->a, path);
}

#define DIO(bn, b) \
	{ "dio." bn ".plain.noflag", G_DIO, dio_attach, b, 0, 0 }, \
	{ "dio." bn ".plain.flag", G_DIO, dio_attach, b, 0, 1 }, \
	{ "dio." bn ".odirect.noflag", G_DIO, dio_attach, b, 1, 0 }, \
	{ "dio." bn ".odirect.flag", G_DIO, dio_attach, b, 1, 1 }, \
	{ "set_dio." bn, G_DIO, dio_attach, b, 0, 2 }

#define SYSFS_DIR(bn, b) \
	{ "sysfs.loop_dir." bn, G_SYSFS, sysfs_loop_dir, b, \
	  .must = "held_read=ENODEV dir=ENOENT again=0 offset=0 " \
		  "held_then=ENODEV" }

static const struct scase cases[] = {
	DIO("tmpfs", B_TMPFS),
	DIO("ext4", B_EXT4),
	DIO("ext4-4k", B_EXT4_4K),
	DIO("raw-4k", B_RAW4K),
	{ "losetup_dio.tmpfs", G_DIO, losetup_dio, B_TMPFS },
	{ "losetup_dio.ext4", G_DIO, losetup_dio, B_EXT4 },
	{ "losetup_dio.ext4-4k", G_DIO, losetup_dio, B_EXT4_4K },
	{ "control.unknown_ioctl", G_CONTROL, control_ioctl, 0 },
	{ "control.LOOP_SET_FD", G_CONTROL, control_ioctl, 1 },
	{ "discard.misaligned_raw-4k", G_DISCARD, discard_misaligned },
	{ "backing.no_write_iter", G_ITER, no_write_iter },
	{ "backing.no_read_iter", G_ITER, no_read_iter },
	{ "change_fd.proc", G_ITER, change_fd_proc },
	{ "ro_below.stacked", G_RO_BELOW, ro_below, .must = "a_unchanged=1" },
	{ "ro_below.swapon_discard", G_RO_BELOW, ro_swapon,
	  .must = "a_unchanged=1" },
	{ "set_status.mounted", G_MOUNTED, mounted_set_status },
	{ "get_free.callers", G_GET_FREE, get_free_callers },
	{ "log.attach_detach", G_LOG, log_attach_detach },
	SYSFS_DIR("tmpfs", B_TMPFS),
	SYSFS_DIR("ext4", B_EXT4),
	SYSFS_DIR("raw-4k", B_RAW4K),
};
#define NR_CASES (sizeof(cases) / sizeof(cases[0]))

#define DIO_4K "configure=0 flag=1 dio=1 lbs=4096"
#define MOUNTED "offset=EBUSY sizelimit=EBUSY flags_name=0 write_file=0 " \
		"unmounted_offset=0"
#define LOG_LINES "attach_failures=0 lines=0 set_capacity=0 lines=1"
#define GET_FREE "again=same other_process=other after_its_close=same " \
		 "configure=0 after_attach_detach=same"

/* Where ours deliberately answers otherwise than stock, and what. */
static const struct deviation deviations[] = {
	/*
	 * Default logical block size (block_size 0): ours takes the backing
	 * device's (the file system's s_bdev, or the block device itself)
	 * whenever direct I/O is wanted, by LO_FLAGS_DIRECT_IO or by an
	 * O_DIRECT fd, and then uses direct I/O, as vanilla 6.12 and mainline
	 * do. Stock 6.1 keys on the fd's O_DIRECT only, Debian's stock
	 * 6.12.117 on the flag only (a partial stable backport): on a 4Kn
	 * backing they stay at 512 bytes, without direct I/O. Stock 6.1 also
	 * looks at the file system's s_bdev only, which a block device's
	 * inode does not have: on the raw 4Kn disk it never does either.
	 */
	{ "6.1", "dio.ext4-4k.plain.flag", DIO_4K },
	{ "6.1", "dio.raw-4k.plain.flag", DIO_4K },
	{ "6.1", "dio.raw-4k.odirect.noflag", DIO_4K },
	{ "6.1", "dio.raw-4k.odirect.flag", DIO_4K },
	{ "6.12", "dio.ext4-4k.odirect.noflag", DIO_4K },
	{ "6.12", "dio.raw-4k.odirect.noflag", DIO_4K },
	/*
	 * A backing file without ->write_iter opened O_RDWR gives a read-only
	 * device (issue 15), as stock 6.1 does; Debian's 6.12.117 refuses it.
	 */
	{ "6.12", "backing.no_write_iter", "open=O_RDWR configure=0 ro=1" },
	/*
	 * A backing file without ->read_iter is refused, by attach and by
	 * LOOP_CHANGE_FD alike (SPEC 4), as stock 6.12 does; stock 6.1 checks
	 * only the file type and accepts it in both.
	 */
	{ "6.1", "backing.no_read_iter", "configure=EINVAL" },
	{ "6.1", "change_fd.proc",
	  "configure=0 to_cpuinfo=0 to_no_read_iter=EINVAL" },
	/*
	 * Offset or size limit changes under an exclusive opener (a mount)
	 * are refused, as mainline does since 6.19; stock 6.1 and 6.12 let
	 * them through. Unlike mainline we allow a change of flags and name
	 * only: systemd sets LO_FLAGS_AUTOCLEAR with LOOP_SET_STATUS64 on
	 * mounted devices.
	 */
	{ "6.1", "set_status.mounted", MOUNTED },
	{ "6.12", "set_status.mounted", MOUNTED },
	/*
	 * LOOP_CTL_GET_FREE holds the device it hands out for its caller
	 * (get_free_hold_ms) until that caller attaches it or closes it:
	 * another process gets another device, and no two "losetup -f"
	 * collide (issue 17). Stock hands the same device to both.
	 */
	{ "6.1", "get_free.callers", GET_FREE },
	{ "6.12", "get_free.callers", GET_FREE },
	/*
	 * Attach and detach log nothing: stock logs "detected capacity
	 * change" for each attach (6.12 rate-limits it), a line per device
	 * that floods the log of a machine churning through thousands
	 * (issue 17). A resize of a bound device logs its line, as stock.
	 */
	{ "6.1", "log.attach_detach", LOG_LINES },
	{ "6.12", "log.attach_detach", LOG_LINES },
};
#define NR_DEVIATIONS (sizeof(deviations) / sizeof(deviations[0]))

FIXTURE(stock) {
	char *answers[NR_CASES];	/* stock's, NULL if not recorded */
	char series[16];
};

FIXTURE_SETUP(stock)
{
	const char *file = getenv("LOOP_STOCK_ANSWERS");
	char line[ANS + 128];
	struct utsname u;
	unsigned int i;
	int major, minor;
	FILE *f;

	if (!file || !*file)
		SKIP(return, "no LOOP_STOCK_ANSWERS: nothing to compare with");
	f = fopen(file, "r");
	ASSERT_NE(NULL, f) {
		TH_LOG("cannot read the stock answers in %s: %s", file,
		       strerror(errno));
	}
	memset(self->answers, 0, sizeof(self->answers));
	while (fgets(line, sizeof(line), f)) {
		char *sep = strstr(line, ": ");

		if (!sep)
			continue;
		*sep = 0;
		sep[2 + strcspn(sep + 2, "\n")] = 0;
		for (i = 0; i < NR_CASES; i++)
			if (!strcmp(line, cases[i].name) && !self->answers[i])
				self->answers[i] = strdup(sep + 2);
	}
	fclose(f);
	ASSERT_EQ(0, uname(&u));
	ASSERT_EQ(2, sscanf(u.release, "%d.%d", &major, &minor)) {
		TH_LOG("kernel release %s", u.release);
	}
	snprintf(self->series, sizeof(self->series), "%d.%d", major, minor);
}

FIXTURE_TEARDOWN(stock)
{
	unsigned int i;

	for (i = 0; i < NR_CASES; i++)
		free(self->answers[i]);
}

/* Run every case of @group on this driver and judge its answer. */
static void judge(struct __test_metadata *_metadata,
		  FIXTURE_DATA(stock) *self, enum group group)
{
	const char *theirs, *want;
	unsigned int i, j;
	char ours[ANS];

	for (i = 0; i < NR_CASES; i++) {
		const struct scase *c = &cases[i];

		if (c->group != group)
			continue;
		ours[0] = 0;
		c->run(c, ours);
		theirs = self->answers[i] ?: "(not recorded)";
		want = theirs;
		/* A missing backing is missing for both drivers alike. */
		for (j = 0; j < NR_DEVIATIONS; j++)
			if (!strcmp(deviations[j].series, self->series) &&
			    !strcmp(deviations[j].name, c->name) &&
			    strcmp(ours, "unavailable"))
				want = deviations[j].ours;
		TH_LOG("%s: ours \"%s\", stock \"%s\"%s", c->name, ours,
		       theirs, want != theirs ? " (deliberately differs)" : "");
		if (c->must && strcmp(ours, "unavailable"))
			EXPECT_NE(NULL, strstr(ours, c->must)) {
				TH_LOG("%s: ours lacks %s", c->name, c->must);
			}
		EXPECT_STREQ(want, ours) {
			TH_LOG("%s on %s: ours must be %s", c->name,
			       self->series, want != theirs ?
			       "the documented answer of deviations[]" :
			       "the stock loop.ko's answer");
		}
	}
}

TEST_F_TIMEOUT(stock, direct_io_matrix, 300)
{
	judge(_metadata, self, G_DIO);
}

TEST_F(stock, loop_control_unknown_ioctls)
{
	judge(_metadata, self, G_CONTROL);
}

TEST_F(stock, discard_on_misaligned_backing)
{
	judge(_metadata, self, G_DISCARD);
}

TEST_F(stock, backing_without_read_or_write_iter)
{
	judge(_metadata, self, G_ITER);
}

TEST_F(stock, write_ops_reach_read_only_device_below)
{
	judge(_metadata, self, G_RO_BELOW);
}

TEST_F_TIMEOUT(stock, set_status_while_mounted, 120)
{
	judge(_metadata, self, G_MOUNTED);
}

TEST_F(stock, get_free_callers)
{
	judge(_metadata, self, G_GET_FREE);
}

TEST_F(stock, kernel_log_of_attach_and_detach)
{
	judge(_metadata, self, G_LOG);
}

TEST_F(stock, sysfs_loop_directory)
{
	judge(_metadata, self, G_SYSFS);
}

int main(int argc, char **argv)
{
	unsigned int i;

	if (argc > 1 && !strcmp(argv[1], "--record")) {
		for (i = 0; i < NR_CASES; i++) {
			char ans[ANS] = "";

			cases[i].run(&cases[i], ans);
			printf("%s: %s\n", cases[i].name, ans);
			fflush(stdout);
		}
		return 0;
	}
	return test_harness_run(argc, argv);
}
