/*
 * Preloaded into every program a live test starts (LD_PRELOAD).
 *
 * The cases sleep a second between lines of output, like the seed's example;
 * tests would crawl at that pace. Every sleep here is divided by
 * $FASTSLEEP_DIVISOR (default 50). sleep() and usleep() are replaced too,
 * because glibc's versions reach the kernel without going through the
 * public nanosleep symbol.
 *
 * stdout is made line-buffered because the test reads it through a pipe,
 * where stdio would otherwise hold lines back in a 4 KiB buffer.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

typedef int (*nanosleep_fn)(const struct timespec *, struct timespec *);

static long long divisor(void)
{
	const char *s = getenv("FASTSLEEP_DIVISOR");
	long long d = s ? atoll(s) : 50;
	return d > 0 ? d : 1;
}

int nanosleep(const struct timespec *req, struct timespec *rem)
{
	static nanosleep_fn real;
	struct timespec scaled;
	long long ns;

	if (!real)
		real = (nanosleep_fn)dlsym(RTLD_NEXT, "nanosleep");
	ns = ((long long)req->tv_sec * 1000000000LL + req->tv_nsec) / divisor();
	scaled.tv_sec = ns / 1000000000LL;
	scaled.tv_nsec = ns % 1000000000LL;
	return real(&scaled, rem);
}

unsigned int sleep(unsigned int seconds)
{
	struct timespec t = { seconds, 0 };

	nanosleep(&t, NULL);
	return 0;
}

int usleep(useconds_t usec)
{
	struct timespec t = { usec / 1000000, (long)(usec % 1000000) * 1000 };

	return nanosleep(&t, NULL);
}

__attribute__((constructor)) static void stdout_line_buffered(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
}
