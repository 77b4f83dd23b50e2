// SPDX-License-Identifier: GPL-2.0
/*
 * Every ioctl of /dev/loopN and /dev/loop-control: its success path and
 * its error paths (bad fd, bad flags, bad offsets and block sizes, wrong
 * state, read-only opener), sysfs after attach and after detach, partition
 * scanning, diskseq, autoclear and autoclear-delete.
 */
#include "loop_test_util.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/capability.h>
#include <linux/netlink.h>

#include "kselftest_harness.h"

#define MiB (1024 * 1024)

FIXTURE(dev) {
	int n;
	int fd;
	char *file;
};

FIXTURE_SETUP(dev)
{
	self->file = lt_make_file("ioctl", 8 * MiB, 0);
	ASSERT_NE(NULL, self->file);
	self->n = lt_get_free();
	ASSERT_LE(0, self->n) {
		TH_LOG("LOOP_CTL_GET_FREE: %s", strerror(-self->n));
	}
	self->fd = lt_open_dev(self->n, O_RDWR);
	ASSERT_LE(0, self->fd) {
		TH_LOG("open /dev/loop%d: %s", self->n, strerror(errno));
	}
}

FIXTURE_TEARDOWN(dev)
{
	if (self->fd >= 0)
		close(self->fd);
	lt_release(self->n);
	unlink(self->file);
	free(self->file);
}

static int get_status(int fd, struct loop_info64 *info)
{
	memset(info, 0xa5, sizeof(*info));
	return ioctl(fd, LOOP_GET_STATUS64, info) ? -errno : 0;
}

#define HOLD_PARAM LT_HOLD_PARAM

/* Sleep until lt_now() reaches @t, however often the sleep is cut short. */
static void sleep_until(double t)
{
	while (lt_now() < t)
		usleep(10000);
}

/*
 * Our LOOP_CTL_GET_FREE holds the devices it hands out (get_free_hold_ms):
 * wait until the holds that earlier tests' processes got have ended, so
 * that every caller's lowest free device is the same again. Returns the
 * parameter's value, in ms, or -1 without it (stock).
 */
static int wait_out_holds(void)
{
	char val[32] = "";
	FILE *f = fopen(HOLD_PARAM, "r");
	int ms;

	if (!f)
		return -1;
	ms = fgets(val, sizeof(val), f) ? atoi(val) : 0;
	fclose(f);
	sleep_until(lt_now() + (ms + 100) / 1000.0);
	return ms;
}

/*
 * In a child process, attach loop@n to @path with autoclear and close it
 * (the teardown is done when the close returns): 0 or -errno.
 */
static int attach_close_in_child(int n, const char *path)
{
	int status;
	pid_t pid = fork();

	if (pid == 0) {
		int fd = lt_open_dev(n, O_RDWR);
		int err = fd < 0 ? -errno :
			  lt_configure(fd, path, O_RDWR, LO_FLAGS_AUTOCLEAR,
				       0, 0, 0);

		_exit(err ? 1 : 0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return -ECHILD;
	return WIFEXITED(status) && !WEXITSTATUS(status) ? 0 : -EIO;
}

TEST(control_add_remove_get_free)
{
	int n = lt_get_free();

	ASSERT_LE(0, n);
	/* A free number that nobody uses: far above what exists. */
	int idx = 4000 + getpid() % 1000;

	ASSERT_EQ(idx, lt_ctl(LOOP_CTL_ADD, idx));
	ASSERT_TRUE(lt_exists("/sys/block/loop%d", idx));
	ASSERT_EQ(-EEXIST, lt_ctl(LOOP_CTL_ADD, idx));
	ASSERT_EQ(0, lt_ctl(LOOP_CTL_REMOVE, idx));
	ASSERT_FALSE(lt_exists("/sys/block/loop%d", idx));
	ASSERT_EQ(-ENODEV, lt_ctl(LOOP_CTL_REMOVE, idx));
	ASSERT_EQ(-EINVAL, lt_ctl(LOOP_CTL_REMOVE, -1));
	/* As stock (programs probing for support read it). */
	ASSERT_EQ(-ENOSYS, lt_ctl(0x4C8F, 0));
}

/*
 * LOOP_CTL_GET_FREE holds the device it hands out for the calling thread
 * (ours only, get_free_hold_ms): asked again, that thread gets the same
 * device; another thread (here, a child process: in the 32-bit build of
 * this test, pthread_join() aborted with a futex error on the debug
 * kernel) gets another one until the hold expires, until somebody
 * attaches the device, until the holder's close of it is the last, or
 * until the holder exits. With get_free_hold_ms 0 nothing is held: both get
 * the same device, as with stock. loop_stock_test has the cases beside
 * stock's answers.
 */
TEST(get_free_holds_for_its_caller)
{
	int n, again, other, expired, after, k, k_other, j, j_other, m, m_other;
	int ms, fd;
	char *file = lt_make_file("hold", 1 * MiB, 0);
	char old[32];
	double t;

	ASSERT_NE(NULL, file);
	ms = wait_out_holds();
	if (ms < 0) {
		unlink(file);
		free(file);
		SKIP(return, "no %s: not our loop.ko", HOLD_PARAM);
	}
	snprintf(old, sizeof(old), "%d", ms);
	/* Long enough for a fork on the slowest guest. */
	ASSERT_EQ(0, lt_write_str(HOLD_PARAM, "2000"));
	n = lt_get_free();
	again = lt_get_free();
	t = lt_now();
	other = lt_get_free_in_child(0);
	/* The hold's own expiry, waited for: not a race. */
	sleep_until(t + 2.1);
	expired = lt_get_free_in_child(0);
	/* That thread got it, and exited: its hold ended with it. */
	after = lt_get_free();
	/* A long hold, which only the attach by another process ends. */
	ASSERT_EQ(0, lt_write_str(HOLD_PARAM, "10000"));
	k = lt_get_free();
	EXPECT_EQ(0, attach_close_in_child(k, file));
	k_other = lt_get_free_in_child(1);
	/* Its holder opens and closes it, the last close: the hold ends. */
	j = lt_get_free();
	fd = j < 0 ? -1 : lt_open_dev(j, O_RDWR);
	if (fd >= 0)
		close(fd);
	j_other = lt_get_free_in_child(1);
	ASSERT_EQ(0, lt_write_str(HOLD_PARAM, "0"));
	m = lt_get_free();
	m_other = lt_get_free_in_child(0);
	ASSERT_EQ(0, lt_write_str(HOLD_PARAM, old));
	TH_LOG("loop%d, again %d, other %d, expired %d, after %d; attached %d, then %d; closed %d, then %d; no hold: %d, %d",
	       n, again, other, expired, after, k, k_other, j, j_other, m,
	       m_other);
	ASSERT_LE(0, n);
	EXPECT_EQ(n, again);
	EXPECT_NE(n, other) {
		TH_LOG("loop%d handed to a second thread while held", n);
	}
	EXPECT_EQ(n, expired) {
		TH_LOG("loop%d still held after its hold expired", n);
	}
	EXPECT_EQ(n, after) {
		TH_LOG("loop%d still held after its holder exited", n);
	}
	EXPECT_EQ(k, k_other) {
		TH_LOG("loop%d still held after another process attached it", k);
	}
	EXPECT_EQ(j, j_other) {
		TH_LOG("loop%d still held after its holder's last close", j);
	}
	EXPECT_EQ(m, m_other) {
		TH_LOG("get_free_hold_ms=0 still holds loop%d", m);
	}
	unlink(file);
	free(file);
}

TEST_F(dev, remove_bound_is_busy)
{
	ASSERT_EQ(0, lt_configure(self->fd, self->file, O_RDWR, 0, 0, 0, 0));
	ASSERT_EQ(-EBUSY, lt_ctl(LOOP_CTL_REMOVE, self->n));
	/* GET_FREE never returns a bound device. */
	ASSERT_NE(self->n, lt_get_free());
}

/*
 * An unbound device that somebody has open is most likely being attached by
 * whoever got it from GET_FREE: GET_FREE hands out another one, so that
 * concurrent "losetup -f" do not collide on one device and fail with EBUSY.
 */
TEST_F(dev, get_free_skips_an_open_unbound_device)
{
	int m;

	/* Lower devices that earlier tests' holds kept from us are free. */
	wait_out_holds();
	m = lt_get_free();

	ASSERT_LE(0, m);
	ASSERT_NE(self->n, m);
	close(self->fd);
	self->fd = -1;
	/*
	 * Nobody has it open any more: free again. GET_FREE returns the
	 * lowest free device; m may be lower (created in a hole).
	 */
	ASSERT_EQ(m < self->n ? m : self->n, lt_get_free());
}

TEST_F(dev, set_fd_clr_fd)
{
	struct loop_info64 info;
	int bfd = open(self->file, O_RDWR);

	ASSERT_LE(0, bfd);
	ASSERT_EQ(-ENXIO, get_status(self->fd, &info));
	ASSERT_EQ(0, ioctl(self->fd, LOOP_SET_FD, bfd));
	ASSERT_EQ(-1, ioctl(self->fd, LOOP_SET_FD, bfd));
	ASSERT_EQ(EBUSY, errno);
	ASSERT_EQ(0, get_status(self->fd, &info));
	ASSERT_EQ((unsigned int)self->n, info.lo_number);
	ASSERT_EQ(0, info.lo_offset);
	ASSERT_EQ(8 * MiB, lt_size(self->fd));
	close(bfd);
	ASSERT_EQ(0, ioctl(self->fd, LOOP_CLR_FD));
	/* Sole opener: unbound before the ioctl returned. */
	ASSERT_EQ(-ENXIO, get_status(self->fd, &info));
	ASSERT_EQ(0, lt_size(self->fd));
	ASSERT_EQ(-1, ioctl(self->fd, LOOP_CLR_FD));
	ASSERT_EQ(ENXIO, errno);
}

TEST_F(dev, set_fd_bad_files)
{
	struct loop_info64 info;
	int pipefd[2], sock, dirfd, pathfd, closed;

	ASSERT_EQ(-1, ioctl(self->fd, LOOP_SET_FD, -1));
	ASSERT_EQ(EBADF, errno);
	closed = open(self->file, O_RDWR);
	close(closed);
	ASSERT_EQ(-1, ioctl(self->fd, LOOP_SET_FD, closed));
	ASSERT_EQ(EBADF, errno);

	dirfd = open("/", O_RDONLY | O_DIRECTORY);
	ASSERT_EQ(-1, ioctl(self->fd, LOOP_SET_FD, dirfd));
	ASSERT_EQ(EINVAL, errno);
	close(dirfd);

	ASSERT_EQ(0, pipe(pipefd));
	ASSERT_EQ(-1, ioctl(self->fd, LOOP_SET_FD, pipefd[0]));
	ASSERT_EQ(EINVAL, errno);
	close(pipefd[0]);
	close(pipefd[1]);

	sock = socket(AF_UNIX, SOCK_STREAM, 0);
	ASSERT_LE(0, sock);
	ASSERT_EQ(-1, ioctl(self->fd, LOOP_SET_FD, sock));
	ASSERT_EQ(EINVAL, errno);
	close(sock);

	/* O_PATH files cannot be read: fget() does not even return them. */
	pathfd = open(self->file, O_PATH);
	ASSERT_EQ(-1, ioctl(self->fd, LOOP_SET_FD, pathfd));
	ASSERT_EQ(EBADF, errno);
	close(pathfd);

	/* The device itself: a cycle of length one. */
	ASSERT_EQ(-1, ioctl(self->fd, LOOP_SET_FD, self->fd));
	ASSERT_EQ(EBADF, errno);

	ASSERT_EQ(-ENXIO, get_status(self->fd, &info));
}

TEST_F(dev, configure_all_fields)
{
	struct loop_info64 info;
	int bs = 0;
	char buf[256];

	ASSERT_EQ(0, lt_configure(self->fd, self->file, O_RDWR,
				  LO_FLAGS_AUTOCLEAR, 1 * MiB, 4 * MiB, 4096));
	ASSERT_EQ(0, get_status(self->fd, &info));
	ASSERT_EQ(1 * MiB, info.lo_offset);
	ASSERT_EQ(4 * MiB, info.lo_sizelimit);
	ASSERT_EQ(LO_FLAGS_AUTOCLEAR, info.lo_flags);
	ASSERT_STREQ(self->file, (char *)info.lo_file_name);
	ASSERT_EQ(4 * MiB, lt_size(self->fd));
	ASSERT_EQ(0, ioctl(self->fd, BLKSSZGET, &bs));
	ASSERT_EQ(4096, bs);

	/* sysfs while bound. */
	ASSERT_EQ(0, lt_sysfs(self->n, "loop/backing_file", buf, sizeof(buf)));
	ASSERT_STREQ(self->file, buf);
	ASSERT_EQ(0, lt_sysfs(self->n, "loop/offset", buf, sizeof(buf)));
	ASSERT_STREQ("1048576", buf);
	ASSERT_EQ(0, lt_sysfs(self->n, "loop/sizelimit", buf, sizeof(buf)));
	ASSERT_STREQ("4194304", buf);
	ASSERT_EQ(0, lt_sysfs(self->n, "loop/autoclear", buf, sizeof(buf)));
	ASSERT_STREQ("1", buf);
	ASSERT_EQ(0, lt_sysfs(self->n, "loop/partscan", buf, sizeof(buf)));
	ASSERT_STREQ("0", buf);
	ASSERT_EQ(0, lt_sysfs(self->n, "loop/dio", buf, sizeof(buf)));
	ASSERT_STREQ("0", buf);
	ASSERT_EQ(0, lt_sysfs(self->n, "loop/autoclear_delete", buf,
			      sizeof(buf)));
	ASSERT_STREQ("0", buf);
	ASSERT_EQ(0, lt_sysfs(self->n, "size", buf, sizeof(buf)));
	ASSERT_STREQ("8192", buf);

	/* Detach (we are the sole opener): sysfs directory gone, size 0. */
	ASSERT_EQ(0, ioctl(self->fd, LOOP_CLR_FD));
	ASSERT_EQ(-ENOENT, lt_sysfs(self->n, "loop/backing_file", buf,
				    sizeof(buf)));
	ASSERT_EQ(0, lt_sysfs(self->n, "size", buf, sizeof(buf)));
	ASSERT_STREQ("0", buf);
	ASSERT_EQ(0, ioctl(self->fd, BLKSSZGET, &bs));
	ASSERT_EQ(512, bs);
}

TEST_F(dev, configure_bad_input)
{
	static const __u32 bad_bs[] = { 1, 511, 3000, 65536, 1U << 31 };
	struct loop_config cfg;
	struct loop_info64 info;
	unsigned int i;
	int bfd = open(self->file, O_RDWR);

	ASSERT_LE(0, bfd);
	memset(&cfg, 0, sizeof(cfg));
	cfg.fd = bfd;

	cfg.info.lo_flags = 1U << 5;
	ASSERT_EQ(-1, ioctl(self->fd, LOOP_CONFIGURE, &cfg));
	ASSERT_EQ(EINVAL, errno);
	cfg.info.lo_flags = 0;

	for (i = 0; i < sizeof(bad_bs) / sizeof(bad_bs[0]); i++) {
		cfg.block_size = bad_bs[i];
		ASSERT_EQ(-1, ioctl(self->fd, LOOP_CONFIGURE, &cfg)) {
			TH_LOG("block size %u accepted", bad_bs[i]);
		}
		ASSERT_EQ(EINVAL, errno);
	}
	cfg.block_size = 0;

	cfg.info.lo_encrypt_type = LO_CRYPT_XOR;
	ASSERT_EQ(-1, ioctl(self->fd, LOOP_CONFIGURE, &cfg));
	ASSERT_EQ(EINVAL, errno);
	cfg.info.lo_encrypt_type = 0;

	cfg.info.lo_encrypt_key_size = LO_KEY_SIZE + 1;
	ASSERT_EQ(-1, ioctl(self->fd, LOOP_CONFIGURE, &cfg));
	ASSERT_EQ(EINVAL, errno);
	cfg.info.lo_encrypt_key_size = 0;

	cfg.info.lo_offset = (__u64)LLONG_MAX + 1;
	ASSERT_EQ(-1, ioctl(self->fd, LOOP_CONFIGURE, &cfg));
	ASSERT_EQ(EOVERFLOW, errno);
	cfg.info.lo_offset = 0;
	cfg.info.lo_sizelimit = ~0ULL;
	ASSERT_EQ(-1, ioctl(self->fd, LOOP_CONFIGURE, &cfg));
	ASSERT_EQ(EOVERFLOW, errno);
	cfg.info.lo_sizelimit = 0;

	ASSERT_EQ(-1, ioctl(self->fd, LOOP_CONFIGURE, NULL));
	ASSERT_EQ(EFAULT, errno);

	/* Nothing stuck: still unbound, and a good configure works. */
	ASSERT_EQ(-ENXIO, get_status(self->fd, &info));
	ASSERT_EQ(0, ioctl(self->fd, LOOP_CONFIGURE, &cfg));
	close(bfd);
}

TEST_F(dev, set_status64)
{
	struct loop_info64 info;

	ASSERT_EQ(0, lt_configure(self->fd, self->file, O_RDWR,
				  LO_FLAGS_PARTSCAN, 0, 0, 0));
	ASSERT_EQ(0, get_status(self->fd, &info));
	info.lo_offset = 2 * MiB;
	info.lo_sizelimit = 1 * MiB;
	info.lo_flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_READ_ONLY;
	ASSERT_EQ(0, ioctl(self->fd, LOOP_SET_STATUS64, &info));
	ASSERT_EQ(0, get_status(self->fd, &info));
	ASSERT_EQ(2 * MiB, info.lo_offset);
	ASSERT_EQ(1 * MiB, lt_size(self->fd));
	/* READ_ONLY is not settable, PARTSCAN not clearable. */
	ASSERT_EQ(LO_FLAGS_AUTOCLEAR | LO_FLAGS_PARTSCAN, info.lo_flags);
	info.lo_flags = LO_FLAGS_AUTOCLEAR_DELETE;
	ASSERT_EQ(0, ioctl(self->fd, LOOP_SET_STATUS64, &info));
	ASSERT_EQ(0, get_status(self->fd, &info));
	ASSERT_EQ(LO_FLAGS_AUTOCLEAR_DELETE | LO_FLAGS_PARTSCAN,
		  info.lo_flags);

	info.lo_encrypt_type = LO_CRYPT_CRYPTOAPI;
	ASSERT_EQ(-1, ioctl(self->fd, LOOP_SET_STATUS64, &info));
	ASSERT_EQ(EINVAL, errno);
	info.lo_encrypt_type = 0;
	info.lo_offset = ~0ULL;
	ASSERT_EQ(-1, ioctl(self->fd, LOOP_SET_STATUS64, &info));
	ASSERT_EQ(EOVERFLOW, errno);
	ASSERT_EQ(-1, ioctl(self->fd, LOOP_SET_STATUS64, NULL));
	ASSERT_EQ(EFAULT, errno);
	ASSERT_EQ(-1, ioctl(self->fd, LOOP_GET_STATUS64, NULL));
	ASSERT_EQ(EINVAL, errno);
	/* Unchanged by the failures. */
	ASSERT_EQ(0, get_status(self->fd, &info));
	ASSERT_EQ(2 * MiB, info.lo_offset);
	ASSERT_EQ(1 * MiB, lt_size(self->fd));
}

/*
 * A new size through LOOP_SET_STATUS64 is announced (a change uevent with
 * RESIZE=1 and the new size), now that capacity and uevent come after the
 * queue is unfrozen (the uevent allocates memory; reclaim may wait for
 * this very queue).
 */
TEST_F(dev, set_status_resize_is_announced)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = 1 };
	char devname[32], buf[8192];
	struct loop_info64 info;
	int sock, round;

	snprintf(devname, sizeof(devname), "DEVNAME=loop%d", self->n);
	sock = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC,
		      NETLINK_KOBJECT_UEVENT);
	ASSERT_LE(0, sock);
	ASSERT_EQ(0, bind(sock, (struct sockaddr *)&sa, sizeof(sa)));
	ASSERT_EQ(0, lt_configure(self->fd, self->file, O_RDWR, 0, 0, 0, 0));
	for (round = 1; round <= 4; round++) {
		bool resized = false;

		ASSERT_EQ(0, get_status(self->fd, &info));
		info.lo_sizelimit = round * MiB;
		ASSERT_EQ(0, ioctl(self->fd, LOOP_SET_STATUS64, &info));
		ASSERT_EQ(round * MiB, lt_size(self->fd));
		while (!resized) {
			struct pollfd pfd = { .fd = sock, .events = POLLIN };
			bool mine = false, resize = false;
			ssize_t len;

			ASSERT_LT(0, poll(&pfd, 1, 5000)) {
				TH_LOG("round %d: no resize uevent", round);
			}
			len = recv(sock, buf, sizeof(buf) - 1, 0);
			ASSERT_LT(0, len);
			buf[len] = 0;
			for (char *p = buf; p < buf + len; p += strlen(p) + 1) {
				mine |= !strcmp(p, devname);
				resize |= !strcmp(p, "RESIZE=1");
			}
			resized = mine && resize;
		}
	}
	close(sock);
}

TEST_F(dev, legacy_status)
{
	struct loop_info old;

	ASSERT_EQ(-1, ioctl(self->fd, LOOP_GET_STATUS, &old));
	ASSERT_EQ(ENXIO, errno);
	ASSERT_EQ(0, lt_configure(self->fd, self->file, O_RDWR, 0, 0, 0, 0));
	memset(&old, 0x5a, sizeof(old));
	ASSERT_EQ(0, ioctl(self->fd, LOOP_GET_STATUS, &old));
	ASSERT_EQ(self->n, old.lo_number);
	ASSERT_EQ(0, old.lo_offset);
	/* Every byte is written: reserved and key are zero. */
	ASSERT_EQ(0, old.reserved[0] | old.reserved[3] | old.lo_encrypt_key[0]);
	old.lo_offset = 4096;
	old.lo_flags = LO_FLAGS_AUTOCLEAR;
	ASSERT_EQ(0, ioctl(self->fd, LOOP_SET_STATUS, &old));
	ASSERT_EQ(0, ioctl(self->fd, LOOP_GET_STATUS, &old));
	ASSERT_EQ(4096, old.lo_offset);
	ASSERT_EQ(LO_FLAGS_AUTOCLEAR, old.lo_flags);
	ASSERT_EQ(8 * MiB - 4096, lt_size(self->fd));
	old.lo_offset = -512;
	ASSERT_EQ(-1, ioctl(self->fd, LOOP_SET_STATUS, &old));
	ASSERT_EQ(EOVERFLOW, errno);
}

TEST_F(dev, set_capacity)
{
	ASSERT_EQ(-1, ioctl(self->fd, LOOP_SET_CAPACITY));
	ASSERT_EQ(ENXIO, errno);
	ASSERT_EQ(0, lt_configure(self->fd, self->file, O_RDWR, 0, 0, 0, 0));
	ASSERT_EQ(0, truncate(self->file, 16 * MiB));
	ASSERT_EQ(8 * MiB, lt_size(self->fd));
	ASSERT_EQ(0, ioctl(self->fd, LOOP_SET_CAPACITY));
	ASSERT_EQ(16 * MiB, lt_size(self->fd));
}

TEST_F(dev, set_block_size)
{
	static const unsigned long bad[] = { 0, 1, 511, 3000, 65536,
					     1UL << 31,
#if __SIZEOF_LONG__ == 8
					     (1UL << 32) + 512,
#endif
	};
	unsigned int i;
	int bs;

	ASSERT_EQ(-1, ioctl(self->fd, LOOP_SET_BLOCK_SIZE, 512));
	ASSERT_EQ(ENXIO, errno);
	ASSERT_EQ(0, lt_configure(self->fd, self->file, O_RDWR, 0, 0, 0, 0));
	for (bs = 512; bs <= 4096; bs *= 2) {
		int got = 0;

		ASSERT_EQ(0, ioctl(self->fd, LOOP_SET_BLOCK_SIZE, bs));
		ASSERT_EQ(0, ioctl(self->fd, BLKSSZGET, &got));
		ASSERT_EQ(bs, got);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ASSERT_EQ(-1, ioctl(self->fd, LOOP_SET_BLOCK_SIZE, bad[i])) {
			TH_LOG("block size %lu accepted", bad[i]);
		}
		ASSERT_EQ(EINVAL, errno);
	}
	ASSERT_EQ(0, ioctl(self->fd, BLKSSZGET, &bs));
	ASSERT_EQ(4096, bs);
}

TEST_F(dev, set_direct_io)
{
	struct loop_info64 info;
	char buf[16];

	ASSERT_EQ(-1, ioctl(self->fd, LOOP_SET_DIRECT_IO, 1));
	ASSERT_EQ(ENXIO, errno);
	ASSERT_EQ(0, lt_configure(self->fd, self->file, O_RDWR, 0, 0, 0, 0));
	if (ioctl(self->fd, LOOP_SET_DIRECT_IO, 1)) {
		/* Only when the backing filesystem cannot do O_DIRECT. */
		ASSERT_EQ(EINVAL, errno);
		ASSERT_STREQ("/tmp", lt_dir());
		return;
	}
	ASSERT_EQ(0, get_status(self->fd, &info));
	ASSERT_TRUE(info.lo_flags & LO_FLAGS_DIRECT_IO);
	ASSERT_EQ(0, lt_sysfs(self->n, "loop/dio", buf, sizeof(buf)));
	ASSERT_STREQ("1", buf);
	ASSERT_EQ(0, ioctl(self->fd, LOOP_SET_DIRECT_IO, 0));
	ASSERT_EQ(0, get_status(self->fd, &info));
	ASSERT_FALSE(info.lo_flags & LO_FLAGS_DIRECT_IO);
}

TEST_F(dev, change_fd)
{
	char *same = lt_make_file("same", 8 * MiB, 1);
	char *other = lt_make_file("other", 4 * MiB, 2);
	struct loop_info64 info;
	int sfd, ofd;
	char buf[256];

	ASSERT_NE(NULL, same);
	ASSERT_NE(NULL, other);
	sfd = open(same, O_RDONLY);
	ofd = open(other, O_RDONLY);
	ASSERT_EQ(-1, ioctl(self->fd, LOOP_CHANGE_FD, sfd));
	ASSERT_EQ(ENXIO, errno);

	/* Read-write device: refused. */
	ASSERT_EQ(0, lt_configure(self->fd, self->file, O_RDWR, 0, 0, 0, 0));
	ASSERT_EQ(-1, ioctl(self->fd, LOOP_CHANGE_FD, sfd));
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(0, ioctl(self->fd, LOOP_CLR_FD));

	ASSERT_EQ(0, lt_configure(self->fd, self->file, O_RDONLY, 0, 0, 0, 0));
	ASSERT_EQ(0, get_status(self->fd, &info));
	ASSERT_TRUE(info.lo_flags & LO_FLAGS_READ_ONLY);
	ASSERT_EQ(-1, ioctl(self->fd, LOOP_CHANGE_FD, ofd));
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(-1, ioctl(self->fd, LOOP_CHANGE_FD, -1));
	ASSERT_EQ(EBADF, errno);
	ASSERT_EQ(0, ioctl(self->fd, LOOP_CHANGE_FD, sfd));
	ASSERT_EQ(0, lt_sysfs(self->n, "loop/backing_file", buf, sizeof(buf)));
	ASSERT_STREQ(same, buf);
	/* The new file's content is what the device shows. */
	ASSERT_EQ(1, pread(self->fd, buf, 1, 0));
	ASSERT_EQ(1, buf[0]);
	close(sfd);
	close(ofd);
	unlink(same);
	unlink(other);
	free(same);
	free(other);
}

/* Drop CAP_SYS_ADMIN from this process's effective set. */
static int drop_sys_admin(void)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct data[2];

	if (syscall(SYS_capget, &hdr, data))
		return -1;
	data[0].effective &= ~(1U << CAP_SYS_ADMIN);
	return syscall(SYS_capset, &hdr, data);
}

TEST_F(dev, read_only_opener_without_sys_admin)
{
	struct loop_info64 info;
	pid_t pid;
	int status;

	ASSERT_EQ(0, lt_configure(self->fd, self->file, O_RDWR, 0, 0, 0, 0));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		int ro = lt_open_dev(self->n, O_RDONLY);

		if (ro < 0 || drop_sys_admin())
			_exit(10);
		if (ioctl(ro, LOOP_GET_STATUS64, &info))
			_exit(11);
		if (ioctl(ro, LOOP_SET_STATUS64, &info) != -1 || errno != EPERM)
			_exit(12);
		if (ioctl(ro, LOOP_SET_CAPACITY) != -1 || errno != EPERM)
			_exit(13);
		if (ioctl(ro, LOOP_SET_DIRECT_IO, 0) != -1 || errno != EPERM)
			_exit(14);
		if (ioctl(ro, LOOP_SET_BLOCK_SIZE, 4096) != -1 ||
		    errno != EPERM)
			_exit(15);
		if (ioctl(ro, LOOP_SET_STATUS, &info) != -1 || errno != EPERM)
			_exit(16);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status)) {
		TH_LOG("step %d of the unprivileged child failed",
		       WEXITSTATUS(status));
	}
}

TEST_F(dev, read_only_backing_file)
{
	struct loop_info64 info;
	char buf[512] = { 0 };
	int ro = 0;

	ASSERT_EQ(0, lt_configure(self->fd, self->file, O_RDONLY, 0, 0, 0, 0));
	ASSERT_EQ(0, get_status(self->fd, &info));
	ASSERT_TRUE(info.lo_flags & LO_FLAGS_READ_ONLY);
	ASSERT_EQ(0, ioctl(self->fd, BLKROGET, &ro));
	ASSERT_EQ(1, ro);
	ASSERT_EQ(-1, pwrite(self->fd, buf, sizeof(buf), 0));
	ASSERT_EQ(EPERM, errno);
}

TEST_F(dev, diskseq_changes_on_attach_and_detach)
{
	__u64 s0, s1, s2, s3;

	s0 = lt_diskseq(self->fd);
	ASSERT_NE(0, s0);
	ASSERT_EQ(0, lt_configure(self->fd, self->file, O_RDWR, 0, 0, 0, 0));
	s1 = lt_diskseq(self->fd);
	ASSERT_LT(s0, s1);
	ASSERT_EQ(0, ioctl(self->fd, LOOP_CLR_FD));
	s2 = lt_diskseq(self->fd);
	ASSERT_LT(s1, s2);
	ASSERT_EQ(0, lt_configure(self->fd, self->file, O_RDWR, 0, 0, 0, 0));
	s3 = lt_diskseq(self->fd);
	ASSERT_LT(s2, s3);
}

TEST_F(dev, clr_fd_with_other_opener_defers)
{
	struct loop_info64 info;
	int other = lt_open_dev(self->n, O_RDONLY);

	ASSERT_LE(0, other);
	ASSERT_EQ(0, lt_configure(self->fd, self->file, O_RDWR, 0, 0, 0, 0));
	ASSERT_EQ(0, ioctl(self->fd, LOOP_CLR_FD));
	/* Still bound, marked for autoclear. */
	ASSERT_EQ(0, get_status(self->fd, &info));
	ASSERT_TRUE(info.lo_flags & LO_FLAGS_AUTOCLEAR);
	close(other);
	ASSERT_EQ(0, get_status(self->fd, &info));
	/* The last close tears it down before close() returns. */
	close(self->fd);
	self->fd = lt_open_dev(self->n, O_RDWR);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(-ENXIO, get_status(self->fd, &info));
}

TEST_F(dev, autoclear_done_when_close_returns)
{
	struct loop_info64 info;

	ASSERT_EQ(0, lt_configure(self->fd, self->file, O_RDWR,
				  LO_FLAGS_AUTOCLEAR, 0, 0, 0));
	ASSERT_TRUE(lt_exists("/sys/block/loop%d/loop", self->n));
	close(self->fd);
	/* No sleep: the teardown ran before close() returned. */
	ASSERT_FALSE(lt_exists("/sys/block/loop%d/loop", self->n));
	self->fd = lt_open_dev(self->n, O_RDWR);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(-ENXIO, get_status(self->fd, &info));
}

TEST_F(dev, autoclear_delete_removes_device)
{
	ASSERT_EQ(0, lt_configure(self->fd, self->file, O_RDWR,
				  LO_FLAGS_AUTOCLEAR |
				  LO_FLAGS_AUTOCLEAR_DELETE, 0, 0, 0));
	ASSERT_TRUE(lt_exists("/sys/block/loop%d", self->n));
	close(self->fd);
	self->fd = -1;
	ASSERT_FALSE(lt_exists("/sys/block/loop%d", self->n));
	ASSERT_FALSE(lt_exists("/dev/loop%d", self->n));
}

TEST_F(dev, stacking_and_cycles)
{
	int m = lt_ctl(LOOP_CTL_ADD, 3000 + getpid() % 1000);
	char mpath[64];
	int mfd, nfd;

	ASSERT_LE(0, m);
	mfd = lt_open_dev(m, O_RDWR);
	ASSERT_LE(0, mfd);
	snprintf(mpath, sizeof(mpath), "/dev/loop%d", m);
	/* Over an unbound loop device: refused. */
	ASSERT_EQ(-EINVAL, lt_configure(self->fd, mpath, O_RDWR, 0, 0, 0, 0));
	/* m over the file, n over m: a valid chain (read-only both). */
	ASSERT_EQ(0, lt_configure(mfd, self->file, O_RDONLY, 0, 0, 0, 0));
	ASSERT_EQ(0, lt_configure(self->fd, mpath, O_RDONLY, 0, 0, 0, 0));
	ASSERT_EQ(8 * MiB, lt_size(self->fd));
	/* Re-pointing m at n would close a cycle. */
	nfd = lt_open_dev(self->n, O_RDONLY);
	ASSERT_LE(0, nfd);
	ASSERT_EQ(-1, ioctl(mfd, LOOP_CHANGE_FD, nfd));
	ASSERT_EQ(EBADF, errno);
	close(nfd);
	/* m is held by n: its LOOP_CLR_FD is deferred to its last close. */
	ASSERT_EQ(0, ioctl(mfd, LOOP_CLR_FD));
	ASSERT_EQ(0, ioctl(mfd, LOOP_GET_STATUS64, &(struct loop_info64){}));
	ASSERT_EQ(0, ioctl(self->fd, LOOP_CLR_FD));
	close(mfd);
	/* n released m, then our close was m's last: m is unbound now. */
	mfd = lt_open_dev(m, O_RDWR);
	ASSERT_LE(0, mfd);
	ASSERT_EQ(-1, ioctl(mfd, LOOP_GET_STATUS64, &(struct loop_info64){}));
	ASSERT_EQ(ENXIO, errno);
	close(mfd);
	ASSERT_EQ(0, lt_ctl(LOOP_CTL_REMOVE, m));
}

TEST_F(dev, partition_scan)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd),
		 "printf 'label: dos\\n,2M\\n,2M\\n' | /usr/sbin/sfdisk -q %s >/dev/null 2>&1",
		 self->file);
	ASSERT_EQ(0, lt_run(cmd));
	ASSERT_EQ(0, lt_configure(self->fd, self->file, O_RDWR,
				  LO_FLAGS_PARTSCAN, 0, 0, 0));
	ASSERT_TRUE(lt_exists("/sys/block/loop%d/loop%dp1", self->n));
	ASSERT_TRUE(lt_exists("/sys/block/loop%d/loop%dp2", self->n));
	ASSERT_TRUE(lt_exists("/dev/loop%dp1", self->n));
	ASSERT_EQ(0, ioctl(self->fd, LOOP_CLR_FD));
	ASSERT_FALSE(lt_exists("/sys/block/loop%d/loop%dp1", self->n));
	ASSERT_FALSE(lt_exists("/dev/loop%dp1", self->n));
	/* Without PARTSCAN, the same image shows no partitions. */
	ASSERT_EQ(0, lt_configure(self->fd, self->file, O_RDWR, 0, 0, 0, 0));
	ASSERT_FALSE(lt_exists("/sys/block/loop%d/loop%dp1", self->n));
}

TEST_F(dev, unknown_ioctl)
{
	ASSERT_EQ(-1, ioctl(self->fd, 0x4C7F, 0));
	/* As stock: EINVAL natively, ENOTTY through the compat path. */
	ASSERT_EQ(sizeof(long) == 8 ? EINVAL : ENOTTY, errno);
}

TEST_HARNESS_MAIN
