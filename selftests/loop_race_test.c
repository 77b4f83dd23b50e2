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
#include <sys/mman.h>
#include <sys/mount.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <linux/netlink.h>

#include "kselftest_harness.h"

/* Every test bounds its own rounds by time, well below this. */
#undef TEST_TIMEOUT_DEFAULT
#define TEST_TIMEOUT_DEFAULT 400

#define MiB (1024 * 1024)

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
	double end = lt_deadline(60);
	int round, rounds = 0;

	ASSERT_NE(NULL, lower);
	ASSERT_EQ(0, truncate(lower, 64 * MiB));
	snprintf(cmd, sizeof(cmd), "mkfs.ext4 -q -F %s >/dev/null 2>&1", lower);
	ASSERT_EQ(0, lt_run(cmd));
	ASSERT_NE(NULL, mkdtemp(lower_dir));
	ASSERT_NE(NULL, mkdtemp(upper_dir));
	snprintf(upper, sizeof(upper), "%s/upper.img", lower_dir);

	for (round = 0; round < 20 && lt_now() < end; round++) {
		int lfd, ufd, ln, un;

		/* Lower: an ext4 image on a loop device, mounted. */
		lfd = lt_attach_free(lower, LO_FLAGS_AUTOCLEAR, &ln);
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
			ASSERT_EQ(0, lt_run(cmd));
		}

		/* Upper: an image inside the lower filesystem, mounted. */
		ufd = lt_attach_free(upper, LO_FLAGS_AUTOCLEAR, &un);
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
	ASSERT_LE(lt_least(5), rounds);
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
	double end = lt_deadline(30);
	int n = lt_get_free(), i, fd = -1;

	ASSERT_NE(NULL, file);
	ASSERT_LE(0, n);
	for (i = 0; i < 200 && lt_now() < end; i++) {
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
	volatile long iter;	/* open-read-close rounds done */
	long reads;
};

static void *probe_loop(void *arg)
{
	struct prober *p = arg;
	char buf[4096];

	while (!p->stop) {
		int fd = lt_open_dev(p->n, O_RDONLY);

		if (fd >= 0) {
			if (pread(fd, buf, sizeof(buf), 0) > 0)
				p->reads++;
			close(fd);
		}
		p->iter++;
	}
	return NULL;
}

TEST(clr_fd_and_last_close_vs_blkid_like_opener)
{
	char *file = lt_make_file("probe", 4 * MiB, 0x42);
	struct prober p = { .n = 0 };
	double end = lt_deadline(30);
	unsigned long used = 0;
	struct loop_info64 info;
	pthread_t thr;
	int i, n, fd;

	ASSERT_NE(NULL, file);
	ASSERT_EQ(0, pthread_create(&thr, NULL, probe_loop, &p));
	for (i = 0; i < 300 && lt_now() < end; i++) {
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
	ASSERT_EQ(0, lt_run(cmd));
	ASSERT_NE(NULL, mkdtemp(mnt));
	fd = lt_attach_free(img, 0, &n);
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
	double end = lt_deadline(30);
	char cmd[512], part[64];
	int round;

	ASSERT_NE(NULL, parted);
	ASSERT_NE(NULL, plain);
	snprintf(cmd, sizeof(cmd),
		 "printf 'label: dos\\n,2M\\n,2M\\n' | /usr/sbin/sfdisk -q %s >/dev/null 2>&1",
		 parted);
	ASSERT_EQ(0, lt_run(cmd));
	for (round = 0; round < 20 && lt_now() < end; round++) {
		int fd, pfd, n;

		fd = lt_attach_free(parted, LO_FLAGS_PARTSCAN, &n);
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
	double end = lt_deadline(45);

	ASSERT_NE(NULL, file);
	for (i = 0; i < 1000 && lt_now() < end; i++) {
		int n, fd;

		fd = lt_attach_free(file, LO_FLAGS_AUTOCLEAR |
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
	ASSERT_LE(lt_least(50), rounds);
	ASSERT_GE(before, count_loop_devices());
	unlink(file);
	free(file);
}

/*
 * Autoclear-delete with a prober that opens each device as udev's blkid
 * does, also while it is in teardown: the prober's open must not keep the
 * device alive. The last close may be the prober's: the device must be
 * gone once both the test and the prober have closed it.
 */
TEST(autoclear_delete_vs_prober_leaves_no_device)
{
	char *file = lt_make_file("short", 1 * MiB, 0);
	int before = count_loop_devices(), i, rounds = 0;
	int again[64], recreated = 0;
	struct prober p = { .n = 0 };
	double end = lt_deadline(20);
	pthread_t thr;

	ASSERT_NE(NULL, file);
	ASSERT_EQ(0, pthread_create(&thr, NULL, probe_loop, &p));
	for (i = 0; i < 400 && lt_now() < end; i++) {
		ino_t id, now;
		long iter0;
		int n, fd;

		fd = lt_attach_free(file, LO_FLAGS_AUTOCLEAR |
				 LO_FLAGS_AUTOCLEAR_DELETE, &n);
		ASSERT_LE(0, fd) {
			TH_LOG("round %d: attach: %s", i, strerror(-fd));
		}
		id = lt_dev_id(n);
		ASSERT_NE(0, id);
		p.n = n;
		close(fd);
		/* An open by the prober in progress now is closed after. */
		iter0 = p.iter;
		while (p.iter == iter0)
			;
		/*
		 * Unless the prober's open had looked up /dev/loop@n just
		 * before the deletion: then it creates a new loop@n.
		 */
		now = lt_dev_id(n);
		ASSERT_NE(id, now) {
			TH_LOG("round %d: loop%d still exists", i, n);
		}
		if (now && recreated < (int)ARRAY_SIZE(again))
			again[recreated++] = n;
		rounds++;
	}
	p.stop = 1;
	pthread_join(thr, NULL);
	/* The devices created again (unbound; those used later are gone). */
	for (i = 0; i < recreated; i++)
		lt_ctl(LOOP_CTL_REMOVE, again[i]);
	TH_LOG("%d short-lived devices, %ld reads by the prober, %d created again by its open",
	       rounds, p.reads, recreated);
	ASSERT_LE(lt_least(20), rounds);
	ASSERT_GE(before, count_loop_devices()) {
		TH_LOG("%d devices before, %d after", before,
		       count_loop_devices());
	}
	unlink(file);
	free(file);
}

/*
 * Stacking vs detach: loopB is configured over loopA while another thread
 * keeps attaching loopA and clearing it with LOOP_CLR_FD. The decision
 * "is loopA in use" and the validation of the chain below loopB are made
 * under one lock, so a configure of loopB either fails cleanly (EINVAL:
 * loopA was not bound) or gives a chain that works: loopB serves loopA's
 * data, and loopA stays bound while loopB uses it.
 * How often each outcome happens depends on the guest's timing (on 6.1
 * under TCG as few as 17 stacked in 1000 rounds; on the KCSAN kernel 4
 * refused in 6754), so the test goes on past 1000 rounds until it has seen
 * each one 20 times (scaled), and then steers toward the rarer one: the
 * attacher pauses with loopA bound; or it pauses with loopA unbound, and
 * loopB's configure no longer waits for loopA to be bound.
 */
#define STACK_MIN_EACH 20

struct attach_clear {
	int n;
	const char *file;
	volatile int stop;
	volatile int linger;	/* pause (µs) 1: bound, 2: unbound */
	long attaches, busy;
	int err;
};

static void *attach_clear_loop(void *arg)
{
	struct attach_clear *a = arg;

	while (!a->stop) {
		int fd = lt_open_dev(a->n, O_RDWR);
		int err;

		if (fd < 0) {
			a->err = errno;
			break;
		}
		err = lt_configure(fd, a->file, O_RDWR, 0, 0, 0, 0);
		if (err == -EBUSY) {
			/* Still bound: loopB holds it, detach is deferred. */
			a->busy++;
			close(fd);
			continue;
		}
		if (err) {
			a->err = -err;
			close(fd);
			break;
		}
		a->attaches++;
		if (a->linger == 1)
			usleep(rand() % 500);
		if (ioctl(fd, LOOP_CLR_FD)) {
			a->err = errno;
			close(fd);
			break;
		}
		close(fd);
		if (a->linger == 2)
			usleep(rand() % 500);
	}
	return NULL;
}

TEST(stacked_configure_vs_clear_and_reattach)
{
	char *file = lt_make_file("lower", 1 * MiB, 0x5a);
	int na = lt_ctl(LOOP_CTL_ADD, -1), nb = lt_ctl(LOOP_CTL_ADD, -1);
	struct attach_clear a = { .file = file };
	long stacked = 0, refused = 0;
	struct loop_info64 info;
	/*
	 * 1000 rounds within the scaled bound; then, until each outcome has
	 * been seen often enough, up to an unscaled minute (the KCSAN guest
	 * once saw 3 refusals in 762 rounds of its 9 s).
	 */
	double end = lt_deadline(30), hard = lt_now() + 60;
	char buf[4096] __attribute__((aligned(4096))), want[4096];
	pthread_t thr;
	int i;

	ASSERT_NE(NULL, file);
	ASSERT_LE(0, na);
	ASSERT_LE(0, nb);
	memset(want, 0x5a, sizeof(want));
	a.n = na;
	ASSERT_EQ(0, pthread_create(&thr, NULL, attach_clear_loop, &a));
	for (i = 0; ((i < 1000 && lt_now() < end) ||
		     ((stacked < lt_least(STACK_MIN_EACH) ||
		       refused < lt_least(STACK_MIN_EACH)) && lt_now() < hard)) &&
		     !a.err; i++) {
		char lower[32];
		double hold;
		int fdb, err;

		/* Past 1000 rounds, favour the outcome still missing. */
		if (i >= 1000)
			a.linger = stacked < lt_least(STACK_MIN_EACH) ? 1 :
				   refused < lt_least(STACK_MIN_EACH) ? 2 : 0;
		/*
		 * Aim at the window: loopA bound, maybe being cleared; or,
		 * when refusals are missing, at any moment.
		 */
		while (a.linger != 2 && lt_now() < hard &&
		       !lt_exists("/sys/block/loop%d/loop", na))
			;
		snprintf(lower, sizeof(lower), "/dev/loop%d", na);
		fdb = lt_open_dev(nb, O_RDWR | O_DIRECT);
		ASSERT_LE(0, fdb);
		err = lt_configure(fdb, lower, O_RDWR, 0, 0, 0, 0);
		if (err == -EINVAL) {
			refused++;
			close(fdb);
			continue;
		}
		ASSERT_EQ(0, err) {
			TH_LOG("round %d: loop%d over loop%d: %s", i, nb, na,
			       strerror(-err));
		}
		stacked++;
		/*
		 * Use the chain for 2 ms, with direct reads that each go
		 * down to loopA: a detach of loopA that raced this configure
		 * shows up while loopB is in use, not only at its first read.
		 */
		hold = lt_now() + 0.002;
		do {
			ASSERT_EQ((ssize_t)sizeof(buf),
				  pread(fdb, buf, sizeof(buf), 0)) {
				TH_LOG("round %d: read through the chain: %s",
				       i, strerror(errno));
			}
			ASSERT_EQ(0, memcmp(buf, want, sizeof(buf)));
		} while (lt_now() < hold);
		/* The lower device is still bound while loopB uses it. */
		snprintf(lower, sizeof(lower), "/dev/loop%d", na);
		{
			int fda = open(lower, O_RDONLY | O_CLOEXEC);

			ASSERT_LE(0, fda);
			ASSERT_EQ(0, ioctl(fda, LOOP_GET_STATUS64, &info)) {
				TH_LOG("round %d: loop%d unbound under loop%d",
				       i, na, nb);
			}
			close(fda);
		}
		ASSERT_EQ(0, ioctl(fdb, LOOP_CLR_FD));
		close(fdb);
	}
	a.stop = 1;
	pthread_join(thr, NULL);
	ASSERT_EQ(0, a.err) {
		TH_LOG("attach/clear thread: %s", strerror(a.err));
	}
	TH_LOG("%d rounds: %ld stacked, %ld refused, %ld attaches of loop%d (%ld EBUSY)",
	       i, stacked, refused, a.attaches, na, a.busy);
	ASSERT_LE(lt_least(STACK_MIN_EACH), stacked);
	ASSERT_LE(lt_least(STACK_MIN_EACH), refused);
	lt_release(nb);
	lt_release(na);
	unlink(file);
	free(file);
}

/*
 * Cycles: loopA and loopB are bound read-only, each over its own file.
 * Two threads at once ask LOOP_CHANGE_FD to put loopA over loopB and loopB
 * over loopA. Validated one at a time under the global lock, at most one
 * can succeed (the other sees the cycle: EBADF); both succeeding would
 * build A on B on A, whose first read never returns.
 */
struct change_fd_arg {
	int target_fd;		/* the device to change */
	int other;		/* number of the device to put under it */
	pthread_barrier_t *start;
	int ret;
};

static void *change_fd_once(void *arg)
{
	struct change_fd_arg *c = arg;
	int fd = lt_open_dev(c->other, O_RDONLY);

	pthread_barrier_wait(c->start);
	c->ret = ioctl(c->target_fd, LOOP_CHANGE_FD, fd) ? errno : 0;
	close(fd);
	return NULL;
}

static int change_fd_to_file(int devfd, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int ret;

	if (fd < 0)
		return errno;
	ret = ioctl(devfd, LOOP_CHANGE_FD, fd) ? errno : 0;
	close(fd);
	return ret;
}

TEST(stacked_cycle_by_concurrent_change_fd_is_refused)
{
	char *fa = lt_make_file("cyca", 1 * MiB, 0x11);
	char *fb = lt_make_file("cycb", 1 * MiB, 0x22);
	int na = lt_ctl(LOOP_CTL_ADD, -1), nb = lt_ctl(LOOP_CTL_ADD, -1);
	long one = 0, none = 0;
	double end = lt_deadline(30);
	pthread_barrier_t start;
	char buf[4096];
	int fda, fdb, i;

	ASSERT_NE(NULL, fa);
	ASSERT_NE(NULL, fb);
	ASSERT_LE(0, na);
	ASSERT_LE(0, nb);
	fda = lt_open_dev(na, O_RDONLY);
	fdb = lt_open_dev(nb, O_RDONLY);
	ASSERT_LE(0, fda);
	ASSERT_LE(0, fdb);
	ASSERT_EQ(0, lt_configure(fda, fa, O_RDONLY, 0, 0, 0, 0));
	ASSERT_EQ(0, lt_configure(fdb, fb, O_RDONLY, 0, 0, 0, 0));
	ASSERT_EQ(0, pthread_barrier_init(&start, NULL, 2));
	for (i = 0; i < 300 && lt_now() < end; i++) {
		struct change_fd_arg ab = { fda, nb, &start };
		struct change_fd_arg ba = { fdb, na, &start };
		pthread_t t1, t2;

		ASSERT_EQ(0, pthread_create(&t1, NULL, change_fd_once, &ab));
		ASSERT_EQ(0, pthread_create(&t2, NULL, change_fd_once, &ba));
		pthread_join(t1, NULL);
		pthread_join(t2, NULL);
		ASSERT_FALSE(ab.ret == 0 && ba.ret == 0) {
			TH_LOG("round %d: loop%d over loop%d over loop%d", i,
			       na, nb, na);
		}
		/* The loser saw the cycle; nothing else may go wrong. */
		if (ab.ret)
			ASSERT_EQ(EBADF, ab.ret);
		if (ba.ret)
			ASSERT_EQ(EBADF, ba.ret);
		if (ab.ret && ba.ret)
			none++;
		else
			one++;
		/* A valid chain reads. */
		ASSERT_EQ((ssize_t)sizeof(buf), pread(fda, buf, sizeof(buf), 0));
		ASSERT_EQ((ssize_t)sizeof(buf), pread(fdb, buf, sizeof(buf), 0));
		/* Back to two files: the upper one first. */
		if (!ab.ret)
			ASSERT_EQ(0, change_fd_to_file(fda, fa));
		if (!ba.ret)
			ASSERT_EQ(0, change_fd_to_file(fdb, fb));
	}
	TH_LOG("%d rounds: %ld with one winner, %ld with none", i, one, none);
	ASSERT_LE(lt_least(10), one);
	/* The first to validate sees a plain file below: it always wins. */
	ASSERT_EQ(0, none);
	pthread_barrier_destroy(&start);
	ASSERT_EQ(0, ioctl(fda, LOOP_CLR_FD));
	ASSERT_EQ(0, ioctl(fdb, LOOP_CLR_FD));
	close(fda);
	close(fdb);
	lt_ctl(LOOP_CTL_REMOVE, na);
	lt_ctl(LOOP_CTL_REMOVE, nb);
	unlink(fa);
	unlink(fb);
	free(fa);
	free(fb);
}

/*
 * /dev/loop-control from many threads against attach and detach. Attachers
 * take LOOP_CTL_GET_FREE's device and attach it with autoclear (half of
 * them with autoclear-delete), read, close; another thread adds and
 * removes devices of its own. Asserted: no device is bound by two threads
 * at once; a device GET_FREE handed out exists when opened (unless this
 * test's remover took it); an EBUSY on attach always has a competitor that
 * bound the device (never our own pending teardown); no remove fails on a
 * device nobody uses; nothing is left bound or leaked at the end.
 */
#define CTL_MAX_DEV	1024
#define CTL_ATTACHERS	4

struct ctl_shared {
	const char *file;
	volatile int stop;
	_Atomic int owner[CTL_MAX_DEV];		/* thread id + 1 while bound */
	_Atomic unsigned int gen[CTL_MAX_DEV];	/* bumped on attach/detach */
	_Atomic int added[CTL_MAX_DEV];		/* the remover's devices */
	_Atomic long attaches, busy, gone, removes;
	char failure[256];
};

struct ctl_thread {
	struct ctl_shared *sh;
	int id;
	unsigned int gen0[CTL_MAX_DEV];
};

static void ctl_fail(struct ctl_shared *sh, const char *fmt, int n, int err)
{
	if (!sh->failure[0])
		snprintf(sh->failure, sizeof(sh->failure), fmt, n,
			 strerror(err));
	sh->stop = 1;
}

static void *ctl_attacher(void *arg)
{
	struct ctl_thread *t = arg;
	struct ctl_shared *sh = t->sh;
	__u32 flags = LO_FLAGS_AUTOCLEAR;
	struct loop_info64 info;
	char buf[4096];
	long round = 0;

	while (!sh->stop) {
		int n, fd, err, expect = 0, i;

		/* Generations before GET_FREE: did a competitor come in? */
		for (i = 0; i < CTL_MAX_DEV; i++)
			t->gen0[i] = atomic_load(&sh->gen[i]);
		n = lt_get_free();
		if (n < 0 || n >= CTL_MAX_DEV) {
			ctl_fail(sh, "GET_FREE returned %d: %s", n, -n);
			break;
		}
		fd = lt_open_dev(n, O_RDWR);
		if (fd < 0) {
			/*
			 * Gone: deleted by our remover, or by autoclear-delete
			 * after a competitor attached it. Never a device that
			 * was already on its way out when handed over.
			 */
			if (atomic_load(&sh->added[n]) ||
			    atomic_load(&sh->gen[n]) != t->gen0[n]) {
				atomic_fetch_add(&sh->gone, 1);
				continue;
			}
			ctl_fail(sh, "loop%d from GET_FREE cannot be opened: %s",
				 n, errno);
			break;
		}
		flags = (round++ & 1) ? LO_FLAGS_AUTOCLEAR :
			LO_FLAGS_AUTOCLEAR | LO_FLAGS_AUTOCLEAR_DELETE;
		err = lt_configure(fd, sh->file, O_RDWR, flags, 0, 0, 0);
		if (err == -EBUSY) {
			/* Legitimate only if another attacher bound it. */
			if (ioctl(fd, LOOP_GET_STATUS64, &info) &&
			    atomic_load(&sh->gen[n]) == t->gen0[n])
				ctl_fail(sh, "loop%d: EBUSY with no competitor: %s",
					 n, EBUSY);
			atomic_fetch_add(&sh->busy, 1);
			close(fd);
			continue;
		}
		if (err == -ENXIO && (atomic_load(&sh->added[n]) ||
				      atomic_load(&sh->gen[n]) != t->gen0[n])) {
			/* Deleted under us, as above. */
			atomic_fetch_add(&sh->gone, 1);
			close(fd);
			continue;
		}
		if (err) {
			ctl_fail(sh, "attach loop%d: %s", n, -err);
			close(fd);
			break;
		}
		if (!atomic_compare_exchange_strong(&sh->owner[n], &expect,
						    t->id + 1)) {
			ctl_fail(sh, "loop%d bound by two threads: %s", n, EEXIST);
			close(fd);
			break;
		}
		atomic_fetch_add(&sh->gen[n], 1);
		if (pread(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
			ctl_fail(sh, "read loop%d: %s", n, errno);
		atomic_store(&sh->owner[n], 0);
		atomic_fetch_add(&sh->gen[n], 1);
		atomic_fetch_add(&sh->attaches, 1);
		close(fd);
	}
	return NULL;
}

static void *ctl_remover(void *arg)
{
	struct ctl_thread *t = arg;
	struct ctl_shared *sh = t->sh;

	while (!sh->stop) {
		int n, err, i;

		for (i = 0; i < CTL_MAX_DEV; i++)
			t->gen0[i] = atomic_load(&sh->gen[i]);
		n = lt_ctl(LOOP_CTL_ADD, -1);
		if (n < 0 || n >= CTL_MAX_DEV) {
			ctl_fail(sh, "LOOP_CTL_ADD returned %d: %s", n, -n);
			break;
		}
		atomic_store(&sh->added[n], 1);
		err = lt_ctl(LOOP_CTL_REMOVE, n);
		/*
		 * EBUSY: an attacher got it from GET_FREE and holds it.
		 * ENODEV: an attacher attached it with autoclear-delete,
		 * which removed it (or is removing it).
		 */
		if (err == -ENODEV && atomic_load(&sh->gen[n]) != t->gen0[n])
			continue;
		if (err && err != -EBUSY) {
			ctl_fail(sh, "LOOP_CTL_REMOVE loop%d: %s", n, -err);
			break;
		}
		if (!err)
			atomic_fetch_add(&sh->removes, 1);
	}
	return NULL;
}

TEST(loop_control_from_many_threads_vs_attach_detach)
{
	struct ctl_shared *sh = calloc(1, sizeof(*sh));
	struct ctl_thread t[CTL_ATTACHERS + 1];
	char *file = lt_make_file("ctl", 1 * MiB, 0x33);
	int before = count_loop_devices(), i, n, fd;
	pthread_t thr[CTL_ATTACHERS + 1];
	struct loop_info64 info;
	double end = lt_deadline(30);

	ASSERT_NE(NULL, sh);
	ASSERT_NE(NULL, file);
	sh->file = file;
	for (i = 0; i <= CTL_ATTACHERS; i++) {
		t[i].sh = sh;
		t[i].id = i;
		ASSERT_EQ(0, pthread_create(&thr[i], NULL, i < CTL_ATTACHERS ?
					    ctl_attacher : ctl_remover, &t[i]));
	}
	while (!sh->stop && lt_now() < end &&
	       atomic_load(&sh->attaches) < 3000)
		usleep(100000);
	sh->stop = 1;
	for (i = 0; i <= CTL_ATTACHERS; i++)
		pthread_join(thr[i], NULL);
	TH_LOG("%ld attaches, %ld EBUSY with a competitor, %ld deleted under the attacher, %ld removes",
	       atomic_load(&sh->attaches), atomic_load(&sh->busy),
	       atomic_load(&sh->gone), atomic_load(&sh->removes));
	ASSERT_EQ(0, sh->failure[0]) {
		TH_LOG("%s", sh->failure);
	}
	/*
	 * Enough attaches to have raced: Debian's kernels do thousands in
	 * the 30 s; the debug kernel, with a third of them, 29 to 59.
	 */
	ASSERT_LE(lt_least(40), atomic_load(&sh->attaches));
	/* Nothing bound; every device this test created can be removed. */
	for (n = 0; n < CTL_MAX_DEV; n++) {
		if (!lt_exists("/sys/block/loop%d", n))
			continue;
		fd = lt_open_dev(n, O_RDONLY);
		ASSERT_LE(0, fd);
		ASSERT_NE(0, ioctl(fd, LOOP_GET_STATUS64, &info)) {
			char back[256] = "";

			lt_sysfs(n, "loop/backing_file", back, sizeof(back));
			TH_LOG("loop%d is still bound: %s, flags 0x%x", n, back,
			       info.lo_flags);
		}
		close(fd);
		if (n >= 8)
			ASSERT_EQ(0, lt_ctl(LOOP_CTL_REMOVE, n)) {
				TH_LOG("loop%d cannot be removed", n);
			}
	}
	ASSERT_GE(before > 8 ? before : 8, count_loop_devices());
	unlink(file);
	free(file);
	free(sh);
}

/*
 * What "losetup -f" and systemd do, from many threads at once:
 * LOOP_CTL_GET_FREE, open, LOOP_CONFIGURE with autoclear, read, close, and
 * again from GET_FREE on EBUSY. LOOP_CTL_GET_FREE holds each device it
 * hands out for its caller (ours: get_free_hold_ms), so no attach may see
 * EBUSY, at 4 and at 16 threads. Stock hands one device to several callers
 * and all but one fail their attach (make bench counts hundreds a second).
 */
struct alloc_shared {
	const char *file;
	volatile int stop;
	_Atomic long cycles, busy;
	_Atomic int failed;
	char failure[256];
};

static void *alloc_churner(void *arg)
{
	struct alloc_shared *sh = arg;
	char buf[4096];

	while (!sh->stop) {
		int n = lt_get_free(), fd, err, expect = 0;

		fd = n < 0 ? -1 : lt_open_dev(n, O_RDWR);
		err = fd < 0 ? (n < 0 ? n : -errno) :
		      lt_configure(fd, sh->file, O_RDWR, LO_FLAGS_AUTOCLEAR,
				   0, 0, 0);
		if (err == -EBUSY) {
			atomic_fetch_add(&sh->busy, 1);
		} else if (err || pread(fd, buf, sizeof(buf), 0) != sizeof(buf)) {
			if (atomic_compare_exchange_strong(&sh->failed, &expect, 1))
				snprintf(sh->failure, sizeof(sh->failure),
					 "loop%d: %s", n,
					 strerror(err ? -err : errno));
			sh->stop = 1;
		} else {
			atomic_fetch_add(&sh->cycles, 1);
		}
		if (fd >= 0)
			close(fd);
	}
	return NULL;
}

FIXTURE(alloc) {
	char hold_ms[32];	/* get_free_hold_ms before the test */
};

FIXTURE_VARIANT(alloc) {
	int threads;
};

FIXTURE_VARIANT_ADD(alloc, threads_4) {
	.threads = 4,
};

FIXTURE_VARIANT_ADD(alloc, threads_16) {
	.threads = 16,
};

#define HOLD_PARAM LT_HOLD_PARAM

/*
 * A hold of 10 s, so that a thread that the slowest guest (TCG, KCSAN)
 * leaves waiting between GET_FREE and its attach still has its device.
 */
FIXTURE_SETUP(alloc)
{
	FILE *f = fopen(HOLD_PARAM, "r");

	self->hold_ms[0] = 0;
	if (!f)
		SKIP(return, "no get_free_hold_ms: not our loop.ko");
	if (!fgets(self->hold_ms, sizeof(self->hold_ms), f))
		self->hold_ms[0] = 0;
	fclose(f);
	ASSERT_NE(0, self->hold_ms[0]);
	ASSERT_EQ(0, lt_write_str(HOLD_PARAM, "10000"));
}

FIXTURE_TEARDOWN(alloc)
{
	if (self->hold_ms[0])
		lt_write_str(HOLD_PARAM, self->hold_ms);
}

TEST_F_TIMEOUT(alloc, get_free_hands_each_device_to_one_caller, 120)
{
	struct alloc_shared *sh = calloc(1, sizeof(*sh));
	char *file = lt_make_file("alloc", 1 * MiB, 0x5a);
	int before = count_loop_devices(), i, n;
	double end = lt_deadline(20);
	pthread_t thr[16];

	ASSERT_NE(NULL, sh);
	ASSERT_NE(NULL, file);
	sh->file = file;
	for (i = 0; i < variant->threads; i++)
		ASSERT_EQ(0, pthread_create(&thr[i], NULL, alloc_churner, sh));
	while (!sh->stop && lt_now() < end && atomic_load(&sh->cycles) < 4000)
		usleep(100000);
	sh->stop = 1;
	for (i = 0; i < variant->threads; i++)
		pthread_join(thr[i], NULL);
	TH_LOG("%d threads: %ld attach cycles, %ld EBUSY, %d devices made",
	       variant->threads, atomic_load(&sh->cycles),
	       atomic_load(&sh->busy), count_loop_devices() - before);
	ASSERT_EQ(0, atomic_load(&sh->failed)) {
		TH_LOG("%s", sh->failure);
	}
	EXPECT_EQ(0, atomic_load(&sh->busy));
	/* Enough cycles to have collided: thousands on Debian's kernels. */
	EXPECT_LE(lt_least(100), atomic_load(&sh->cycles));
	/* Each thread holds at most one device at a time. */
	EXPECT_GE(variant->threads, count_loop_devices() - before);
	for (n = 8; n < CTL_MAX_DEV; n++)
		if (lt_exists("/sys/block/loop%d", n))
			lt_ctl(LOOP_CTL_REMOVE, n);
	unlink(file);
	free(file);
	free(sh);
}

/*
 * I/O in flight during detach: threads of one process write through one
 * open of the device (so it has a single opener) while the process calls
 * LOOP_CLR_FD, which therefore tears the device down at once. Every write
 * acknowledged before LOOP_CLR_FD was called must be in the backing file
 * afterwards, whole; blocks nobody wrote stay zero. Buffered and direct
 * I/O alternate by round. The device is then attached again to another
 * file through the same open: it must show that file, not cached data of
 * the previous attachment.
 */
#define DET_BLOCKS	256	/* written blocks; as many stay untouched */
#define DET_WRITERS	2

struct det_shared {
	int fd;
	volatile int stop;
	_Atomic unsigned long ack[DET_BLOCKS];	/* last acknowledged seq */
	_Atomic unsigned long issued[DET_BLOCKS];	/* last issued seq */
	_Atomic long acks;
};

struct det_writer {
	struct det_shared *sh;
	int id;
	int err;
};

static void fill_block(void *buf, unsigned int b, unsigned long seq)
{
	__u64 *w = buf;

	for (size_t i = 0; i < 4096 / sizeof(*w); i++)
		w[i] = ((__u64)b << 48) | seq;
}

/*
 * Does byte @i of block @b hold that byte of one of the writes @first,
 * @first + DET_BLOCKS / DET_WRITERS, ... up to @last (from the first write
 * of the block if @first is 0)? Each writer writes its blocks in turn, so
 * those are the writes of block @b in that range.
 */
static bool byte_from_writes(const unsigned char *blk, int i, unsigned int b,
			     unsigned long first, unsigned long last)
{
	unsigned long seq;
	__u64 w;

	/* Block @b is written first by write b / DET_WRITERS + 1. */
	for (seq = first ? first : b / DET_WRITERS + 1; seq <= last;
	     seq += DET_BLOCKS / DET_WRITERS) {
		w = ((__u64)b << 48) | seq;
		if (((const unsigned char *)&w)[i % 8] == blk[i])
			return true;
	}
	return false;
}

/* Read @len bytes of the file @path from its start; -errno on failure. */
static ssize_t read_file(const char *path, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t r;

	if (fd < 0)
		return -errno;
	r = pread(fd, buf, len, 0);
	if (r < 0)
		r = -errno;
	close(fd);
	return r;
}

static void *det_writer_loop(void *arg)
{
	struct det_writer *w = arg;
	struct det_shared *sh = w->sh;
	unsigned long seq = 0;
	void *buf;

	if (posix_memalign(&buf, 4096, 4096))
		return NULL;
	while (!sh->stop) {
		/* Each writer owns the blocks of its parity. */
		unsigned int b = (seq * DET_WRITERS + w->id) % DET_BLOCKS;

		seq++;
		fill_block(buf, b, seq);
		atomic_store(&sh->issued[b], seq);
		if (pwrite(sh->fd, buf, 4096, (off_t)b * 4096) != 4096) {
			w->err = errno;
			break;
		}
		atomic_store(&sh->ack[b], seq);
		atomic_fetch_add(&sh->acks, 1);
	}
	free(buf);
	return NULL;
}

TEST(writes_acknowledged_before_detach_are_in_the_file)
{
	char *file = lt_make_file("acked", 2 * DET_BLOCKS * 4096, 0);
	char *other = lt_make_file("other", 2 * DET_BLOCKS * 4096, 0x77);
	struct det_writer w[DET_WRITERS];
	unsigned long snap[DET_BLOCKS];
	__u64 *data = malloc(2 * DET_BLOCKS * 4096);
	double end = lt_deadline(60);
	long verified = 0, late_errors = 0;
	int round, n, b, i, fd;
	unsigned char *buf;

	ASSERT_NE(NULL, file);
	ASSERT_NE(NULL, other);
	ASSERT_NE(NULL, data);
	ASSERT_EQ(0, posix_memalign((void **)&buf, 4096, 4096));
	n = lt_get_free();
	ASSERT_LE(0, n);
	for (round = 0; round < 20 && lt_now() < end; round++) {
		int direct = round & 1;
		struct det_shared *sh = calloc(1, sizeof(*sh));
		pthread_t thr[DET_WRITERS];

		ASSERT_NE(NULL, sh);
		ASSERT_EQ(0, truncate(file, 0));
		ASSERT_EQ(0, truncate(file, 2 * DET_BLOCKS * 4096));
		fd = lt_open_dev(n, O_RDWR | (direct ? O_DIRECT : 0));
		ASSERT_LE(0, fd);
		ASSERT_EQ(0, lt_configure(fd, file, O_RDWR, 0, 0, 0, 0));
		sh->fd = fd;
		for (i = 0; i < DET_WRITERS; i++) {
			w[i] = (struct det_writer){ .sh = sh, .id = i };
			ASSERT_EQ(0, pthread_create(&thr[i], NULL,
						    det_writer_loop, &w[i]));
		}
		while (atomic_load(&sh->acks) < 300 + 50 * round)
			sched_yield();
		for (b = 0; b < DET_BLOCKS; b++)
			snap[b] = atomic_load(&sh->ack[b]);
		ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
		/* The writers run into the detached device and stop. */
		for (i = 0; i < DET_WRITERS; i++) {
			pthread_join(thr[i], NULL);
			if (w[i].err)
				late_errors++;
		}
		sh->stop = 1;

		/* Read the backing file itself. */
		ASSERT_EQ(2 * DET_BLOCKS * 4096,
			  read_file(file, data, 2 * DET_BLOCKS * 4096));
		/*
		 * Byte by byte: a write that raced the detach may have landed
		 * in part over the acknowledged one, torn at any byte (the
		 * writer copies into the page while it is written back).
		 * Each byte must come from the acknowledged write of its
		 * block or from a later one.
		 */
		for (b = 0; b < DET_BLOCKS; b++) {
			const unsigned char *blk = (const unsigned char *)
						   (data + (size_t)b * 512);
			unsigned long last = atomic_load(&sh->issued[b]);

			for (i = 0; i < 4096; i++) {
				if (!snap[b] && !blk[i])
					continue;
				ASSERT_TRUE(byte_from_writes(blk, i, b, snap[b],
							     last)) {
					TH_LOG("round %d (%s): block %d, byte %d: 0x%02x is from no write since %lu, the last acknowledged before the detach",
					       round, direct ? "direct" : "buffered",
					       b, i, blk[i], snap[b]);
				}
			}
			verified += 4096;
		}
		for (i = DET_BLOCKS * 512; i < 2 * DET_BLOCKS * 512; i++) {
			ASSERT_EQ(0, data[i]) {
				TH_LOG("round %d: unwritten range changed", round);
			}
		}

		/* Same open, next attachment: no data of the previous one. */
		ASSERT_EQ(0, lt_configure(fd, other, O_RDWR, 0, 0, 0, 0));
		ASSERT_EQ(4096, pread(fd, buf, 4096, 0)) {
			TH_LOG("round %d: read after re-attach: %s", round,
			       strerror(errno));
		}
		for (i = 0; i < 4096; i++) {
			ASSERT_EQ(0x77, buf[i]) {
				TH_LOG("round %d: stale data after re-attach",
				       round);
			}
		}
		ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
		close(fd);
		free(sh);
	}
	TH_LOG("%d rounds, %ld bytes of written blocks checked, %ld writers stopped by the detach",
	       round, verified, late_errors);
	ASSERT_LE(lt_least(4), round);
	lt_release(n);
	unlink(file);
	unlink(other);
	free(file);
	free(other);
	free(data);
	free(buf);
}

/*
 * LOOP_CLR_FD by the sole opener while its own direct reads are in flight
 * (threads of one process share the open). The device has an opener, so
 * nothing drained it at a last close: the teardown must wait for the
 * requests it accepted before it lets the backing file go, and refuse new
 * ones. Every read must return the backing file's data at the configured
 * offset, or fail, or end at the new size 0; none may hang. The readers
 * run in a child process, so that a read that never completes (a request
 * lost with its worker) is reported instead of waited for.
 */
#define DRN_READERS	4
#define DRN_CHUNK	MiB
#define DRN_SPAN	(16 * MiB)	/* the device */
#define DRN_OFFSET	MiB		/* where it starts in the file */

struct drn_shared {
	_Atomic long reads;	/* completed with data, all of it checked */
	_Atomic long bad;	/* of which with wrong data */
	_Atomic long cut;	/* ended by the detach: error or size 0 */
	_Atomic long spanning;	/* read whole although the detach began */
	_Atomic int detaching;
	_Atomic long bad_at;
};

struct drn_reader {
	struct drn_shared *sh;
	int fd;
	unsigned int seed;
};

/* A file whose every 64-bit word holds its own byte offset. */
static char *drn_make_file(void)
{
	char *path = lt_make_file("drain", 0, 0);
	__u64 *buf = malloc(MiB);
	int fd = path ? open(path, O_WRONLY | O_CLOEXEC) : -1;
	off_t at;

	if (fd < 0 || !buf)
		return NULL;
	for (at = 0; at < DRN_OFFSET + DRN_SPAN; at += MiB) {
		for (size_t i = 0; i < MiB / sizeof(*buf); i++)
			buf[i] = at + i * sizeof(*buf);
		if (pwrite(fd, buf, MiB, at) != MiB)
			break;
	}
	close(fd);
	free(buf);
	return at == DRN_OFFSET + DRN_SPAN ? path : NULL;
}

static void *drn_read_loop(void *arg)
{
	struct drn_reader *r = arg;
	struct drn_shared *sh = r->sh;
	__u64 *buf;

	if (posix_memalign((void **)&buf, 4096, DRN_CHUNK))
		return NULL;
	for (;;) {
		off_t at = (off_t)(rand_r(&r->seed) %
				   ((DRN_SPAN - DRN_CHUNK) / 4096)) * 4096;
		int before = atomic_load(&sh->detaching);
		ssize_t got = pread(r->fd, buf, DRN_CHUNK, at);

		if (got <= 0) {
			atomic_fetch_add(&sh->cut, 1);
			break;
		}
		for (size_t i = 0; i < (size_t)got / sizeof(*buf); i++) {
			if (buf[i] != DRN_OFFSET + at + i * sizeof(*buf)) {
				atomic_store(&sh->bad_at, at + i * sizeof(*buf));
				atomic_fetch_add(&sh->bad, 1);
				break;
			}
		}
		atomic_fetch_add(&sh->reads, 1);
		if (!before && atomic_load(&sh->detaching))
			atomic_fetch_add(&sh->spanning, 1);
	}
	free(buf);
	return NULL;
}

/* The child: readers on @fd until the detach stops them all. */
static void drn_readers(int fd, struct drn_shared *sh)
{
	struct drn_reader r[DRN_READERS];
	pthread_t thr[DRN_READERS];
	int i;

	for (i = 0; i < DRN_READERS; i++) {
		r[i] = (struct drn_reader){ .sh = sh, .fd = fd, .seed = i };
		if (pthread_create(&thr[i], NULL, drn_read_loop, &r[i]))
			_exit(2);
	}
	for (i = 0; i < DRN_READERS; i++)
		pthread_join(thr[i], NULL);
	_exit(0);
}

TEST(clr_fd_waits_for_reads_in_flight_through_its_own_open)
{
	struct drn_shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
				     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	char *file = drn_make_file();
	double end = lt_deadline(30);
	long spanning = 0, reads = 0;
	int round, n, fd, status;

	ASSERT_NE(MAP_FAILED, sh);
	ASSERT_NE(NULL, file);
	for (round = 0; round < 200 && lt_now() < end; round++) {
		__u32 flags = round & 1 ? LO_FLAGS_DIRECT_IO : 0;
		double deadline;
		pid_t pid;

		memset(sh, 0, sizeof(*sh));
		n = lt_get_free();
		ASSERT_LE(0, n);
		fd = lt_open_dev(n, O_RDONLY | O_DIRECT);
		ASSERT_LE(0, fd);
		ASSERT_EQ(0, lt_configure(fd, file, O_RDWR, flags, DRN_OFFSET,
					  DRN_SPAN, 0));
		pid = fork();
		ASSERT_LE(0, pid);
		if (!pid)
			drn_readers(fd, sh);
		while (atomic_load(&sh->reads) < 4 && !atomic_load(&sh->cut))
			sched_yield();
		atomic_store(&sh->detaching, 1);
		ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
		/* Every reader ends soon: its last read failed or saw EOF. */
		deadline = lt_now() + 20;
		while (waitpid(pid, &status, WNOHANG) == 0) {
			ASSERT_GT(deadline, lt_now()) {
				TH_LOG("round %d: reads on loop%d still not done 20 s after LOOP_CLR_FD returned (%ld done)",
				       round, n, atomic_load(&sh->reads));
			}
			usleep(1000);
		}
		ASSERT_TRUE(WIFEXITED(status) && !WEXITSTATUS(status));
		ASSERT_EQ(0, atomic_load(&sh->bad)) {
			TH_LOG("round %d: a read returned wrong data at device offset %ld",
			       round, atomic_load(&sh->bad_at));
		}
		ASSERT_EQ(DRN_READERS, atomic_load(&sh->cut));
		reads += atomic_load(&sh->reads);
		spanning += atomic_load(&sh->spanning);
		close(fd);
		lt_ctl(LOOP_CTL_REMOVE, n);
	}
	TH_LOG("%d rounds, %ld reads checked, %ld of them begun before LOOP_CLR_FD and whole after it began",
	       round, reads, spanning);
	ASSERT_LE(lt_least(10), round);
	unlink(file);
	free(file);
	munmap(sh, sizeof(*sh));
}

/*
 * Queue limits against a queue freeze (6.12): the configuration ioctls
 * froze the queue and then took q->limits_lock, while 6.12's sysfs queue
 * attributes take limits_lock and then freeze; and the I/O worker took
 * limits_lock to stop advertising write-zeroes after the backing file
 * refused it (tmpfs refuses FALLOC_FL_ZERO_RANGE), while a freeze waited
 * for that very request: with a concurrent write to max_sectors_kb, a
 * deadlock. Threads write max_sectors_kb, switch the block size (which
 * advertises write-zeroes again) and direct I/O, and zero out and discard
 * ranges, for a bounded time: every thread must keep making progress, and
 * lockdep must stay quiet on the debug kernel.
 */
struct limits_race {
	int n, fd;
	volatile int stop;
	_Atomic long sysfs, ioctls, zeroes;
	int err;
};

static void *limits_sysfs_loop(void *arg)
{
	struct limits_race *lr = arg;
	char path[96];

	snprintf(path, sizeof(path), "/sys/block/loop%d/queue/max_sectors_kb",
		 lr->n);
	while (!lr->stop) {
		int err = lt_write_str(path, atomic_load(&lr->sysfs) & 1 ?
				       "64" : "128");

		if (err) {
			lr->err = -err;
			break;
		}
		atomic_fetch_add(&lr->sysfs, 1);
	}
	return NULL;
}

static void *limits_ioctl_loop(void *arg)
{
	struct limits_race *lr = arg;

	while (!lr->stop) {
		long i = atomic_load(&lr->ioctls);

		if (ioctl(lr->fd, LOOP_SET_BLOCK_SIZE, i & 1 ? 4096 : 512)) {
			lr->err = errno;
			break;
		}
		/* EINVAL where the backing file has no direct I/O (6.1). */
		if (ioctl(lr->fd, LOOP_SET_DIRECT_IO, (i >> 1) & 1) &&
		    errno != EINVAL) {
			lr->err = errno;
			break;
		}
		atomic_fetch_add(&lr->ioctls, 1);
		/*
		 * LOOP_SET_BLOCK_SIZE claims the device, and so do BLKZEROOUT
		 * and BLKDISCARD: back to back, the claims would starve them.
		 */
		usleep(1000);
	}
	return NULL;
}

static void *limits_zero_loop(void *arg)
{
	struct limits_race *lr = arg;

	while (!lr->stop) {
		__u64 range[2] = { (atomic_load(&lr->zeroes) % 64) * 65536,
				   65536 };

		/* Refused ranges fall back or fail: only progress counts. */
		if (ioctl(lr->fd, BLKZEROOUT, range) && errno != EOPNOTSUPP &&
		    errno != EINVAL)
			range[0] = 0;
		if (ioctl(lr->fd, BLKDISCARD, range))
			range[1] = 0;
		atomic_fetch_add(&lr->zeroes, 1);
	}
	return NULL;
}

TEST(limits_update_vs_queue_freeze_never_deadlocks)
{
	char file[] = "/tmp/limits-race.img";
	struct limits_race lr = { .fd = -1 };
	pthread_t thr[3];
	double end = lt_deadline(20);
	long s0, i0, z0;

	/* On tmpfs: punch hole yes, zero range no (EOPNOTSUPP). */
	ASSERT_EQ(0, close(open(file, O_RDWR | O_CREAT | O_TRUNC, 0600)));
	ASSERT_EQ(0, truncate(file, 4 * MiB));
	lr.fd = lt_attach_free(file, 0, &lr.n);
	ASSERT_LE(0, lr.fd);
	ASSERT_EQ(0, pthread_create(&thr[0], NULL, limits_sysfs_loop, &lr));
	ASSERT_EQ(0, pthread_create(&thr[1], NULL, limits_ioctl_loop, &lr));
	ASSERT_EQ(0, pthread_create(&thr[2], NULL, limits_zero_loop, &lr));
	while (lt_now() < end && !lr.err) {
		s0 = atomic_load(&lr.sysfs);
		i0 = atomic_load(&lr.ioctls);
		z0 = atomic_load(&lr.zeroes);
		sleep(5);
		/* Every thread moved in the last 5 s: nobody is stuck. */
		ASSERT_TRUE(atomic_load(&lr.sysfs) > s0 &&
			    atomic_load(&lr.ioctls) > i0 &&
			    atomic_load(&lr.zeroes) > z0) {
			TH_LOG("stuck: %ld sysfs writes, %ld ioctl rounds, %ld zeroout rounds in 5 s",
			       atomic_load(&lr.sysfs) - s0,
			       atomic_load(&lr.ioctls) - i0,
			       atomic_load(&lr.zeroes) - z0);
		}
	}
	lr.stop = 1;
	for (int i = 0; i < 3; i++)
		pthread_join(thr[i], NULL);
	ASSERT_EQ(0, lr.err) {
		TH_LOG("%s", strerror(lr.err));
	}
	TH_LOG("%ld sysfs writes, %ld ioctl rounds, %ld zeroout rounds",
	       atomic_load(&lr.sysfs), atomic_load(&lr.ioctls),
	       atomic_load(&lr.zeroes));
	ASSERT_EQ(0, ioctl(lr.fd, LOOP_CLR_FD));
	close(lr.fd);
	lt_ctl(LOOP_CTL_REMOVE, lr.n);
	unlink(file);
}

/*
 * Module unload (last test: it reloads the module). While a writer has I/O
 * in flight, the module is in use and rmmod is refused (EWOULDBLOCK, as
 * with stock). Once the last close has started the autoclear teardown, no
 * opener and no bound device is left, and rmmod must succeed, waiting for
 * the teardown, instead of failing because of our own pending work. The
 * teardown is seen starting as /sys/block/loopN/size turning 0, its first
 * step after the closer's module reference is dropped. Afterwards every
 * acknowledged write is in the backing file.
 */
struct unload_writer {
	int fd;
	volatile int stop;
	volatile int closed;
	long writes;
	int err;
};

static void *write_then_close(void *arg)
{
	struct unload_writer *u = arg;
	void *buf;

	if (posix_memalign(&buf, 4096, 4096)) {
		u->err = ENOMEM;
		return NULL;
	}
	while (!u->stop) {
		fill_block(buf, u->writes % DET_BLOCKS, u->writes + 1);
		if (pwrite(u->fd, buf, 4096,
			   (off_t)(u->writes % DET_BLOCKS) * 4096) != 4096) {
			u->err = errno;
			break;
		}
		u->writes++;
	}
	if (fsync(u->fd) && !u->err)
		u->err = errno;
	close(u->fd);
	u->closed = 1;
	free(buf);
	return NULL;
}

static int module_unload(void)
{
	return syscall(SYS_delete_module, "loop", O_NONBLOCK) ? -errno : 0;
}

static int module_load(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret;

	if (fd < 0)
		return -errno;
	ret = syscall(SYS_finit_module, fd, "", 0) ? -errno : 0;
	close(fd);
	return ret;
}

static long long sysfs_size(int n)
{
	char buf[64];

	if (lt_sysfs(n, "size", buf, sizeof(buf)))
		return -1;
	return atoll(buf);
}

TEST(module_unload_waits_for_pending_teardown)
{
	const char *module = getenv("LOOP_MODULE");
	char *file = lt_make_file("unload", DET_BLOCKS * 4096, 0);
	__u64 *data = malloc(DET_BLOCKS * 4096);
	int round, overlapped = 0, refused = 0;
	double end = lt_deadline(120);

	if (!module)
		SKIP(return, "LOOP_MODULE (path of our loop.ko) is not set");
	ASSERT_NE(NULL, file);
	ASSERT_NE(NULL, data);
	for (round = 0; round < 12 && lt_now() < end; round++) {
		struct unload_writer u = { 0 };
		double deadline;
		pthread_t thr;
		int n, k, b;

		n = lt_get_free();
		ASSERT_LE(0, n);
		u.fd = lt_open_dev(n, O_RDWR);
		ASSERT_LE(0, u.fd);
		ASSERT_EQ(0, lt_configure(u.fd, file, O_RDWR,
					  LO_FLAGS_AUTOCLEAR, 0, 0, 0));
		ASSERT_LT(0, sysfs_size(n));
		ASSERT_EQ(0, pthread_create(&thr, NULL, write_then_close, &u));
		/* In use, I/O in flight: refused, and the writer goes on. */
		for (k = 0; k < 20; k++) {
			ASSERT_EQ(-EWOULDBLOCK, module_unload());
			refused++;
		}
		u.stop = 1;
		deadline = lt_now() + 20;
		while (sysfs_size(n) != 0)
			ASSERT_GT(deadline, lt_now()) {
				TH_LOG("round %d: loop%d never torn down", round, n);
			}
		ASSERT_EQ(0, module_unload()) {
			TH_LOG("round %d: rmmod with the teardown of loop%d started: %s",
			       round, n, strerror(errno));
		}
		if (!u.closed)
			overlapped++;
		pthread_join(thr, NULL);
		ASSERT_EQ(0, u.err);
		ASSERT_EQ(0, module_load(module));

		/* Everything the writer got acknowledged reached the file. */
		ASSERT_EQ(DET_BLOCKS * 4096,
			  read_file(file, data, DET_BLOCKS * 4096));
		for (b = 0; b < DET_BLOCKS && b < u.writes; b++) {
			long last = u.writes - 1 - ((u.writes - 1 - b) % DET_BLOCKS);

			ASSERT_EQ(((__u64)b << 48) | (__u64)(last + 1),
				  data[(size_t)b * 512]) {
				TH_LOG("round %d: block %d lost its last write",
				       round, b);
			}
		}
	}
	TH_LOG("%d rounds, %d refusals while in use, %d unloads that overlapped the closing teardown",
	       round, refused, overlapped);
	ASSERT_LE(lt_least(3), round);
	unlink(file);
	free(file);
	free(data);
}

/*
 * The fast path (->queue_rq issuing with IOCB_NOWAIT) from both CPUs at
 * once: readers pinned one to each CPU, direct reads of the device over
 * a buffered backing file whose pages are all cached, so that every read
 * can be taken without waiting. Each read must return its own offsets,
 * and loop/nowait_issued must count every one of them: this is the test
 * the KCSAN guest runs to see the fast path's counter written, and its
 * per-attachment flags read, from two CPUs at once.
 */
#define NW_SIZE (8 * MiB)

struct nw_reader {
	int fd, cpu;
	unsigned int seed;
	double end;
	long reads, bad;
};

static void *nw_read_loop(void *arg)
{
	struct nw_reader *r = arg;
	cpu_set_t set;
	__u64 *buf;

	CPU_ZERO(&set);
	CPU_SET(r->cpu, &set);
	if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) ||
	    posix_memalign((void **)&buf, 4096, 4096)) {
		r->bad = -1;
		return NULL;
	}
	while (lt_now() < r->end) {
		off_t at = (off_t)(rand_r(&r->seed) % (NW_SIZE / 4096)) * 4096;

		if (pread(r->fd, buf, 4096, at) != 4096) {
			r->bad = -errno;
			break;
		}
		for (size_t i = 0; i < 4096 / sizeof(*buf); i++) {
			if (buf[i] != at + i * sizeof(*buf)) {
				r->bad++;
				break;
			}
		}
		r->reads++;
	}
	free(buf);
	return NULL;
}

#define NW_DEPTH_PARAM "/sys/module/loop/parameters/nowait_depth"

TEST(nowait_reads_from_two_cpus_are_each_counted)
{
	char *file = lt_make_file("nowait", 0, 0);
	char depth[16] = "";
	struct nw_reader r[2];
	pthread_t thr[2];
	long before, after, reads = 0;
	__u64 *buf = malloc(MiB);
	int n, fd, dev, f, i;
	off_t at;
	char c;

	ASSERT_NE(NULL, file);
	ASSERT_NE(NULL, buf);
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		SKIP(return, "one CPU");
	f = open(file, O_RDWR);
	ASSERT_LE(0, f);
	for (at = 0; at < NW_SIZE; at += MiB) {
		for (size_t j = 0; j < MiB / sizeof(*buf); j++)
			buf[j] = at + j * sizeof(*buf);
		ASSERT_EQ(MiB, pwrite(f, buf, MiB, at));
	}
	/* Written back and read once: every page cached and clean. */
	ASSERT_EQ(0, fsync(f));
	for (at = 0; at < NW_SIZE; at += MiB)
		ASSERT_EQ(MiB, pread(f, buf, MiB, at));
	close(f);
	free(buf);
	fd = lt_attach_free(file, 0, &n);
	ASSERT_LE(0, fd);
	before = lt_nowait_issued(n);
	if (before < 0)
		SKIP(goto out, "no loop/nowait_issued");
	f = open("/sys/module/loop/parameters/nowait", O_RDONLY);
	ASSERT_LE(0, f);
	ASSERT_EQ(1, read(f, &c, 1));
	close(f);
	if (c == 'N' || c == '0')
		SKIP(goto out, "fast path turned off (loop.nowait=0)");
	/*
	 * Over tmpfs (LOOP_SCRATCH unset), two readers at once would send
	 * reads to the workers (loop_tmpfs_queued()): with nowait_depth 0
	 * each read is the fast path's, wherever the file is.
	 */
	f = open(NW_DEPTH_PARAM, O_RDONLY);
	ASSERT_LE(0, f);
	ASSERT_LT(0, read(f, depth, sizeof(depth) - 1));
	close(f);
	ASSERT_EQ(0, lt_write_str(NW_DEPTH_PARAM, "0"));
	dev = lt_open_dev(n, O_RDONLY | O_DIRECT);
	EXPECT_LE(0, dev);
	for (i = 0; i < 2 && dev >= 0; i++) {
		r[i] = (struct nw_reader){ .fd = dev, .cpu = i, .seed = i,
					   .end = lt_deadline(5) };
		ASSERT_EQ(0, pthread_create(&thr[i], NULL, nw_read_loop, &r[i]));
	}
	for (i = 0; i < 2 && dev >= 0; i++) {
		pthread_join(thr[i], NULL);
		EXPECT_EQ(0, r[i].bad) TH_LOG("reader on CPU %d", i);
		reads += r[i].reads;
	}
	after = lt_nowait_issued(n);
	/* The value it had at the start (the module's default, or a test's). */
	ASSERT_EQ(0, lt_write_str(NW_DEPTH_PARAM, depth));
	if (dev < 0)
		goto out;
	close(dev);
	TH_LOG("%s: %ld + %ld reads, nowait_issued grew by %ld", lt_dir(),
	       r[0].reads, r[1].reads, after - before);
	EXPECT_LT(0, r[0].reads);
	EXPECT_LT(0, r[1].reads);
	/* Cached, clean, no other I/O: each read was taken without waiting. */
	EXPECT_EQ(reads, after - before);
out:
	ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
	close(fd);
	lt_release(n);
	unlink(file);
	free(file);
}

TEST_HARNESS_MAIN
