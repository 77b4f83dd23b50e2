// SPDX-License-Identifier: GPL-2.0
/*
 * Fault injection (kernels with CONFIG_FAULT_INJECTION_DEBUG_FS and the
 * stacktrace filter, such as the debug guest): fail the 1st, 2nd, ...
 * allocation made with the loop module on the stack (failslab, then
 * fail_page_alloc, aimed at the module's text by require-start/-end and at
 * this task by /proc/thread-self/fail-nth) during LOOP_CTL_ADD, attach,
 * the partition scan of an attach, and the teardown of a detach, until the
 * operation runs through without reaching the injected failure. Every
 * failure must give a clean errno, and leave the device usable or absent;
 * the guest checks the kernel log and kmemleak afterwards.
 */
#include "loop_test_util.h"

#include <stdbool.h>

#include "kselftest_harness.h"

#define DBG_FS	"/sys/kernel/debug"
#define MiB	(1024 * 1024)
#define MAX_NTH	1000

static void kmsg(const char *msg)
{
	lt_write_str("/dev/kmsg", msg);
}

/* Text range of the loop module, from /proc/modules. */
static int module_range(unsigned long *start, unsigned long *end)
{
	char line[256], name[64];
	unsigned long size, addr;
	FILE *f = fopen("/proc/modules", "r");
	int ret = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%63s %lu %*s %*s %*s %lx", name, &size,
			   &addr) == 3 && !strcmp(name, "loop") && addr) {
			*start = addr;
			*end = addr + size;
			ret = 0;
		}
	fclose(f);
	return ret;
}

/* Arm the attribute @attr ("failslab", "fail_page_alloc") for fail-nth. */
static int arm(const char *attr, bool on, unsigned long start,
	       unsigned long end)
{
	char path[128], val[32];
	static const char * const knobs[][2] = {
		{ "probability", "0" }, { "interval", "1" }, { "times", "-1" },
		{ "space", "0" }, { "verbose", "0" }, { "task-filter", "N" },
		{ "stacktrace-depth", "32" },
	};
	unsigned int i;
	int err = 0;

	for (i = 0; i < sizeof(knobs) / sizeof(knobs[0]); i++) {
		snprintf(path, sizeof(path), DBG_FS "/%s/%s", attr,
			 knobs[i][0]);
		err |= lt_write_str(path, knobs[i][1]);
	}
	snprintf(path, sizeof(path), DBG_FS "/%s/ignore-gfp-wait", attr);
	err |= lt_write_str(path, on ? "N" : "Y");
	if (!strcmp(attr, "fail_page_alloc")) {
		err |= lt_write_str(DBG_FS "/fail_page_alloc/min-order", "0");
		err |= lt_write_str(DBG_FS "/fail_page_alloc/ignore-gfp-highmem", "N");
	}
	snprintf(path, sizeof(path), DBG_FS "/%s/require-start", attr);
	snprintf(val, sizeof(val), "%lu", on ? start : 0);
	err |= lt_write_str(path, val);
	snprintf(path, sizeof(path), DBG_FS "/%s/require-end", attr);
	snprintf(val, sizeof(val), "%lu", on ? end : ~0UL);
	err |= lt_write_str(path, val);
	return err;
}

static void set_nth(int nth)
{
	char val[16];

	snprintf(val, sizeof(val), "%d", nth);
	lt_write_str("/proc/thread-self/fail-nth", val);
}

/* What is left of fail-nth: nonzero if the failure was not reached. */
static int left_nth(void)
{
	char buf[16] = "";
	int fd = open("/proc/thread-self/fail-nth", O_RDONLY | O_CLOEXEC);

	if (fd < 0 || read(fd, buf, sizeof(buf) - 1) < 0)
		buf[0] = 0;
	if (fd >= 0)
		close(fd);
	return atoi(buf);
}

struct point_stats {
	int injected;	/* failures that hit */
	int failed;	/* of them, the operation returned an error */
	int stride;	/* beyond the first FIRST_POINTS, every stride-th */
	int offset;	/* ... point n with n % stride == offset */
};

/*
 * Every fault point is visited at LOOP_TIME_SCALE 1. With a smaller scale
 * (make check's debug guest: 0.2, where a device's creation and removal
 * take half a second), the first FIRST_POINTS and then every
 * 1/scale^2-th point (every 25th at 0.2), from an offset that changes from
 * run to run (it is printed: rerun with LOOP_TIME_SCALE=1 for all of them).
 */
#define FIRST_POINTS	32

static void choose_points(struct point_stats *st)
{
	double scale = lt_time_scale();

	st->stride = scale < 1 ? (int)(1 / (scale * scale) + 0.5) : 1;
	st->offset = st->stride > 1 ? (int)(time(NULL) % st->stride) : 0;
}

static bool visited(const struct point_stats *st, int nth)
{
	return nth <= FIRST_POINTS || nth % st->stride == st->offset;
}


FIXTURE(fault) {
	char *file;
	char *pfile;	/* with an MBR of two partitions */
	unsigned long start, end;
};

FIXTURE_SETUP(fault)
{
	int fd;

	if (access("/proc/self/fail-nth", F_OK) ||
	    access(DBG_FS "/failslab/require-start", F_OK) ||
	    access(DBG_FS "/fail_page_alloc/require-start", F_OK))
		SKIP(return, "no fail-nth or no fault injection stacktrace filter in this kernel");
	ASSERT_EQ(0, module_range(&self->start, &self->end));
	self->file = lt_make_file("fault", 2 * MiB, 0x42);
	self->pfile = lt_make_file("faultp", 2 * MiB, 0);
	ASSERT_NE(NULL, self->file);
	ASSERT_NE(NULL, self->pfile);
	fd = open(self->pfile, O_WRONLY);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, lt_write_mbr(fd));
	close(fd);
	kmsg("loop-fault: injecting allocation failures");
}

FIXTURE_TEARDOWN(fault)
{
	if (!self->file)
		return;
	arm("failslab", false, 0, 0);
	arm("fail_page_alloc", false, 0, 0);
	kmsg("loop-fault: done");
	unlink(self->file);
	unlink(self->pfile);
	free(self->file);
	free(self->pfile);
}

/* The device shows @file's first bytes (0x42), i.e. it works. */
static bool reads_file(int fd)
{
	unsigned char buf[4096];

	return pread(fd, buf, sizeof(buf), 0) == sizeof(buf) &&
	       buf[0] == 0x42 && buf[4095] == 0x42;
}

/*
 * What a failed allocation may answer. EINVAL too: the driver core answers
 * it when the allocation of a device's name failed (device_add() of
 * add_disk() then finds no name).
 */
static bool clean_errno(int e)
{
	return e == ENOMEM || e == EIO || e == EINTR || e == ENOSPC ||
	       e == EAGAIN || e == EINVAL;
}

enum target { T_CTL_ADD, T_ATTACH, T_PARTSCAN, T_TEARDOWN };

/*
 * Run @t with the nth allocation failing, for n = 1, 2, ... until the
 * operation no longer reaches the failure; counts in @st.
 */
static void run_points(struct __test_metadata *_metadata,
		      FIXTURE_DATA(fault) *self, const char *attr,
		      enum target t, struct point_stats *st)
{
	struct loop_info64 info;
	int nth, n, fd, r, e;
	char path[64];

	ASSERT_EQ(0, arm(attr, true, self->start, self->end)) {
		TH_LOG("cannot arm %s", attr);
	}
	for (nth = 1; nth <= MAX_NTH; nth++) {
		int left;

		if (!visited(st, nth))
			continue;
		n = lt_ctl(LOOP_CTL_ADD, -1);
		ASSERT_LE(0, n);
		fd = -1;
		if (t != T_CTL_ADD) {
			fd = lt_open_dev(n, O_RDWR);
			ASSERT_LE(0, fd);
		}
		if (t == T_TEARDOWN) {
			ASSERT_EQ(0, lt_configure(fd, self->file, O_RDWR,
						  LO_FLAGS_AUTOCLEAR, 0, 0, 0));
			ASSERT_TRUE(reads_file(fd));
		}
		if (t == T_CTL_ADD) {
			/* Fail inside the creation of device n. */
			ASSERT_EQ(0, lt_ctl(LOOP_CTL_REMOVE, n));
			set_nth(nth);
			r = lt_ctl(LOOP_CTL_ADD, n);
		} else if (t == T_ATTACH || t == T_PARTSCAN) {
			set_nth(nth);
			r = lt_configure(fd, t == T_ATTACH ? self->file :
					 self->pfile, O_RDWR,
					 t == T_PARTSCAN ? LO_FLAGS_PARTSCAN :
					 0, 0, 0, 0);
		} else {
			/* The last close runs the teardown in this task. */
			set_nth(nth);
			r = close(fd) ? -errno : 0;
			fd = -1;
		}
		left = left_nth();
		set_nth(0);
		e = r < 0 ? -r : 0;

		if (r < 0) {
			ASSERT_TRUE(clean_errno(e)) {
				TH_LOG("%s, point %d: errno %d (%s)", attr, nth,
				       e, strerror(e));
			}
		}
		/* Usable or absent, whatever happened. */
		switch (t) {
		case T_CTL_ADD:
			snprintf(path, sizeof(path), "/sys/block/loop%d", n);
			if (r < 0) {
				ASSERT_NE(0, access(path, F_OK)) {
					TH_LOG("point %d: loop%d half-created",
					       nth, n);
				}
				ASSERT_EQ(n, lt_ctl(LOOP_CTL_ADD, n));
			}
			fd = lt_open_dev(n, O_RDWR);
			ASSERT_LE(0, fd);
			ASSERT_EQ(0, lt_configure(fd, self->file, O_RDWR,
						  0, 0, 0, 0));
			ASSERT_TRUE(reads_file(fd));
			break;
		case T_ATTACH:
		case T_PARTSCAN:
			if (r < 0) {
				ASSERT_EQ(-1, ioctl(fd, LOOP_GET_STATUS64,
						    &info));
				ASSERT_EQ(ENXIO, errno);
				ASSERT_EQ(0, lt_configure(fd, self->file,
							  O_RDWR, 0, 0, 0, 0));
			} else if (t == T_PARTSCAN) {
				/* A failed scan leaves a working device. */
				ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
				ASSERT_EQ(0, lt_configure(fd, self->file,
							  O_RDWR, 0, 0, 0, 0));
			}
			ASSERT_TRUE(reads_file(fd));
			break;
		case T_TEARDOWN:
			/* The teardown finished despite the failure. */
			fd = lt_open_dev(n, O_RDWR);
			ASSERT_LE(0, fd);
			ASSERT_EQ(-1, ioctl(fd, LOOP_GET_STATUS64, &info)) {
				TH_LOG("point %d: still bound after the last close",
				       nth);
			}
			ASSERT_EQ(ENXIO, errno);
			ASSERT_EQ(0, lt_configure(fd, self->file, O_RDWR,
						  0, 0, 0, 0));
			ASSERT_TRUE(reads_file(fd));
			break;
		}
		ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
		close(fd);
		ASSERT_EQ(0, lt_ctl(LOOP_CTL_REMOVE, n));
		if (left) {
			/* The operation made fewer than nth allocations. */
			break;
		}
		st->injected++;
		if (r < 0)
			st->failed++;
	}
	ASSERT_GT(MAX_NTH, nth) {
		TH_LOG("%s: more than %d allocations?", attr, MAX_NTH);
	}
	arm(attr, false, 0, 0);
}

#define FAULT_TEST(name, target)					\
TEST_F_TIMEOUT(fault, name, 1200)					\
{									\
	static const char * const attrs[] = { "failslab",		\
					       "fail_page_alloc" };	\
	unsigned int i;							\
									\
	for (i = 0; i < 2; i++) {					\
		struct point_stats st = { 0 };				\
									\
		choose_points(&st);					\
		run_points(_metadata, self, attrs[i], target, &st);	\
		TH_LOG("%s: %d fault points hit, %d made the operation fail (beyond the first %d: every %d-th, offset %d)", \
		       attrs[i], st.injected, st.failed, FIRST_POINTS,	\
		       st.stride, st.offset);				\
	}								\
}

FAULT_TEST(ctl_add, T_CTL_ADD)
FAULT_TEST(attach, T_ATTACH)
FAULT_TEST(attach_with_partition_scan, T_PARTSCAN)
FAULT_TEST(teardown_at_last_close, T_TEARDOWN)

TEST_HARNESS_MAIN
