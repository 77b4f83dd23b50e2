// SPDX-License-Identifier: GPL-2.0
/*
 * Loop driver benchmarks that fio cannot run, through the standard ABI
 * only, so that the stock loop.ko and ours are measured the same way:
 *
 *   loop_bench churn THREADS SECONDS FILE
 *	attach/detach cycles: LOOP_CTL_GET_FREE, open, LOOP_CONFIGURE with
 *	autoclear, read a block, close. Prints cycles per second, close()
 *	latency p50/p99, the attempts that failed with EBUSY and the mean
 *	time of each step of a successful cycle.
 *   loop_bench scale TOTAL REPS FILE
 *	make TOTAL devices exist (every tenth bound), then time REPS rounds of
 *	LOOP_CTL_GET_FREE + attach + detach; prints the median, and the kernel
 *	memory (slab + vmalloc + percpu) per idle device created (the median
 *	of several creations for small counts). Removes what it created.
 * Output: "name value" lines.
 */
#include "../selftests/loop_test_util.h"

#include <pthread.h>
#include <time.h>

static const char *backing;

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* LOOP_CONFIGURE @devfd over the backing file; 0 or -errno. */
static int configure(int devfd, __u32 flags)
{
	return lt_configure(devfd, backing, O_RDWR, flags, 0, 0, 0);
}

/* churn */
#define MAX_SAMPLES 200000

/* The steps of a cycle, timed separately to show where a driver is slower. */
enum { PH_GET_FREE, PH_OPEN, PH_CONFIGURE, PH_READ, PH_CLOSE, CHURN_PHASES };
static const char * const phase_name[CHURN_PHASES] = {
	"get_free", "open", "configure", "read", "close",
};

struct churner {
	pthread_t thr;
	double end;
	long cycles, ebusy, errors;
	/* time spent in each step of the successful cycles, µs */
	double phase[CHURN_PHASES];
	double *close_us;
	long nclose;
};

static void *churn_loop(void *arg)
{
	struct churner *c = arg;
	char buf[4096];

	while (now_us() < c->end) {
		/* t[step]: when the step started; t[CHURN_PHASES]: the end */
		double t[CHURN_PHASES + 1];
		int n, fd, err, i;

		t[PH_GET_FREE] = now_us();
		n = lt_get_free();
		if (n < 0) {
			c->errors++;
			continue;
		}
		t[PH_OPEN] = now_us();
		fd = lt_open_dev(n, O_RDWR);
		if (fd < 0) {
			c->errors++;
			continue;
		}
		t[PH_CONFIGURE] = now_us();
		err = configure(fd, LO_FLAGS_AUTOCLEAR);
		if (err) {
			if (err == -EBUSY)
				c->ebusy++;
			else
				c->errors++;
			close(fd);
			continue;
		}
		t[PH_READ] = now_us();
		if (pread(fd, buf, sizeof(buf), 0) != sizeof(buf))
			c->errors++;
		t[PH_CLOSE] = now_us();
		close(fd);
		t[CHURN_PHASES] = now_us();
		if (c->nclose < MAX_SAMPLES)
			c->close_us[c->nclose++] = t[CHURN_PHASES] -
							 t[PH_CLOSE];
		for (i = 0; i < CHURN_PHASES; i++)
			c->phase[i] += t[i + 1] - t[i];
		c->cycles++;
	}
	return NULL;
}

static int churn(int threads, double seconds)
{
	struct churner *c = calloc(threads, sizeof(*c));
	double start = now_us(), *all;
	long cycles = 0, ebusy = 0, errors = 0, n = 0;
	double phase[CHURN_PHASES] = { 0 };
	int i, j;

	for (i = 0; i < threads; i++) {
		c[i].end = start + seconds * 1e6;
		c[i].close_us = malloc(MAX_SAMPLES * sizeof(double));
		pthread_create(&c[i].thr, NULL, churn_loop, &c[i]);
	}
	for (i = 0; i < threads; i++) {
		pthread_join(c[i].thr, NULL);
		cycles += c[i].cycles;
		ebusy += c[i].ebusy;
		errors += c[i].errors;
		n += c[i].nclose;
		for (j = 0; j < CHURN_PHASES; j++)
			phase[j] += c[i].phase[j];
	}
	all = malloc((n + 1) * sizeof(double));
	n = 0;
	for (i = 0; i < threads; i++) {
		memcpy(all + n, c[i].close_us, c[i].nclose * sizeof(double));
		n += c[i].nclose;
	}
	qsort(all, n, sizeof(double), cmp_double);
	printf("cycles_per_s %.1f\n", cycles / ((now_us() - start) / 1e6));
	printf("close_p50_us %.0f\n", n ? all[n / 2] : 0);
	printf("close_p99_us %.0f\n", n ? all[n * 99 / 100] : 0);
	printf("ebusy %ld\n", ebusy);
	printf("errors %ld\n", errors);
	for (j = 0; j < CHURN_PHASES; j++)
		printf("%s_mean_us %.1f\n", phase_name[j],
		       cycles ? phase[j] / cycles : 0);
	return errors ? 1 : 0;
}

/* scale */
static long meminfo_kib(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char key[64];
	long val, sum = 0;

	while (f && fscanf(f, "%63s %ld kB\n", key, &val) == 2)
		if (!strcmp(key, "Slab:") || !strcmp(key, "VmallocUsed:") ||
		    !strcmp(key, "Percpu:"))
			sum += val;
	if (f)
		fclose(f);
	return sum;
}

static void drop_caches(void)
{
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);

	sync();
	if (fd >= 0) {
		if (write(fd, "3", 1) != 1)
			perror("drop_caches");
		close(fd);
	}
}

/*
 * Create devices until loopTOTAL-1 exists; record their numbers in
 * @created. Returns how many were created, or -1.
 */
static int add_devices(int total, int *created)
{
	int n, ncreated = 0;

	do {
		n = lt_ctl(LOOP_CTL_ADD, -1);
		if (n < 0) {
			fprintf(stderr, "LOOP_CTL_ADD: %s\n", strerror(-n));
			return -1;
		}
		created[ncreated++] = n;
	} while (n < total - 1 && ncreated < total);
	return ncreated;
}

static void remove_devices(const int *created, int ncreated)
{
	int i;

	for (i = 0; i < ncreated; i++)
		lt_ctl(LOOP_CTL_REMOVE, created[i]);
}

/*
 * Kernel memory per idle device: slab, vmalloc and percpu growth over the
 * creation of the devices, divided by their number. A few hundred
 * devices are too few for one creation to rise above the slab pages
 * allocated and freed meanwhile by the rest of the system, so small
 * counts are measured over several creations (MEM_DEVICES devices in
 * all, at most MEM_PASSES) and the median is printed. The devices of the
 * last creation stay; returns how many, or -1.
 */
#define MEM_DEVICES	500
#define MEM_PASSES	5
static int measure_idle_memory(int total, int *created)
{
	int passes = (MEM_DEVICES + total - 1) / total;
	double per[MEM_PASSES];
	int p, ncreated = -1;
	long mem0;

	if (passes > MEM_PASSES)
		passes = MEM_PASSES;
	for (p = 0; p < passes; p++) {
		if (p)
			remove_devices(created, ncreated);
		drop_caches();
		mem0 = meminfo_kib();
		ncreated = add_devices(total, created);
		if (ncreated <= 0)
			return -1;
		drop_caches();
		per[p] = (double)(meminfo_kib() - mem0) / ncreated;
	}
	qsort(per, passes, sizeof(double), cmp_double);
	printf("idle_device_kib %.2f\n", per[passes / 2]);
	return ncreated;
}

static int scale(int total, int reps)
{
	int *created = calloc(total, sizeof(int)), ncreated, i, n;
	double *lat = calloc(reps, sizeof(double));
	int failed = 0;

	ncreated = measure_idle_memory(total, created);
	if (ncreated < 0)
		return 1;
	/* Mixed: bind every tenth device, from the lowest. */
	for (i = 0; i < total; i += 10) {
		int fd = lt_open_dev(i, O_RDWR);

		if (fd < 0 || configure(fd, 0))
			failed++;
		if (fd >= 0)
			close(fd);
	}
	for (i = 0; i < reps; i++) {
		double t = now_us();
		int fd, err;

		n = lt_get_free();
		fd = n < 0 ? -1 : lt_open_dev(n, O_RDWR);
		err = fd < 0 ? -1 : configure(fd, 0);
		if (!err)
			err = ioctl(fd, LOOP_CLR_FD);
		if (fd >= 0)
			close(fd);
		lat[i] = now_us() - t;
		if (err)
			failed++;
	}
	qsort(lat, reps, sizeof(double), cmp_double);
	printf("cycle_us %.0f\n", lat[reps / 2]);
	for (i = 0; i < total; i += 10) {
		int fd = lt_open_dev(i, O_RDWR);

		if (fd >= 0) {
			ioctl(fd, LOOP_CLR_FD);
			close(fd);
		}
	}
	remove_devices(created, ncreated);
	printf("failures %d\n", failed);
	return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "churn")) {
		backing = argv[4];
		return churn(atoi(argv[2]), atof(argv[3]));
	}
	if (argc == 5 && !strcmp(argv[1], "scale")) {
		backing = argv[4];
		return scale(atoi(argv[2]), atoi(argv[3]));
	}
	fprintf(stderr, "usage: %s churn THREADS SECONDS FILE | scale TOTAL REPS FILE\n",
		argv[0]);
	return 2;
}
