// SPDX-License-Identifier: GPL-2.0
/*
 * Seeded ioctl fuzzer for the loop driver. Several processes run random
 * sequences of loop and loop-control ioctls, opens, closes, reads, writes
 * and fsyncs against a handful of devices and backing files, with valid,
 * borderline and invalid arguments. The run passes if no process dies or
 * hangs, and afterwards every device can be detached and removed, and a
 * fresh attach reads back what its file holds. The kernel log is judged by
 * the guest (any splat fails it).
 *
 *   loop_fuzz [-s SEED] [-n OPS] [-p PROCS] [-t SECONDS]
 *
 * SEED (printed; default from the clock) fixes every process's sequence:
 * process i draws from SEED + i, so a run replays with the same -s, -n and
 * -p (the interleaving of the processes is the scheduler's). OPS is per
 * process (default 1500). With -t the processes run rounds of OPS until
 * SECONDS have passed (long runs). Output is TAP.
 */
#include "loop_test_util.h"

#include <signal.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define NDEV	6	/* devices BASE..BASE+NDEV-1 */
#define BASE	200
#define NFILE	4
#define NFD	12	/* descriptors a process keeps */
#define MiB	(1024 * 1024)

static char files[NFILE][128];
static pid_t pid[16];
static int nprocs;

enum op {
	OP_OPEN, OP_CLOSE, OP_SET_FD, OP_CONFIGURE, OP_CLR_FD, OP_SET_STATUS64,
	OP_SET_STATUS, OP_GET_STATUS, OP_CHANGE_FD, OP_SET_CAPACITY,
	OP_SET_DIO, OP_SET_BSIZE, OP_CTL_ADD, OP_CTL_REMOVE, OP_CTL_GET_FREE,
	OP_READ, OP_WRITE, OP_FSYNC, OP_RESIZE_FILE, OP_UNKNOWN, NR_OPS
};

static const char * const op_names[NR_OPS] = {
	"open", "close", "set_fd", "configure", "clr_fd", "set_status64",
	"set_status", "get_status", "change_fd", "set_capacity",
	"set_direct_io", "set_block_size", "ctl_add", "ctl_remove",
	"ctl_get_free", "read", "write", "fsync", "resize_file", "unknown",
};

struct rng {
	uint64_t s;
};

static uint64_t rnd(struct rng *r)
{
	r->s ^= r->s << 13;
	r->s ^= r->s >> 7;
	r->s ^= r->s << 17;
	return r->s;
}

static unsigned int pick(struct rng *r, unsigned int n)
{
	return rnd(r) % n;
}

struct proc {
	struct rng r;
	int fd[NFD];		/* device descriptors, -1 if none */
	int bfd[NFILE * 2];	/* backing files: read-write, read-only */
	long count[NR_OPS];
	long ok[NR_OPS];
};

/* A descriptor to use as a backing file: mostly good, sometimes not. */
static int backing_fd(struct proc *p)
{
	switch (pick(&p->r, 10)) {
	case 0:
		return p->fd[pick(&p->r, NFD)];	/* a loop device, or -1 */
	case 1:
		return (int)pick(&p->r, 64) - 2;	/* anything */
	default:
		return p->bfd[pick(&p->r, NFILE * 2)];
	}
}

static __u32 rand_flags(struct proc *p)
{
	static const __u32 bits[] = {
		LO_FLAGS_READ_ONLY, LO_FLAGS_AUTOCLEAR, LO_FLAGS_PARTSCAN,
		LO_FLAGS_DIRECT_IO, LO_FLAGS_AUTOCLEAR_DELETE, 2, 1U << 31,
	};
	__u32 f = 0;
	unsigned int i;

	for (i = 0; i < sizeof(bits) / sizeof(bits[0]); i++)
		if (pick(&p->r, i < 5 ? 3 : 20) == 0)
			f |= bits[i];
	return f;
}

static __u64 rand_off(struct proc *p)
{
	static const __u64 v[] = { 0, 0, 0, 512, 4096, 1, 3 * MiB,
				   8 * MiB, ~0ULL, (__u64)LLONG_MAX + 1 };

	return v[pick(&p->r, sizeof(v) / sizeof(v[0]))];
}

static unsigned long rand_bsize(struct proc *p)
{
	static const unsigned long v[] = { 0, 512, 1024, 2048, 4096, 4096,
					   1, 511, 3000, 8192, 65536,
					   1UL << 31 };

	return v[pick(&p->r, sizeof(v) / sizeof(v[0]))];
}

static void rand_info(struct proc *p, struct loop_info64 *info)
{
	memset(info, 0, sizeof(*info));
	info->lo_offset = rand_off(p);
	info->lo_sizelimit = pick(&p->r, 2) ? 0 : rand_off(p);
	info->lo_flags = rand_flags(p);
	if (!pick(&p->r, 20))
		info->lo_encrypt_type = pick(&p->r, 20);
	if (!pick(&p->r, 20))
		info->lo_encrypt_key_size = pick(&p->r, 40);
	memset(info->lo_file_name, 'a' + pick(&p->r, 26),
	       pick(&p->r, 2) ? LO_NAME_SIZE : 8);
}

static int dev_fd(struct proc *p)
{
	return p->fd[pick(&p->r, NFD)];
}

static int do_op(struct proc *p, enum op op)
{
	char buf[8192] __attribute__((aligned(4096)));
	struct loop_config cfg;
	struct loop_info64 info;
	struct loop_info old;
	int i, fd, ret = -1;

	switch (op) {
	case OP_OPEN:
		i = pick(&p->r, NFD);
		if (p->fd[i] >= 0)
			close(p->fd[i]);
		p->fd[i] = lt_open_dev(BASE + pick(&p->r, NDEV),
				       (pick(&p->r, 3) ? O_RDWR : O_RDONLY) |
				       (pick(&p->r, 8) ? 0 : O_DIRECT) |
				       (pick(&p->r, 16) ? 0 : O_EXCL));
		ret = p->fd[i] < 0 ? -1 : 0;
		break;
	case OP_CLOSE:
		i = pick(&p->r, NFD);
		if (p->fd[i] >= 0)
			ret = close(p->fd[i]);
		p->fd[i] = -1;
		break;
	case OP_SET_FD:
		ret = ioctl(dev_fd(p), LOOP_SET_FD, backing_fd(p));
		break;
	case OP_CONFIGURE:
		memset(&cfg, 0, sizeof(cfg));
		cfg.fd = backing_fd(p);
		cfg.block_size = pick(&p->r, 2) ? 0 : rand_bsize(p);
		rand_info(p, &cfg.info);
		if (!pick(&p->r, 4))
			cfg.info.lo_offset = cfg.info.lo_sizelimit = 0;
		ret = ioctl(dev_fd(p), LOOP_CONFIGURE, &cfg);
		break;
	case OP_CLR_FD:
		ret = ioctl(dev_fd(p), LOOP_CLR_FD);
		break;
	case OP_SET_STATUS64:
		rand_info(p, &info);
		ret = ioctl(dev_fd(p), LOOP_SET_STATUS64, &info);
		break;
	case OP_SET_STATUS:
		memset(&old, 0, sizeof(old));
		old.lo_offset = (int)rand_off(p);
		old.lo_flags = rand_flags(p);
		ret = ioctl(dev_fd(p), LOOP_SET_STATUS, &old);
		break;
	case OP_GET_STATUS:
		if (pick(&p->r, 2))
			ret = ioctl(dev_fd(p), LOOP_GET_STATUS64, &info);
		else
			ret = ioctl(dev_fd(p), LOOP_GET_STATUS, &old);
		break;
	case OP_CHANGE_FD:
		ret = ioctl(dev_fd(p), LOOP_CHANGE_FD, backing_fd(p));
		break;
	case OP_SET_CAPACITY:
		ret = ioctl(dev_fd(p), LOOP_SET_CAPACITY);
		break;
	case OP_SET_DIO:
		ret = ioctl(dev_fd(p), LOOP_SET_DIRECT_IO, pick(&p->r, 3));
		break;
	case OP_SET_BSIZE:
		ret = ioctl(dev_fd(p), LOOP_SET_BLOCK_SIZE, rand_bsize(p));
		break;
	case OP_CTL_ADD:
		ret = lt_ctl(LOOP_CTL_ADD, BASE + pick(&p->r, NDEV));
		break;
	case OP_CTL_REMOVE:
		ret = lt_ctl(LOOP_CTL_REMOVE, BASE + pick(&p->r, NDEV));
		break;
	case OP_CTL_GET_FREE:
		/* Creates a device if none is free: only look, then drop it. */
		ret = lt_ctl(LOOP_CTL_GET_FREE, 0);
		if (ret >= 0 && ret < BASE)
			lt_ctl(LOOP_CTL_REMOVE, ret);
		break;
	case OP_READ:
		fd = dev_fd(p);
		ret = pread(fd, buf, 512 << pick(&p->r, 5),
			    (off_t)pick(&p->r, 2048) * 4096) < 0 ? -1 : 0;
		break;
	case OP_WRITE:
		fd = dev_fd(p);
		memset(buf, pick(&p->r, 256), sizeof(buf));
		ret = pwrite(fd, buf, 512 << pick(&p->r, 5),
			     (off_t)pick(&p->r, 2048) * 4096) < 0 ? -1 : 0;
		break;
	case OP_FSYNC:
		ret = fsync(dev_fd(p));
		break;
	case OP_RESIZE_FILE:
		/* Change the size of a backing file under the device. */
		ret = truncate(files[pick(&p->r, NFILE)],
			       (off_t)(1 + pick(&p->r, 8)) * MiB);
		break;
	case OP_UNKNOWN:
		ret = ioctl(dev_fd(p), 0x4C00 + pick(&p->r, 0x100),
			    (unsigned long)rnd(&p->r));
		break;
	default:
		break;
	}
	return ret;
}

static void run_proc(int id, uint64_t seed, long ops, double until, int out)
{
	struct proc *p = calloc(1, sizeof(*p));
	long n, rounds = 0;
	int i;

	if (!p)
		_exit(2);
	p->r.s = seed + id * 0x9e3779b97f4a7c15ULL;
	if (!p->r.s)
		p->r.s = 1;
	for (i = 0; i < NFD; i++)
		p->fd[i] = -1;
	for (i = 0; i < NFILE; i++) {
		p->bfd[i] = open(files[i], O_RDWR | O_CLOEXEC);
		p->bfd[NFILE + i] = open(files[i], O_RDONLY | O_CLOEXEC);
	}
	do {
		for (n = 0; n < ops; n++) {
			enum op op = pick(&p->r, NR_OPS);

			p->count[op]++;
			if (do_op(p, op) >= 0)
				p->ok[op]++;
		}
		rounds++;
	} while (until > 0 && time(NULL) < until);
	for (i = 0; i < NFD; i++)
		if (p->fd[i] >= 0)
			close(p->fd[i]);
	if (write(out, p->count, sizeof(p->count)) < 0 ||
	    write(out, p->ok, sizeof(p->ok)) < 0)
		_exit(3);
	_exit(0);
}

static int make_files(void)
{
	int i, fd;

	for (i = 0; i < NFILE; i++) {
		snprintf(files[i], sizeof(files[i]), "%s/lt-fuzz-%d-%d.img",
			 lt_dir(), getpid(), i);
		fd = open(files[i], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
			  0600);
		if (fd < 0 || ftruncate(fd, (off_t)(i + 1) * 2 * MiB) ||
		    lt_write_mbr(fd))
			return -1;
		close(fd);
	}
	return 0;
}

/* A process stuck in the driver: report it, with its stack if we can. */
static void on_alarm(int sig)
{
	char line[128];
	int i;

	(void)sig;
	for (i = 0; i < nprocs; i++) {
		snprintf(line, sizeof(line), "cat /proc/%d/stack | sed 's/^/# /'",
			 pid[i]);
		if (system(line) < 0)
			break;
	}
	printf("not ok 1 fuzz: a process hangs\n");
	fflush(stdout);
	for (i = 0; i < nprocs; i++)
		kill(pid[i], SIGKILL);
	_exit(1);
}

/* Detach and remove every device of the set: none may be stuck. */
static int cleanup(char *why, size_t len)
{
	int pass, i, fd, ret, left = 0;

	/*
	 * A device under a stacked one is detached only once the upper one
	 * lets it go: a pass per level of stacking at most.
	 */
	for (pass = 0; pass <= NDEV; pass++) {
		left = 0;
		for (i = 0; i < NDEV; i++) {
			fd = lt_open_dev(BASE + i, O_RDWR);
			if (fd >= 0) {
				ioctl(fd, LOOP_CLR_FD);
				close(fd);
			}
			ret = lt_ctl(LOOP_CTL_REMOVE, BASE + i);
			if (ret && ret != -ENODEV) {
				snprintf(why, len, "loop%d: LOOP_CTL_REMOVE: %s",
					 BASE + i, strerror(-ret));
				left++;
			}
		}
		if (!left)
			return 0;
	}
	return -1;
}

/* The driver still works: attach a file, read what it holds. */
static int still_works(char *why, size_t len)
{
	char *f = lt_make_file("fuzz-after", MiB, 0x3c);
	char buf[4096];
	int n, fd, ret = -1;

	if (!f)
		return -1;
	n = lt_ctl(LOOP_CTL_ADD, BASE);
	fd = n < 0 ? -1 : lt_open_dev(n, O_RDWR);
	if (fd < 0) {
		snprintf(why, len, "device after the run: %s", strerror(errno));
	} else if (lt_configure(fd, f, O_RDWR, 0, 0, 0, 0)) {
		snprintf(why, len, "attach after the run failed");
	} else if (pread(fd, buf, sizeof(buf), 0) != sizeof(buf) ||
		   buf[0] != 0x3c || buf[4095] != 0x3c) {
		snprintf(why, len, "read after the run: wrong data");
	} else {
		ret = 0;
	}
	if (fd >= 0) {
		ioctl(fd, LOOP_CLR_FD);
		close(fd);
	}
	if (n >= 0)
		lt_ctl(LOOP_CTL_REMOVE, n);
	unlink(f);
	free(f);
	return ret;
}

int main(int argc, char **argv)
{
	long ops = 1500, total[NR_OPS] = { 0 }, ok[NR_OPS] = { 0 };
	long cnt[NR_OPS], good[NR_OPS], all = 0;
	int procs = 4, seconds = 0, i, j, c, status, failed = 0;
	uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	int pipes[16][2];
	char why[256] = "";
	double until = 0;

	while ((c = getopt(argc, argv, "s:n:p:t:")) != -1) {
		switch (c) {
		case 's':
			seed = strtoull(optarg, NULL, 0);
			break;
		case 'n':
			ops = atol(optarg);
			break;
		case 'p':
			procs = atoi(optarg);
			break;
		case 't':
			seconds = atoi(optarg);
			break;
		default:
			fprintf(stderr,
				"usage: %s [-s seed] [-n ops] [-p procs] [-t seconds]\n",
				argv[0]);
			return 2;
		}
	}
	if (procs < 1 || procs > 16)
		procs = 4;
	if (ops < 1) {
		fprintf(stderr, "%s: -n needs at least 1 operation\n", argv[0]);
		return 2;
	}
	nprocs = procs;
	signal(SIGALRM, on_alarm);
	printf("TAP version 13\n1..1\n");
	printf("# loop_fuzz -s %llu -n %ld -p %d%s\n",
	       (unsigned long long)seed, ops, procs, seconds ? " (timed)" : "");
	fflush(stdout);
	if (make_files()) {
		printf("not ok 1 fuzz: backing files: %s\n", strerror(errno));
		return 1;
	}
	for (i = 0; i < NDEV; i++)
		lt_ctl(LOOP_CTL_ADD, BASE + i);
	if (seconds)
		until = time(NULL) + seconds;

	for (i = 0; i < procs; i++) {
		if (pipe(pipes[i]))
			return 1;
		pid[i] = fork();
		if (pid[i] == 0) {
			close(pipes[i][0]);
			run_proc(i, seed, ops, until, pipes[i][1]);
		}
		close(pipes[i][1]);
	}
	/* A process stuck in the driver is a failure: give up on it. */
	alarm(seconds ? seconds + 600 : 900);
	for (i = 0; i < procs; i++) {
		if (waitpid(pid[i], &status, 0) != pid[i] ||
		    !WIFEXITED(status) || WEXITSTATUS(status)) {
			snprintf(why, sizeof(why), "process %d: status 0x%x",
				 i, status);
			failed = 1;
		}
		if (read(pipes[i][0], cnt, sizeof(cnt)) == sizeof(cnt) &&
		    read(pipes[i][0], good, sizeof(good)) == sizeof(good)) {
			for (j = 0; j < NR_OPS; j++) {
				total[j] += cnt[j];
				ok[j] += good[j];
			}
		}
		close(pipes[i][0]);
	}
	alarm(0);
	for (j = 0; j < NR_OPS; j++) {
		printf("# %-15s %8ld run %8ld succeeded\n", op_names[j],
		       total[j], ok[j]);
		all += total[j];
	}
	if (!failed && cleanup(why, sizeof(why)))
		failed = 1;
	if (!failed && still_works(why, sizeof(why)))
		failed = 1;
	for (i = 0; i < NFILE; i++)
		unlink(files[i]);
	if (failed)
		printf("not ok 1 fuzz: seed %llu: %s\n",
		       (unsigned long long)seed, why);
	else
		printf("ok 1 fuzz: %ld operations by %d processes, seed %llu\n",
		       all, procs, (unsigned long long)seed);
	return failed;
}
