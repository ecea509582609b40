/* The patient of the glibc case: calls wordexp() with WRDE_REUSE |
 * WRDE_APPEND once per iteration, every millisecond, and prints a line each
 * time the result changes. Fixed (Debian's CVE-2025-15281 fix): "wordc=1".
 * With the bug the count of the freed previous result is kept: "wordc=3",
 * and the two first words are uninitialized memory (never read here).
 * At the end: iterations, failed calls and the longest gap between two
 * iterations beyond the 1 ms pause (the stall the patch caused).
 * ITERATIONS is argv[1] (default 6000). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <wordexp.h>

static long long now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000LL + t.tv_nsec / 1000;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 6000, failed = 0;
	size_t last = (size_t)-1;
	long long prev = now_us(), max_gap = 0;
	struct timespec pause = {0, 1000 * 1000};

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (long i = 0; i < n; i++) {
		wordexp_t we;
		if (wordexp("a b", &we, 0) != 0) {
			failed++;
			continue;
		}
		int rc = wordexp("c", &we, WRDE_REUSE | WRDE_APPEND);
		if (rc != 0)
			failed++;
		else if (we.we_wordc != last) {
			last = we.we_wordc;
			printf("iteration %ld: wordc=%zu last=%s\n", i, we.we_wordc,
			       we.we_wordv[we.we_wordc - 1]);
		}
		nanosleep(&pause, NULL);
		long long t = now_us();
		if (t - prev > max_gap)
			max_gap = t - prev;
		prev = t;
	}
	printf("iterations=%ld failed=%ld max_gap_us=%lld\n", n, failed, max_gap);
	return failed != 0;
}
