// SPDX-License-Identifier: GPL-2.0
/*
 * Malformed arguments to every loop ioctl, on an unbound and on a bound
 * device: each gets the errno of Documentation/admin-guide/blockdev/loop.rst
 * and leaves the device as it was (LOOP_GET_STATUS64, size, block size,
 * diskseq and every sysfs attribute compared before and after). Backing
 * files live on a tmpfs mounted for the test: unmounting it at the end
 * proves that no failed call kept a reference to a file.
 */
#include "loop_test_util.h"

#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <dirent.h>

#include "kselftest_harness.h"

#define MiB (1024 * 1024)

static const char * const snap_attrs[] = {
	"loop/backing_file", "loop/offset", "loop/sizelimit",
	"loop/autoclear", "loop/partscan", "loop/dio",
	"loop/autoclear_delete", "ro", "size", "diskseq",
	"queue/logical_block_size",
};
#define NR_ATTRS (sizeof(snap_attrs) / sizeof(snap_attrs[0]))

/* What must not change: the device as user space sees it. */
struct snap {
	int status;
	struct loop_info64 info;
	long long size;
	int bsz;
	char attr[NR_ATTRS][128];
};

static void take_snap(int n, int fd, struct snap *s)
{
	unsigned int i;

	memset(s, 0, sizeof(*s));
	s->status = ioctl(fd, LOOP_GET_STATUS64, &s->info) ? errno : 0;
	s->size = lt_size(fd);
	if (ioctl(fd, BLKSSZGET, &s->bsz))
		s->bsz = -errno;
	for (i = 0; i < NR_ATTRS; i++)
		if (lt_sysfs(n, snap_attrs[i], s->attr[i], sizeof(s->attr[i])))
			strcpy(s->attr[i], "<absent>");
}

/* NULL if equal, else what differs. */
static const char *snap_diff(const struct snap *a, const struct snap *b)
{
	unsigned int i;

	if (a->status != b->status)
		return "LOOP_GET_STATUS64 result";
	if (memcmp(&a->info, &b->info, sizeof(a->info)))
		return "LOOP_GET_STATUS64 content";
	if (a->size != b->size)
		return "size";
	if (a->bsz != b->bsz)
		return "logical block size";
	for (i = 0; i < NR_ATTRS; i++)
		if (strcmp(a->attr[i], b->attr[i]))
			return snap_attrs[i];
	return NULL;
}

FIXTURE(bad) {
	char dir[64];
	char file[96];		/* 8 MiB, the device's backing file */
	char other[96];		/* 4 MiB */
	int n, fd, bfd, cases;
};

FIXTURE_SETUP(bad)
{
	int f;

	snprintf(self->dir, sizeof(self->dir), "/tmp/ltbad-%d", getpid());
	ASSERT_EQ(0, mkdir(self->dir, 0700));
	ASSERT_EQ(0, mount("ltbad", self->dir, "tmpfs", 0, "size=64m"));
	snprintf(self->file, sizeof(self->file), "%s/file", self->dir);
	snprintf(self->other, sizeof(self->other), "%s/other", self->dir);
	f = open(self->file, O_RDWR | O_CREAT, 0600);
	ASSERT_LE(0, f);
	ASSERT_EQ(0, ftruncate(f, 8 * MiB));
	close(f);
	f = open(self->other, O_RDWR | O_CREAT, 0600);
	ASSERT_LE(0, f);
	ASSERT_EQ(0, ftruncate(f, 4 * MiB));
	close(f);
	self->n = lt_get_free();
	ASSERT_LE(0, self->n);
	self->fd = lt_open_dev(self->n, O_RDWR);
	ASSERT_LE(0, self->fd);
	self->bfd = open(self->file, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->bfd);
	self->cases = 0;
}

FIXTURE_TEARDOWN(bad)
{
	close(self->bfd);
	if (self->fd >= 0)
		close(self->fd);
	lt_release(self->n);
	umount2(self->dir, MNT_DETACH);
	rmdir(self->dir);
}

/*
 * @call must fail with @err and leave the fixture's device as it was.
 * @what names the case in the log.
 */
#define BAD(call, err, what) do {					\
	struct snap _b, _a;						\
	const char *_d;							\
	long _r;							\
	int _e;								\
									\
	take_snap(self->n, self->fd, &_b);				\
	errno = 0;							\
	_r = (call);							\
	_e = errno;							\
	take_snap(self->n, self->fd, &_a);				\
	_d = snap_diff(&_b, &_a);					\
	ASSERT_EQ(-1, _r) {						\
		TH_LOG("%s: succeeded", what);				\
	}								\
	ASSERT_EQ(err, _e) {						\
		TH_LOG("%s: %s, documented: %s", what, strerror(_e),	\
		       strerror(err));					\
	}								\
	ASSERT_EQ(NULL, _d) {						\
		TH_LOG("%s: changed %s", what, _d);			\
	}								\
	self->cases++;							\
} while (0)

/* Closing every descriptor and detaching lets the tmpfs go: no leak. */
#define END_CASES() do {						\
	close(self->bfd);						\
	self->bfd = -1;							\
	ioctl(self->fd, LOOP_CLR_FD);					\
	close(self->fd);						\
	self->fd = -1;							\
	ASSERT_EQ(0, umount(self->dir)) {				\
		TH_LOG("a failed call kept a backing file: %s",		\
		       strerror(errno));				\
	}								\
	TH_LOG("%d bad-input cases", self->cases);			\
} while (0)

/* A regular file whose filesystem has no ->read_iter (debugfs), or -1. */
static int open_file_without_read_iter(void)
{
	static const char * const cands[] = {
		"/sys/kernel/debug/fault_around_bytes",
		"/sys/kernel/debug/sched/verbose",
		"/sys/kernel/debug/kmemleak",
	};
	struct stat st;
	unsigned int i;
	int fd;

	for (i = 0; i < sizeof(cands) / sizeof(cands[0]); i++) {
		fd = open(cands[i], O_RDONLY | O_CLOEXEC);
		if (fd >= 0 && !fstat(fd, &st) && S_ISREG(st.st_mode))
			return fd;
		if (fd >= 0)
			close(fd);
	}
	return -1;
}

/* Descriptors that are no backing file: each with its errno. */
struct badfd {
	const char *what;
	int fd;
	int err;
};

static int bad_fds(struct badfd *b, int devfd)
{
	int pipefd[2], n = 0, closed;

	b[n++] = (struct badfd){ "fd -1", -1, EBADF };
	b[n++] = (struct badfd){ "fd 1048575", 1048575, EBADF };
	/* A number nothing else gets: opens take the lowest free one. */
	closed = dup2(0, 900);
	close(closed);
	b[n++] = (struct badfd){ "closed fd", closed, EBADF };
	b[n++] = (struct badfd){ "directory",
		open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC), EINVAL };
	if (!pipe(pipefd)) {
		b[n++] = (struct badfd){ "pipe", pipefd[0], EINVAL };
		close(pipefd[1]);
	}
	b[n++] = (struct badfd){ "socket",
		socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), EINVAL };
	b[n++] = (struct badfd){ "eventfd", eventfd(0, EFD_CLOEXEC), EINVAL };
	b[n++] = (struct badfd){ "character device",
		open("/dev/null", O_RDWR | O_CLOEXEC), EINVAL };
	b[n++] = (struct badfd){ "O_PATH file",
		open("/proc/self/exe", O_PATH | O_CLOEXEC), EBADF };
	b[n++] = (struct badfd){ "file without read_iter",
		open_file_without_read_iter(), EINVAL };
	b[n++] = (struct badfd){ "the device itself", devfd, EBADF };
	return n;
}

static void close_bad_fds(struct badfd *b, int n, int devfd)
{
	while (n--)
		if (b[n].fd > 2 && b[n].fd != devfd && b[n].fd != 1048575)
			close(b[n].fd);
}

/* LOOP_CONFIGURE through ioctl()'s own convention: -1 and errno. */
static int configure_fd(int devfd, int fd, __u32 flags, __u32 bs)
{
	int ret = lt_configure_fd(devfd, fd, flags, 0, 0, bs, NULL);

	errno = -ret;
	return ret ? -1 : 0;
}

/* Attach: SET_FD and CONFIGURE with every bad descriptor and argument. */
TEST_F(bad, attach)
{
	static const __u32 bad_flags[] = { 2, 1 << 5, 1 << 6, 1 << 16,
					   1 << 29, 1U << 31 };
	static const __u32 bad_bs[] = { 1, 256, 511, 513, 3000, 4097, 65536,
					1U << 31, ~0U };
	struct badfd b[16];
	struct loop_config cfg;
	struct loop_info64 info;
	char what[96];
	unsigned int i;
	int nb;

	nb = bad_fds(b, self->fd);
	for (i = 0; i < (unsigned int)nb; i++) {
		if (b[i].fd < 0 && strcmp(b[i].what, "fd -1")) {
			TH_LOG("no %s here: case skipped", b[i].what);
			continue;
		}
		snprintf(what, sizeof(what), "LOOP_SET_FD(%s)", b[i].what);
		BAD(ioctl(self->fd, LOOP_SET_FD, b[i].fd),
		    b[i].err, what);
		snprintf(what, sizeof(what), "LOOP_CONFIGURE(%s)", b[i].what);
		BAD(configure_fd(self->fd, b[i].fd, 0, 0),
		    b[i].err, what);
	}
	close_bad_fds(b, nb, self->fd);

	for (i = 0; i < sizeof(bad_flags) / sizeof(bad_flags[0]); i++) {
		snprintf(what, sizeof(what), "LOOP_CONFIGURE(flags 0x%x)",
			 bad_flags[i]);
		BAD(configure_fd(self->fd, self->bfd, bad_flags[i], 0),
		    EINVAL, what);
	}
	for (i = 0; i < sizeof(bad_bs) / sizeof(bad_bs[0]); i++) {
		snprintf(what, sizeof(what), "LOOP_CONFIGURE(block size %u)",
			 bad_bs[i]);
		BAD(configure_fd(self->fd, self->bfd, 0, bad_bs[i]),
		    EINVAL, what);
	}

	memset(&cfg, 0, sizeof(cfg));
	cfg.fd = self->bfd;
	cfg.info.lo_offset = ~0ULL;
	BAD(ioctl(self->fd, LOOP_CONFIGURE, &cfg), EOVERFLOW,
	    "LOOP_CONFIGURE(offset -1)");
	cfg.info.lo_offset = (__u64)LLONG_MAX + 1;
	BAD(ioctl(self->fd, LOOP_CONFIGURE, &cfg), EOVERFLOW,
	    "LOOP_CONFIGURE(offset LLONG_MAX + 1)");
	cfg.info.lo_offset = 0;
	cfg.info.lo_sizelimit = ~0ULL;
	BAD(ioctl(self->fd, LOOP_CONFIGURE, &cfg), EOVERFLOW,
	    "LOOP_CONFIGURE(size limit -1)");
	cfg.info.lo_sizelimit = 0;
	cfg.info.lo_encrypt_type = 1;
	BAD(ioctl(self->fd, LOOP_CONFIGURE, &cfg), EINVAL,
	    "LOOP_CONFIGURE(encryption XOR)");
	cfg.info.lo_encrypt_type = 0;
	cfg.info.lo_encrypt_key_size = LO_KEY_SIZE + 1;
	BAD(ioctl(self->fd, LOOP_CONFIGURE, &cfg), EINVAL,
	    "LOOP_CONFIGURE(key size 33)");
	cfg.info.lo_encrypt_key_size = 0;
	BAD(ioctl(self->fd, LOOP_CONFIGURE, NULL), EFAULT,
	    "LOOP_CONFIGURE(NULL)");
	BAD(ioctl(self->fd, LOOP_CONFIGURE, (void *)16), EFAULT,
	    "LOOP_CONFIGURE(address 16)");

	/* A name filling lo_file_name without a NUL: accepted, cut. */
	memset(cfg.info.lo_file_name, 'A', LO_NAME_SIZE);
	memset(cfg.info.lo_crypt_name, 'B', LO_NAME_SIZE);
	ASSERT_EQ(0, ioctl(self->fd, LOOP_CONFIGURE, &cfg));
	memset(&info, 0xa5, sizeof(info));
	ASSERT_EQ(0, ioctl(self->fd, LOOP_GET_STATUS64, &info));
	ASSERT_EQ(0, info.lo_file_name[LO_NAME_SIZE - 1]);
	ASSERT_EQ(LO_NAME_SIZE - 1, strlen((char *)info.lo_file_name));
	ASSERT_EQ(0, info.lo_crypt_name[0]);

	/* Bound now: every attach is EBUSY, good file or bad. */
	BAD(ioctl(self->fd, LOOP_SET_FD, self->bfd), EBUSY,
	    "LOOP_SET_FD on a bound device");
	BAD(configure_fd(self->fd, self->bfd, 0, 0), EBUSY,
	    "LOOP_CONFIGURE on a bound device");
	/* As stock: the state is checked before the flags. */
	BAD(configure_fd(self->fd, self->bfd, 1 << 5, 0), EBUSY,
	    "LOOP_CONFIGURE(flags 0x20) on a bound device");
	END_CASES();
}

/* Every ioctl that needs a bound device, on an unbound one. */
TEST_F(bad, unbound)
{
	struct loop_info64 info;
	struct loop_info old;

	memset(&info, 0, sizeof(info));
	memset(&old, 0, sizeof(old));
	BAD(ioctl(self->fd, LOOP_CLR_FD), ENXIO, "LOOP_CLR_FD");
	BAD(ioctl(self->fd, LOOP_GET_STATUS64, &info), ENXIO,
	    "LOOP_GET_STATUS64");
	BAD(ioctl(self->fd, LOOP_GET_STATUS, &old), ENXIO,
	    "LOOP_GET_STATUS");
	BAD(ioctl(self->fd, LOOP_SET_STATUS64, &info), ENXIO,
	    "LOOP_SET_STATUS64");
	BAD(ioctl(self->fd, LOOP_SET_STATUS, &old), ENXIO,
	    "LOOP_SET_STATUS");
	BAD(ioctl(self->fd, LOOP_SET_CAPACITY), ENXIO,
	    "LOOP_SET_CAPACITY");
	BAD(ioctl(self->fd, LOOP_SET_DIRECT_IO, 1), ENXIO,
	    "LOOP_SET_DIRECT_IO");
	BAD(ioctl(self->fd, LOOP_SET_BLOCK_SIZE, 4096), ENXIO,
	    "LOOP_SET_BLOCK_SIZE");
	BAD(ioctl(self->fd, LOOP_CHANGE_FD, self->bfd), ENXIO,
	    "LOOP_CHANGE_FD");
	BAD(ioctl(self->fd, 0x4C7F, 0),
	    sizeof(long) == 8 ? EINVAL : ENOTTY, "unknown ioctl 0x4C7F");
	END_CASES();
}

/* Status, block size and the unknown on a bound read-write device. */
TEST_F(bad, bound)
{
	static const unsigned long bad_bs[] = { 0, 1, 511, 513, 3000, 65536,
						1UL << 31, ~0UL };
	struct loop_info64 info;
	struct loop_info old;
	char what[96];
	unsigned int i;

	ASSERT_EQ(0, configure_fd(self->fd, self->bfd, 0, 0));
	ASSERT_EQ(0, ioctl(self->fd, LOOP_GET_STATUS64, &info));
	ASSERT_EQ(0, ioctl(self->fd, LOOP_GET_STATUS, &old));

	for (i = 0; i < sizeof(bad_bs) / sizeof(bad_bs[0]); i++) {
		snprintf(what, sizeof(what), "LOOP_SET_BLOCK_SIZE(%lu)",
			 bad_bs[i]);
		BAD(ioctl(self->fd, LOOP_SET_BLOCK_SIZE, bad_bs[i]),
		    EINVAL, what);
	}

	info.lo_offset = ~0ULL;
	BAD(ioctl(self->fd, LOOP_SET_STATUS64, &info), EOVERFLOW,
	    "LOOP_SET_STATUS64(offset -1)");
	info.lo_offset = 0;
	info.lo_sizelimit = (__u64)LLONG_MAX + 1;
	BAD(ioctl(self->fd, LOOP_SET_STATUS64, &info), EOVERFLOW,
	    "LOOP_SET_STATUS64(size limit LLONG_MAX + 1)");
	info.lo_sizelimit = 0;
	info.lo_encrypt_type = 18;	/* LO_CRYPT_CRYPTOAPI */
	BAD(ioctl(self->fd, LOOP_SET_STATUS64, &info), EINVAL,
	    "LOOP_SET_STATUS64(encryption cryptoapi)");
	info.lo_encrypt_type = 0;
	info.lo_encrypt_key_size = ~0U;
	BAD(ioctl(self->fd, LOOP_SET_STATUS64, &info), EINVAL,
	    "LOOP_SET_STATUS64(key size -1)");
	info.lo_encrypt_key_size = 0;
	BAD(ioctl(self->fd, LOOP_SET_STATUS64, NULL), EFAULT,
	    "LOOP_SET_STATUS64(NULL)");
	/* As stock: a NULL status pointer is EINVAL, a bad one EFAULT. */
	BAD(ioctl(self->fd, LOOP_GET_STATUS64, NULL), EINVAL,
	    "LOOP_GET_STATUS64(NULL)");
	BAD(ioctl(self->fd, LOOP_GET_STATUS64, (void *)16), EFAULT,
	    "LOOP_GET_STATUS64(address 16)");

	/* The legacy encryption fields are ignored, as by stock: no case. */
	BAD(ioctl(self->fd, LOOP_SET_STATUS, NULL), EFAULT,
	    "LOOP_SET_STATUS(NULL)");
	BAD(ioctl(self->fd, LOOP_GET_STATUS, NULL), EINVAL,
	    "LOOP_GET_STATUS(NULL)");
	BAD(ioctl(self->fd, LOOP_GET_STATUS, (void *)16), EFAULT,
	    "LOOP_GET_STATUS(address 16)");

	/* LOOP_CHANGE_FD needs a read-only device. */
	BAD(ioctl(self->fd, LOOP_CHANGE_FD, self->bfd), EINVAL,
	    "LOOP_CHANGE_FD on a writable device");
	BAD(ioctl(self->fd, 0x4C0B, 0),
	    sizeof(long) == 8 ? EINVAL : ENOTTY, "unknown ioctl 0x4C0B");
	END_CASES();
}

/* LOOP_CHANGE_FD on a read-only device, and cycles of loop devices. */
TEST_F(bad, change_fd_and_cycles)
{
	struct badfd b[16];
	char what[96];
	int other, n2, fd2, i, nb;

	ASSERT_EQ(0, lt_configure(self->fd, self->file, O_RDONLY, 0, 0, 0, 0));

	nb = bad_fds(b, self->fd);
	for (i = 0; i < nb; i++) {
		if (b[i].fd < 0 && strcmp(b[i].what, "fd -1"))
			continue;
		snprintf(what, sizeof(what), "LOOP_CHANGE_FD(%s)", b[i].what);
		BAD(ioctl(self->fd, LOOP_CHANGE_FD, b[i].fd),
		    b[i].err, what);
	}
	close_bad_fds(b, nb, self->fd);
	other = open(self->other, O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, other);
	BAD(ioctl(self->fd, LOOP_CHANGE_FD, other), EINVAL,
	    "LOOP_CHANGE_FD to a file of another size");
	close(other);

	/* Second device over the first: the first over it is a cycle. */
	n2 = lt_ctl(LOOP_CTL_ADD, -1);
	ASSERT_LE(0, n2);
	fd2 = lt_open_dev(n2, O_RDONLY);
	ASSERT_LE(0, fd2);
	ASSERT_EQ(0, ioctl(fd2, LOOP_SET_FD, self->fd));
	BAD(ioctl(self->fd, LOOP_CHANGE_FD, fd2), EBADF,
	    "LOOP_CHANGE_FD to a device stacked on this one");
	/* Over an unbound loop device: EINVAL. */
	ASSERT_EQ(0, ioctl(fd2, LOOP_CLR_FD));
	BAD(ioctl(self->fd, LOOP_CHANGE_FD, fd2), EINVAL,
	    "LOOP_CHANGE_FD to an unbound loop device");
	close(fd2);
	ASSERT_EQ(0, lt_ctl(LOOP_CTL_REMOVE, n2));
	END_CASES();
}

/* /dev/loop-control. */
TEST_F(bad, control)
{
	int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	char path[64];

	ASSERT_LE(0, ctl);
	BAD(ioctl(ctl, LOOP_CTL_ADD, self->n), EEXIST,
	    "LOOP_CTL_ADD of an existing device");
	BAD(ioctl(ctl, LOOP_CTL_ADD, 1L << 20), EINVAL,
	    "LOOP_CTL_ADD(2^20): beyond the minor numbers");
	snprintf(path, sizeof(path), "/sys/block/loop%d", 1 << 20);
	ASSERT_NE(0, access(path, F_OK));
	/* 64-bit only: from 32 bits, that number is a negative int. */
	if (sizeof(long) == 8)
		BAD(ioctl(ctl, LOOP_CTL_ADD, (unsigned long)INT_MAX + 1),
		    EINVAL, "LOOP_CTL_ADD(INT_MAX + 1)");
	BAD(ioctl(ctl, LOOP_CTL_REMOVE, -1L), EINVAL,
	    "LOOP_CTL_REMOVE(-1)");
	BAD(ioctl(ctl, LOOP_CTL_REMOVE, 1L << 20), ENODEV,
	    "LOOP_CTL_REMOVE of a device that does not exist");
	/* Open (by this fixture): busy, not removed. */
	BAD(ioctl(ctl, LOOP_CTL_REMOVE, self->n), EBUSY,
	    "LOOP_CTL_REMOVE of an open device");
	/* ENOSYS, as stock: see loop_control_ioctl(). */
	BAD(ioctl(ctl, 0x4C83, 0), ENOSYS, "unknown ioctl 0x4C83");
	close(ctl);
	END_CASES();
}

TEST_HARNESS_MAIN
