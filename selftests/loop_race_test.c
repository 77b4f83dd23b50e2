// SPDX-License-Identifier: GPL-2.0
/*
 * Lifecycle guarantees that races used to break. Each test names the race
 * it hunts, runs a bounded number of rounds (and a bounded time), and
 * asserts the guarantee itself. Every step of a round runs inside this one
 * process: a shell running the same steps as separate commands hides a
 * teardown left to a workqueue (fork and exec give the worker time).
 * scripts/prove-race-tests.sh shows each test failing on a build with its
 * race put back (scripts/breakages/).
 */
#include "loop_test_util.h"

#include <poll.h>
#include <pthread.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <linux/netlink.h>

#include "kselftest_harness.h"

/* Every test bounds its own rounds by time, well below this. */
#undef TEST_TIMEOUT_DEFAULT
#define TEST_TIMEOUT_DEFAULT 400

#define MiB (1024 * 1024)

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Attach @path to a free device with @flags; returns the open device fd. */
static int attach_free(const char *path, __u32 flags, int *np)
{
	for (int tries = 0; tries < 100; tries++) {
		int n = lt_get_free();
		int fd, err;

		if (n < 0)
			return n;
		fd = lt_open_dev(n, O_RDWR);
		if (fd < 0)
			return -errno;
		err = lt_configure(fd, path, O_RDWR, flags, 0, 0, 0);
		if (!err) {
			*np = n;
			return fd;
		}
		close(fd);
		if (err != -EBUSY)
			return err;
		/* Another attacher won the device: ask again. */
	}
	return -EBUSY;
}

static int run(const char *cmd)
{
	int status = system(cmd);

	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/*
 * The 2021 asynchronous autoclear bug (xfstests xfs/049): umount() of an
 * ext4 image mounted through an autoclear loop device returned before the
 * loop device had released the image, so unmounting the filesystem that
 * holds the image failed with EBUSY.
 */
TEST(umount_chain_releases_backing_file_before_return)
{
	char lower_dir[] = "/tmp/race-lower-XXXXXX";
	char upper_dir[] = "/tmp/race-upper-XXXXXX";
	char *lower = lt_make_file("lower", 0, 0);
	char upper[256], cmd[512], dev[64];
	double end = now() + 60;
	int round, rounds = 0;

	ASSERT_NE(NULL, lower);
	ASSERT_EQ(0, truncate(lower, 64 * MiB));
	snprintf(cmd, sizeof(cmd), "mkfs.ext4 -q -F %s >/dev/null 2>&1", lower);
	ASSERT_EQ(0, run(cmd));
	ASSERT_NE(NULL, mkdtemp(lower_dir));
	ASSERT_NE(NULL, mkdtemp(upper_dir));
	snprintf(upper, sizeof(upper), "%s/upper.img", lower_dir);

	for (round = 0; round < 20 && now() < end; round++) {
		int lfd, ufd, ln, un;

		/* Lower: an ext4 image on a loop device, mounted. */
		lfd = attach_free(lower, LO_FLAGS_AUTOCLEAR, &ln);
		ASSERT_LE(0, lfd);
		snprintf(dev, sizeof(dev), "/dev/loop%d", ln);
		ASSERT_EQ(0, mount(dev, lower_dir, "ext4", 0, NULL)) {
			TH_LOG("mount %s: %s", dev, strerror(errno));
		}
		close(lfd);	/* the mount holds the device now */

		if (round == 0) {
			int fd = open(upper, O_RDWR | O_CREAT, 0600);

			ASSERT_LE(0, fd);
			ASSERT_EQ(0, ftruncate(fd, 16 * MiB));
			close(fd);
			snprintf(cmd, sizeof(cmd),
				 "mkfs.ext4 -q -F %s >/dev/null 2>&1", upper);
			ASSERT_EQ(0, run(cmd));
		}

		/* Upper: an image inside the lower filesystem, mounted. */
		ufd = attach_free(upper, LO_FLAGS_AUTOCLEAR, &un);
		ASSERT_LE(0, ufd);
		snprintf(dev, sizeof(dev), "/dev/loop%d", un);
		ASSERT_EQ(0, mount(dev, upper_dir, "ext4", 0, NULL));
		close(ufd);

		/* The guarantee: both unmounts succeed, back to back. */
		ASSERT_EQ(0, umount(upper_dir));
		ASSERT_EQ(0, umount(lower_dir)) {
			TH_LOG("round %d: umount of the lower fs: %s", round,
			       strerror(errno));
		}
		rounds++;
	}
	TH_LOG("%d rounds", rounds);
	ASSERT_LE(5, rounds);
	rmdir(lower_dir);
	rmdir(upper_dir);
	unlink(lower);
	free(lower);
}

/*
 * Reuse right after the last close: the device closed with autoclear must
 * be attachable again at once, by the same process, with no EBUSY caused
 * by our own pending teardown.
 */
TEST(reattach_after_autoclear_close_never_ebusy)
{
	char *file = lt_make_file("reuse", 4 * MiB, 0);
	double end = now() + 30;
	int n = lt_get_free(), i, fd = -1;

	ASSERT_NE(NULL, file);
	ASSERT_LE(0, n);
	for (i = 0; i < 200 && now() < end; i++) {
		fd = lt_open_dev(n, O_RDWR);
		ASSERT_LE(0, fd) {
			TH_LOG("round %d: open: %s", i, strerror(errno));
		}
		ASSERT_EQ(0, lt_configure(fd, file, O_RDWR, LO_FLAGS_AUTOCLEAR,
					  0, 0, 0)) {
			TH_LOG("round %d: attach after close", i);
		}
		ASSERT_EQ(0, close(fd));
	}
	lt_release(n);
	unlink(file);
	free(file);
}

/*
 * udev's blkid opens, reads and closes every device that changes. Race it
 * against LOOP_CLR_FD and the last close, with devices handed out by
 * LOOP_CTL_GET_FREE as real users get them: every attach succeeds (no
 * EBUSY, and no device handed out while still bound or in teardown), and
 * once every fd is closed no binding is left.
 */
struct prober {
	volatile int n;
	volatile int stop;
	long reads;
};

static void *probe_loop(void *arg)
{
	struct prober *p = arg;
	char buf[4096];

	while (!p->stop) {
		int fd = lt_open_dev(p->n, O_RDONLY);

		if (fd < 0)
			continue;
		if (pread(fd, buf, sizeof(buf), 0) > 0)
			p->reads++;
		close(fd);
	}
	return NULL;
}

TEST(clr_fd_and_last_close_vs_blkid_like_opener)
{
	char *file = lt_make_file("probe", 4 * MiB, 0x42);
	struct prober p = { .n = 0 };
	double end = now() + 30;
	unsigned long used = 0;
	struct loop_info64 info;
	pthread_t thr;
	int i, n, fd;

	ASSERT_NE(NULL, file);
	ASSERT_EQ(0, pthread_create(&thr, NULL, probe_loop, &p));
	for (i = 0; i < 300 && now() < end; i++) {
		n = lt_get_free();
		ASSERT_LE(0, n);
		p.n = n;
		if (n < 64)
			used |= 1UL << n;
		fd = lt_open_dev(n, O_RDWR);
		ASSERT_LE(0, fd);
		ASSERT_EQ(0, lt_configure(fd, file, O_RDWR, 0, 0, 0, 0)) {
			TH_LOG("round %d: attach to loop%d failed", i, n);
		}
		/* Sole opener or not, LOOP_CLR_FD succeeds. */
		ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
		close(fd);
	}
	p.stop = 1;
	pthread_join(thr, NULL);
	/* Every fd is closed: nothing is left bound. */
	for (n = 0; n < 64; n++) {
		if (!(used & (1UL << n)))
			continue;
		fd = lt_open_dev(n, O_RDONLY);
		ASSERT_LE(0, fd);
		ASSERT_EQ(-1, ioctl(fd, LOOP_GET_STATUS64, &info)) {
			TH_LOG("loop%d is still bound", n);
		}
		ASSERT_EQ(ENXIO, errno);
		close(fd);
	}
	TH_LOG("%d rounds, %ld reads by the prober", i, p.reads);
	unlink(file);
	free(file);
}

/* Parse a uevent: does it concern @devname? Returns its DISKSEQ or 0. */
static __u64 uevent_diskseq(const char *msg, size_t len, const char *devname,
			    char *action, size_t alen)
{
	const char *p = msg, *end = msg + len;
	__u64 seq = 0;
	int mine = 0;

	action[0] = 0;
	for (; p < end; p += strlen(p) + 1) {
		if (!strncmp(p, "DEVNAME=", 8))
			mine = !strcmp(p + 8, devname);
		else if (!strncmp(p, "DISKSEQ=", 8))
			seq = strtoull(p + 8, NULL, 10);
		else if (!strncmp(p, "ACTION=", 7))
			snprintf(action, alen, "%s", p + 7);
	}
	return mine ? seq : 0;
}

/*
 * diskseq in uevents: a listener sees (DEVNAME, DISKSEQ) strictly increase
 * over attach/detach cycles, the attach's event carries the number
 * BLKGETDISKSEQ returns, and no number is reused. The stock 6.12 driver
 * sends the detach event before bumping the number.
 */
TEST(uevent_diskseq_strictly_increases)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = 1 };
	char *file = lt_make_file("seq", 4 * MiB, 0);
	char devname[32], buf[8192], action[32];
	__u64 last = 0, attached[64];
	int n = lt_get_free(), sock, fd, i, events = 0, checked = 0;
	int rcvbuf = 4 * MiB;

	ASSERT_NE(NULL, file);
	ASSERT_LE(0, n);
	snprintf(devname, sizeof(devname), "loop%d", n);
	sock = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC,
		      NETLINK_KOBJECT_UEVENT);
	ASSERT_LE(0, sock);
	setsockopt(sock, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf));
	ASSERT_EQ(0, bind(sock, (struct sockaddr *)&sa, sizeof(sa)));

	fd = lt_open_dev(n, O_RDWR);
	ASSERT_LE(0, fd);
	for (i = 0; i < 64; i++) {
		ASSERT_EQ(0, lt_configure(fd, file, O_RDWR, 0, 0, 0, 0));
		attached[i] = lt_diskseq(fd);
		ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
	}
	close(fd);

	for (;;) {
		struct pollfd pfd = { .fd = sock, .events = POLLIN };
		ssize_t len;
		__u64 seq;

		if (poll(&pfd, 1, 2000) <= 0)
			break;
		len = recv(sock, buf, sizeof(buf) - 1, 0);
		ASSERT_LT(0, len);
		buf[len] = 0;
		seq = uevent_diskseq(buf, len, devname, action, sizeof(action));
		if (!seq || strcmp(action, "change"))
			continue;
		events++;
		ASSERT_LT(last, seq) {
			TH_LOG("event %d: DISKSEQ %llu after %llu", events,
			       (unsigned long long)seq,
			       (unsigned long long)last);
		}
		last = seq;
		/* Odd events are attaches: their number is the attachment's. */
		if (events % 2 == 1 && events / 2 < 64) {
			ASSERT_EQ(attached[events / 2], seq);
			checked++;
		}
	}
	TH_LOG("%d change events, %d attach numbers checked", events, checked);
	ASSERT_EQ(128, events);
	close(sock);
	lt_release(n);
	unlink(file);
	free(file);
}

/*
 * LOOP_CLR_FD on a mounted device: deferred, not refused and not forced;
 * the device is torn down by the umount, and is unbound when umount()
 * returns.
 */
TEST(clr_fd_on_mounted_device_detaches_at_umount)
{
	char mnt[] = "/tmp/race-mnt-XXXXXX";
	char *img = lt_make_file("mounted", 0, 0);
	char cmd[512], dev[64];
	struct loop_info64 info;
	int fd, n;

	ASSERT_NE(NULL, img);
	ASSERT_EQ(0, truncate(img, 32 * MiB));
	snprintf(cmd, sizeof(cmd), "mkfs.ext4 -q -F %s >/dev/null 2>&1", img);
	ASSERT_EQ(0, run(cmd));
	ASSERT_NE(NULL, mkdtemp(mnt));
	fd = attach_free(img, 0, &n);
	ASSERT_LE(0, fd);
	snprintf(dev, sizeof(dev), "/dev/loop%d", n);
	ASSERT_EQ(0, mount(dev, mnt, "ext4", 0, NULL));
	ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
	close(fd);
	/* Still bound, marked for autoclear, while mounted. */
	ASSERT_TRUE(lt_exists("/sys/block/loop%d/loop", n));
	ASSERT_EQ(0, umount(mnt));
	/* Unbound when umount() returned: no sleep, no retry. */
	ASSERT_FALSE(lt_exists("/sys/block/loop%d/loop", n));
	fd = lt_open_dev(n, O_RDONLY);
	ASSERT_LE(0, fd);
	ASSERT_EQ(-1, ioctl(fd, LOOP_GET_STATUS64, &info));
	ASSERT_EQ(ENXIO, errno);
	close(fd);
	rmdir(mnt);
	unlink(img);
	free(img);
}

/*
 * Lingering partitions (systemd works around them): a partitioned image
 * attached with LO_FLAGS_PARTSCAN, detached through autoclear while one of
 * its partitions is open, then the device re-attached to an unpartitioned
 * image: no loopNpM may survive into the new attachment.
 */
TEST(no_partition_survives_into_next_attachment)
{
	char *parted = lt_make_file("parted", 8 * MiB, 0);
	char *plain = lt_make_file("plain", 8 * MiB, 0);
	double end = now() + 30;
	char cmd[512], part[64];
	int round;

	ASSERT_NE(NULL, parted);
	ASSERT_NE(NULL, plain);
	snprintf(cmd, sizeof(cmd),
		 "printf 'label: dos\\n,2M\\n,2M\\n' | /usr/sbin/sfdisk -q %s >/dev/null 2>&1",
		 parted);
	ASSERT_EQ(0, run(cmd));
	for (round = 0; round < 20 && now() < end; round++) {
		int fd, pfd, n;

		fd = attach_free(parted, LO_FLAGS_PARTSCAN, &n);
		ASSERT_LE(0, fd);
		snprintf(part, sizeof(part), "/dev/loop%dp1", n);
		pfd = open(part, O_RDONLY);
		ASSERT_LE(0, pfd) {
			TH_LOG("round %d: open %s: %s", round, part,
			       strerror(errno));
		}
		/* Deferred: the partition holds the device. */
		ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
		close(fd);
		ASSERT_TRUE(lt_exists("/sys/block/loop%d/loop%dp1", n));
		close(pfd);	/* last close: teardown before return */
		ASSERT_FALSE(lt_exists("/sys/block/loop%d/loop%dp1", n));
		fd = lt_open_dev(n, O_RDWR);
		ASSERT_LE(0, fd);
		ASSERT_EQ(0, lt_configure(fd, plain, O_RDWR, LO_FLAGS_PARTSCAN,
					  0, 0, 0));
		ASSERT_FALSE(lt_exists("/sys/block/loop%d/loop%dp1", n));
		ASSERT_FALSE(lt_exists("/dev/loop%dp1", n));
		ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
		close(fd);
	}
	unlink(parted);
	unlink(plain);
	free(parted);
	free(plain);
}

/* Count /sys/block/loop* entries. */
static int count_loop_devices(void)
{
	FILE *f = popen("ls -d /sys/block/loop* 2>/dev/null | wc -l", "r");
	int count = -1;

	if (f) {
		if (fscanf(f, "%d", &count) != 1)
			count = -1;
		pclose(f);
	}
	return count;
}

/*
 * Autoclear-delete: short-lived devices leave no /dev/loopN behind, and
 * each one is gone when its last close returns.
 */
TEST(autoclear_delete_leaves_no_device)
{
	char *file = lt_make_file("short", 1 * MiB, 0);
	int before = count_loop_devices(), i, rounds = 0;
	double end = now() + 45;

	ASSERT_NE(NULL, file);
	for (i = 0; i < 1000 && now() < end; i++) {
		int n, fd;

		fd = attach_free(file, LO_FLAGS_AUTOCLEAR |
				 LO_FLAGS_AUTOCLEAR_DELETE, &n);
		ASSERT_LE(0, fd) {
			TH_LOG("round %d: attach: %s", i, strerror(-fd));
		}
		close(fd);
		ASSERT_FALSE(lt_exists("/sys/block/loop%d", n)) {
			TH_LOG("round %d: loop%d still exists", i, n);
		}
		rounds++;
	}
	TH_LOG("%d short-lived devices", rounds);
	ASSERT_LE(50, rounds);
	ASSERT_GE(before, count_loop_devices());
	unlink(file);
	free(file);
}

TEST_HARNESS_MAIN
