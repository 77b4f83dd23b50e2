// SPDX-License-Identifier: GPL-2.0
/*
 * Permissions: every loop and loop-control ioctl issued by a process that
 * opened the device (read-only or read-write) and then became an
 * unprivileged user (uid 65534, no capabilities). The answers must be the
 * stock driver's:
 *
 *   loop_perm_test --record		print this driver's answers
 *   LOOP_PERM_STOCK=FILE loop_perm_test	compare with the answers the
 *					stock loop.ko gave (run_all.sh records
 *					them in the same guest)
 *
 * Without LOOP_PERM_STOCK the answers are compared with stock_answers[]
 * below, recorded from Debian's stock 6.1 and 6.12 loop.ko (identical).
 * Also: a status ioctl writes every byte it returns (padding included),
 * and a read-only backing file gives a read-only device.
 */
#include "loop_test_util.h"

#include <grp.h>
#include <sys/wait.h>

#include "kselftest_harness.h"

#define MiB (1024 * 1024)

enum state { UNBOUND, BOUND, BOUND_RO };

struct perm_case {
	const char *name;
	enum state state;
	int mode;		/* O_RDONLY or O_RDWR open of the device */
	int op;
};

enum {
	P_SET_FD, P_CONFIGURE, P_CHANGE_FD, P_CLR_FD, P_SET_STATUS,
	P_SET_STATUS64, P_GET_STATUS, P_GET_STATUS64, P_SET_CAPACITY,
	P_SET_DIO, P_SET_BSIZE, P_CTL_ADD, P_CTL_REMOVE, P_CTL_GET_FREE,
};

#define BOTH(n, s, o) { n " ro", s, O_RDONLY, o }, { n " rw", s, O_RDWR, o }

static const struct perm_case cases[] = {
	BOTH("LOOP_SET_FD", UNBOUND, P_SET_FD),
	BOTH("LOOP_CONFIGURE", UNBOUND, P_CONFIGURE),
	BOTH("LOOP_CHANGE_FD", BOUND_RO, P_CHANGE_FD),
	BOTH("LOOP_CLR_FD", BOUND, P_CLR_FD),
	BOTH("LOOP_SET_STATUS", BOUND, P_SET_STATUS),
	BOTH("LOOP_SET_STATUS64", BOUND, P_SET_STATUS64),
	BOTH("LOOP_GET_STATUS", BOUND, P_GET_STATUS),
	BOTH("LOOP_GET_STATUS64", BOUND, P_GET_STATUS64),
	BOTH("LOOP_SET_CAPACITY", BOUND, P_SET_CAPACITY),
	BOTH("LOOP_SET_DIRECT_IO", BOUND, P_SET_DIO),
	BOTH("LOOP_SET_BLOCK_SIZE", BOUND, P_SET_BSIZE),
	{ "LOOP_CTL_ADD", UNBOUND, O_RDWR, P_CTL_ADD },
	{ "LOOP_CTL_REMOVE", UNBOUND, O_RDWR, P_CTL_REMOVE },
	{ "LOOP_CTL_GET_FREE", UNBOUND, O_RDWR, P_CTL_GET_FREE },
};
#define NR_CASES (sizeof(cases) / sizeof(cases[0]))

/* Stock loop.ko, Debian 6.1.0 and 6.12: errno per case, 0 for success. */
static const int stock_answers[NR_CASES] = {
	0, 0,			/* LOOP_SET_FD */
	0, 0,			/* LOOP_CONFIGURE */
	0, 0,			/* LOOP_CHANGE_FD */
	0, 0,			/* LOOP_CLR_FD */
	EPERM, 0,		/* LOOP_SET_STATUS */
	EPERM, 0,		/* LOOP_SET_STATUS64 */
	0, 0,			/* LOOP_GET_STATUS */
	0, 0,			/* LOOP_GET_STATUS64 */
	EPERM, 0,		/* LOOP_SET_CAPACITY */
	EPERM, 0,		/* LOOP_SET_DIRECT_IO */
	EPERM, 0,		/* LOOP_SET_BLOCK_SIZE */
	0, 0, 0,		/* LOOP_CTL_ADD, _REMOVE, _GET_FREE */
};

/* Become uid/gid 65534 with no capabilities at all. */
static int drop_privileges(void)
{
	if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) ||
	    setresuid(65534, 65534, 65534)) {
		fprintf(stderr, "# dropping privileges: %s\n", strerror(errno));
		return -1;
	}
	/* Leaving uid 0 cleared every capability set. */
	return geteuid() == 65534 ? 0 : -1;
}

/*
 * Run case @c in a child that opened everything it needs as root and then
 * dropped its privileges. Returns its errno (0: success), or a negative
 * number if the child could not set up.
 */
static int run_case(const struct perm_case *c, int n, int spare,
		    const char *file)
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		return -1;
	if (pid == 0) {
		int dev = lt_open_dev(n, c->mode);
		int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
		int bfd = open(file, O_RDONLY | O_CLOEXEC);
		struct loop_info64 info;
		struct loop_config cfg;
		struct loop_info old;
		long r = -1;

		if (dev < 0)
			_exit(251);
		if (ctl < 0)
			_exit(252);
		if (bfd < 0)
			_exit(253);
		if (drop_privileges())
			_exit(254);
		memset(&cfg, 0, sizeof(cfg));
		cfg.fd = bfd;
		memset(&info, 0, sizeof(info));
		memset(&old, 0, sizeof(old));
		switch (c->op) {
		case P_SET_FD:
			r = ioctl(dev, LOOP_SET_FD, bfd);
			break;
		case P_CONFIGURE:
			r = ioctl(dev, LOOP_CONFIGURE, &cfg);
			break;
		case P_CHANGE_FD:
			r = ioctl(dev, LOOP_CHANGE_FD, bfd);
			break;
		case P_CLR_FD:
			r = ioctl(dev, LOOP_CLR_FD);
			break;
		case P_SET_STATUS:
			r = ioctl(dev, LOOP_SET_STATUS, &old);
			break;
		case P_SET_STATUS64:
			r = ioctl(dev, LOOP_SET_STATUS64, &info);
			break;
		case P_GET_STATUS:
			r = ioctl(dev, LOOP_GET_STATUS, &old);
			break;
		case P_GET_STATUS64:
			r = ioctl(dev, LOOP_GET_STATUS64, &info);
			break;
		case P_SET_CAPACITY:
			r = ioctl(dev, LOOP_SET_CAPACITY);
			break;
		case P_SET_DIO:
			r = ioctl(dev, LOOP_SET_DIRECT_IO, 0);
			break;
		case P_SET_BSIZE:
			r = ioctl(dev, LOOP_SET_BLOCK_SIZE, 512);
			break;
		case P_CTL_ADD:
			r = ioctl(ctl, LOOP_CTL_ADD, spare);
			break;
		case P_CTL_REMOVE:
			r = ioctl(ctl, LOOP_CTL_REMOVE, spare);
			break;
		case P_CTL_GET_FREE:
			r = ioctl(ctl, LOOP_CTL_GET_FREE);
			break;
		}
		_exit(r < 0 ? errno : 0);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	/* 251..254: the child could not open or drop what it needed. */
	if (WEXITSTATUS(status) > 250)
		return -WEXITSTATUS(status);
	return WEXITSTATUS(status);
}

/* Put device @n in @state (as root), spare device @spare as the case needs. */
static int prepare(const struct perm_case *c, int n, int spare,
		   const char *file)
{
	int fd = lt_open_dev(n, O_RDWR), ret = 0, try;

	if (fd < 0)
		return -1;
	/* The stock driver detaches at the close after LOOP_CLR_FD. */
	ioctl(fd, LOOP_CLR_FD);
	close(fd);
	for (try = 0; c->state != UNBOUND && try < 100; try++) {
		fd = lt_open_dev(n, O_RDWR);
		if (fd < 0)
			return -1;
		ret = lt_configure(fd, file, c->state == BOUND_RO ?
				   O_RDONLY : O_RDWR, 0, 0, 0, 0);
		close(fd);
		if (ret != -EBUSY)
			break;
		/* Stock: the teardown may still be running. */
		usleep(10000);
	}
	/* REMOVE needs a spare device that exists; ADD one that does not. */
	if (c->op == P_CTL_REMOVE)
		lt_ctl(LOOP_CTL_ADD, spare);
	if (c->op == P_CTL_ADD)
		lt_ctl(LOOP_CTL_REMOVE, spare);
	return ret;
}

static const char *errname(int e)
{
	static char buf[16];

	switch (e) {
	case 0: return "0";
	case EPERM: return "EPERM";
	case EACCES: return "EACCES";
	case EBADF: return "EBADF";
	case EINVAL: return "EINVAL";
	case ENXIO: return "ENXIO";
	case EBUSY: return "EBUSY";
	case ENOTTY: return "ENOTTY";
	}
	snprintf(buf, sizeof(buf), "%d", e);
	return buf;
}

/* The errno errname() calls @name, or -1. */
static int errnum(const char *name)
{
	int e;

	for (e = 0; e < 256; e++)
		if (!strcmp(name, errname(e)))
			return e;
	return -1;
}

/* All answers of this driver, as "name errno" lines in @out. */
static int record(int *answers, char *err, size_t len)
{
	char *file = lt_make_file("perm", 4 * MiB, 0);
	int n = lt_get_free(), spare = 900 + getpid() % 50;
	unsigned int i;

	if (!file || n < 0) {
		snprintf(err, len, "setup: %s", strerror(errno));
		return -1;
	}
	for (i = 0; i < NR_CASES; i++) {
		if (prepare(&cases[i], n, spare, file)) {
			snprintf(err, len, "%s: cannot prepare", cases[i].name);
			return -1;
		}
		answers[i] = run_case(&cases[i], n, spare, file);
		if (answers[i] < 0) {
			snprintf(err, len, "%s: the child failed to set up (%d)",
				 cases[i].name, answers[i]);
			return -1;
		}
	}
	lt_release(n);
	lt_ctl(LOOP_CTL_REMOVE, spare);
	unlink(file);
	free(file);
	return 0;
}

/* Answers recorded from the stock driver, from @path. */
static int load(const char *path, int *answers)
{
	char line[128], e[16];
	unsigned int i = 0;
	FILE *f = fopen(path, "r");

	if (!f)
		return -1;
	while (i < NR_CASES && fgets(line, sizeof(line), f)) {
		char *sp = strrchr(line, ' ');

		if (!sp || sscanf(sp + 1, "%15s", e) != 1)
			continue;
		*sp = 0;
		if (strcmp(line, cases[i].name))
			break;
		answers[i++] = errnum(e);
	}
	fclose(f);
	return i == NR_CASES ? 0 : -1;
}

TEST(unprivileged_answers_are_stock)
{
	const char *stock = getenv("LOOP_PERM_STOCK");
	int ours[NR_CASES], theirs[NR_CASES];
	char err[128] = "";
	unsigned int i;

	if (stock && *stock) {
		ASSERT_EQ(0, load(stock, theirs)) {
			TH_LOG("cannot read the stock answers in %s", stock);
		}
		TH_LOG("compared with the stock loop.ko of this kernel");
	} else {
		memcpy(theirs, stock_answers, sizeof(theirs));
		TH_LOG("compared with the recorded stock answers");
	}
	ASSERT_EQ(0, record(ours, err, sizeof(err))) {
		TH_LOG("%s", err);
	}
	for (i = 0; i < NR_CASES; i++) {
		EXPECT_EQ(theirs[i], ours[i]) {
			TH_LOG("%s: stock %s, ours %s", cases[i].name,
			       errname(theirs[i]), errname(ours[i]));
		}
	}
	TH_LOG("%zu cases", NR_CASES);
}

/* Every byte of a status structure is written, padding included. */
TEST(status_fills_every_byte)
{
	char *file = lt_make_file("pad", MiB, 0);
	struct loop_info64 a64, b64;
	struct loop_info a, b;
	int n = lt_get_free(), fd;

	ASSERT_NE(NULL, file);
	ASSERT_LE(0, n);
	fd = lt_open_dev(n, O_RDWR);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, lt_configure(fd, file, O_RDWR, 0, 0, 0, 0));
	/* Two fills: a byte not written keeps its fill, and they differ. */
	memset(&a64, 0xa5, sizeof(a64));
	memset(&b64, 0x5a, sizeof(b64));
	ASSERT_EQ(0, ioctl(fd, LOOP_GET_STATUS64, &a64));
	ASSERT_EQ(0, ioctl(fd, LOOP_GET_STATUS64, &b64));
	ASSERT_EQ(0, memcmp(&a64, &b64, sizeof(a64)));
	memset(&a, 0xa5, sizeof(a));
	memset(&b, 0x5a, sizeof(b));
	ASSERT_EQ(0, ioctl(fd, LOOP_GET_STATUS, &a));
	ASSERT_EQ(0, ioctl(fd, LOOP_GET_STATUS, &b));
	ASSERT_EQ(0, memcmp(&a, &b, sizeof(a)));
	TH_LOG("struct loop_info64: %zu bytes, struct loop_info: %zu bytes",
	       sizeof(a64), sizeof(a));
	ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
	close(fd);
	lt_release(n);
	unlink(file);
	free(file);
}

/* A backing file opened read-only gives a read-only device. */
TEST(read_only_backing_file_gives_read_only_device)
{
	char *file = lt_make_file("rofile", MiB, 7);
	struct loop_info64 info;
	char buf[512];
	int n = lt_get_free(), fd, ro = 0;

	ASSERT_NE(NULL, file);
	ASSERT_EQ(0, chmod(file, 0400));
	fd = lt_open_dev(n, O_RDWR);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, lt_configure(fd, file, O_RDONLY, 0, 0, 0, 0));
	ASSERT_EQ(0, ioctl(fd, LOOP_GET_STATUS64, &info));
	ASSERT_TRUE(info.lo_flags & LO_FLAGS_READ_ONLY);
	ASSERT_EQ(0, ioctl(fd, BLKROGET, &ro));
	ASSERT_EQ(1, ro);
	memset(buf, 1, sizeof(buf));
	ASSERT_EQ(-1, pwrite(fd, buf, sizeof(buf), 0));
	ASSERT_EQ(EPERM, errno);
	ASSERT_EQ(0, ioctl(fd, LOOP_CLR_FD));
	close(fd);
	lt_release(n);
	unlink(file);
	free(file);
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--record")) {
		int answers[NR_CASES];
		char err[128];
		unsigned int i;

		if (record(answers, err, sizeof(err))) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		for (i = 0; i < NR_CASES; i++)
			printf("%s %s\n", cases[i].name, errname(answers[i]));
		return 0;
	}
	return test_harness_run(argc, argv);
}
