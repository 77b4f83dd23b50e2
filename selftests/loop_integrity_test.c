// SPDX-License-Identifier: GPL-2.0
/*
 * Data integrity across detach. Writer processes, each with its own open
 * of the device (so the device has other openers), write checksummed
 * blocks (buffered or O_DIRECT, with or without fsync before counting a
 * write as acknowledged) while the device is detached by:
 *
 *  - clr_fd:	    LOOP_CLR_FD with the writers' opens outstanding; the
 *		    teardown runs at the last close;
 *  - autoclear:    LO_FLAGS_AUTOCLEAR, the writers' closes are the last;
 *  - set_capacity: the backing file grows and LOOP_SET_CAPACITY runs
 *		    repeatedly under the writers, then LOOP_CLR_FD.
 *
 * Once the last close has returned, the device must be unbound and the
 * backing file must hold, in every written block, the last acknowledged
 * write of that block, intact (its checksum), and its old content
 * everywhere else. Every write here is acknowledged before the detach
 * ends, so none may be missing.
 */
#include "loop_test_util.h"

#include <stdbool.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "kselftest_harness.h"

#define BLK		4096
#define NBLK		128	/* written blocks; as many are never written */
#define WRITERS		2
#define FILL		0x5a	/* what unwritten blocks hold */

/* Shared with the writer processes. */
struct shared {
	volatile int stop;
	unsigned long acked[NBLK];	/* last acknowledged write, 0: none */
	long acks;
};

struct blkhdr {
	__u64 block;
	__u64 seq;
	__u64 sum;	/* over the payload */
};

static __u64 payload_word(__u64 block, __u64 seq, unsigned int i)
{
	__u64 x = block * 0x9e3779b97f4a7c15ULL ^ seq * 0xbf58476d1ce4e5b9ULL ^
		  (i + 1) * 0x94d049bb133111ebULL;

	return x ^ (x >> 31);
}

static void fill(void *buf, __u64 block, __u64 seq)
{
	struct blkhdr *h = buf;
	__u64 *w = buf, sum = 0;
	unsigned int i;

	for (i = 3; i < BLK / 8; i++) {
		w[i] = payload_word(block, seq, i);
		sum += w[i] * (i | 1);
	}
	h->block = block;
	h->seq = seq;
	h->sum = sum;
}

/* 0 if @buf is write @seq of @block, intact. */
static int check(const void *buf, __u64 block, __u64 seq)
{
	const struct blkhdr *h = buf;
	const __u64 *w = buf;
	__u64 sum = 0;
	unsigned int i;

	if (h->block != block || h->seq != seq)
		return -1;
	for (i = 3; i < BLK / 8; i++) {
		if (w[i] != payload_word(block, seq, i))
			return -1;
		sum += w[i] * (i | 1);
	}
	return sum == h->sum ? 0 : -1;
}

enum how { CLR_FD, AUTOCLEAR, SET_CAPACITY };

FIXTURE(integ) {
	char *file;
	int n;
	struct shared *sh;
};

FIXTURE_VARIANT(integ) {
	enum how how;
	bool direct;
	bool fsync;
};

#define VARIANT(name, h, d, f) \
	FIXTURE_VARIANT_ADD(integ, name) { .how = h, .direct = d, .fsync = f }

VARIANT(clr_fd_buffered, CLR_FD, false, false);
VARIANT(clr_fd_buffered_fsync, CLR_FD, false, true);
VARIANT(clr_fd_direct, CLR_FD, true, false);
VARIANT(clr_fd_direct_fsync, CLR_FD, true, true);
VARIANT(autoclear_buffered, AUTOCLEAR, false, false);
VARIANT(autoclear_buffered_fsync, AUTOCLEAR, false, true);
VARIANT(autoclear_direct, AUTOCLEAR, true, false);
VARIANT(autoclear_direct_fsync, AUTOCLEAR, true, true);
VARIANT(set_capacity_buffered, SET_CAPACITY, false, false);
VARIANT(set_capacity_buffered_fsync, SET_CAPACITY, false, true);
VARIANT(set_capacity_direct, SET_CAPACITY, true, false);
VARIANT(set_capacity_direct_fsync, SET_CAPACITY, true, true);

FIXTURE_SETUP(integ)
{
	self->file = lt_make_file("integ", 2 * NBLK * BLK, FILL);
	ASSERT_NE(NULL, self->file);
	self->n = lt_get_free();
	ASSERT_LE(0, self->n);
	self->sh = mmap(NULL, sizeof(*self->sh), PROT_READ | PROT_WRITE,
			MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, self->sh);
}

FIXTURE_TEARDOWN(integ)
{
	lt_release(self->n);
	unlink(self->file);
	free(self->file);
	munmap(self->sh, sizeof(*self->sh));
}

/* Writer @id: its own open; blocks id, id + WRITERS, ... in turn. */
static void writer(struct shared *sh, int n, int id, bool direct, bool dosync)
{
	unsigned long seq = 0;
	void *buf;
	int fd = lt_open_dev(n, O_RDWR | (direct ? O_DIRECT : 0));

	if (fd < 0 || posix_memalign(&buf, BLK, BLK))
		_exit(1);
	while (!sh->stop) {
		unsigned int b = (seq * WRITERS + id) % NBLK;

		seq++;
		fill(buf, b, seq);
		if (pwrite(fd, buf, BLK, (off_t)b * BLK) != BLK)
			_exit(2);
		if (dosync && fsync(fd))
			_exit(3);
		__atomic_store_n(&sh->acked[b], seq, __ATOMIC_RELEASE);
		__atomic_add_fetch(&sh->acks, 1, __ATOMIC_RELEASE);
	}
	/* The last close of the device may be this one. */
	if (close(fd))
		_exit(4);
	_exit(0);
}

TEST_F_TIMEOUT(integ, acknowledged_writes_survive_detach, 600)
{
	unsigned char *data = malloc(4 * NBLK * BLK);
	double end = lt_deadline(8);
	long verified = 0, acks;
	int round, i, fd, status;
	pid_t pid[WRITERS];
	struct loop_info64 info;
	off_t size;

	ASSERT_NE(NULL, data);
	for (round = 0; round < 8 && (round < 2 || lt_now() < end); round++) {
		size = 2 * NBLK * BLK;
		/* A fresh backing file of FILL bytes. */
		{
			char *tmp = lt_make_file("integ-src", size, FILL);
			int rc;

			ASSERT_NE(NULL, tmp);
			rc = rename(tmp, self->file);
			free(tmp);
			ASSERT_EQ(0, rc);
		}
		memset(self->sh, 0, sizeof(*self->sh));
		fd = lt_open_dev(self->n, O_RDWR);
		ASSERT_LE(0, fd);
		ASSERT_EQ(0, lt_configure(fd, self->file, O_RDWR,
					  variant->how == AUTOCLEAR ?
					  LO_FLAGS_AUTOCLEAR : 0, 0, 0, 0));
		for (i = 0; i < WRITERS; i++) {
			pid[i] = fork();
			ASSERT_LE(0, pid[i]);
			if (!pid[i])
				writer(self->sh, self->n, i, variant->direct,
				       variant->fsync);
		}
		/* Let the writers get going: every block written once. */
		for (i = 0; i < NBLK; i++)
			while (!__atomic_load_n(&self->sh->acked[i],
						__ATOMIC_ACQUIRE))
				usleep(1000);
		acks = __atomic_load_n(&self->sh->acks, __ATOMIC_ACQUIRE);
		while (__atomic_load_n(&self->sh->acks, __ATOMIC_ACQUIRE) <
		       acks + 16 * round)
			usleep(1000);

		switch (variant->how) {
		case CLR_FD:
			/* Others have it open: detached at the last close. */
			ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
			close(fd);
			break;
		case AUTOCLEAR:
			close(fd);
			break;
		case SET_CAPACITY:
			for (i = 0; i < 4; i++) {
				size += NBLK * BLK / 2;
				ASSERT_EQ(0, truncate(self->file, size));
				ASSERT_EQ(0, ioctl(fd, LOOP_SET_CAPACITY));
				ASSERT_EQ(size, lt_size(fd));
				usleep(2000);
			}
			break;
		}
		usleep(5000);
		self->sh->stop = 1;
		/* Each writer checked its own close. */
		for (i = 0; i < WRITERS; i++) {
			ASSERT_EQ(pid[i], waitpid(pid[i], &status, 0));
			ASSERT_TRUE(WIFEXITED(status));
			ASSERT_EQ(0, WEXITSTATUS(status)) {
				TH_LOG("round %d: writer %d failed at step %d",
				       round, i, WEXITSTATUS(status));
			}
		}
		if (variant->how == SET_CAPACITY) {
			ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
			close(fd);
		}

		/* The last close has returned: unbound, file complete. */
		fd = lt_open_dev(self->n, O_RDONLY);
		ASSERT_LE(0, fd);
		ASSERT_EQ(-1, ioctl(fd, LOOP_GET_STATUS64, &info));
		ASSERT_EQ(ENXIO, errno);
		close(fd);
		{
			struct stat st;
			int ffd = open(self->file, O_RDONLY);

			ASSERT_LE(0, ffd);
			ASSERT_EQ(0, fstat(ffd, &st));
			ASSERT_EQ(size, st.st_size);
			ASSERT_EQ(size, pread(ffd, data, size, 0));
			close(ffd);
		}
		for (i = 0; i < NBLK; i++) {
			unsigned long seq = self->sh->acked[i];

			ASSERT_NE(0, seq);
			ASSERT_EQ(0, check(data + (size_t)i * BLK, i, seq)) {
				const struct blkhdr *h = (const void *)
					(data + (size_t)i * BLK);

				TH_LOG("round %d: block %d should be write %lu, holds block %llu write %llu%s",
				       round, i, seq,
				       (unsigned long long)h->block,
				       (unsigned long long)h->seq,
				       h->seq == seq ? " (damaged)" : "");
			}
			verified += BLK;
		}
		/* Never written: the old content, or zeroes past the old end. */
		for (i = NBLK * BLK; i < size; i++) {
			int want = i < 2 * NBLK * BLK ? FILL : 0;

			ASSERT_EQ(want, data[i]) {
				TH_LOG("round %d: byte %d outside the written blocks changed",
				       round, i);
			}
		}
	}
	TH_LOG("%d rounds, %ld bytes of acknowledged writes verified",
	       round, verified);
	free(data);
}

TEST_HARNESS_MAIN
