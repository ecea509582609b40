#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

/*
 * A thread blocked in epoll_wait with a long timeout on a pipe that only
 * the main thread writes to, once per line. The kernel never restarts
 * epoll_wait after a stop, so an EINTR here can only come from a stop that
 * was not put right: the patient treats it as fatal (exit 3).
 * Prints: word seq events-seen
 */
static int fds[2];
static volatile long seen;

__attribute__((noipa)) const char *word(void)
{
	return "old";
}

static void *waiter(void *arg)
{
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN };
	char c;

	(void)arg;
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fds[0], &ev) != 0)
		exit(2);
	for (;;) {
		int n = epoll_wait(ep, &ev, 1, 600000);

		if (n < 0) {
			fprintf(stderr, "epoll_wait: errno %d\n", errno);
			exit(3);
		}
		if (n == 1 && read(fds[0], &c, 1) == 1)
			seen++;
	}
	return NULL;
}

int main(void)
{
	pthread_t t;

	if (pipe(fds) != 0)
		return 1;
	pthread_create(&t, NULL, waiter, NULL);
	for (long seq = 0;; seq++) {
		/* Mostly blocked: one byte every 20 ms. */
		printf("%s %ld %ld\n", word(), seq, seen);
		fflush(stdout);
		usleep(20000);
		if (seq % 5 == 0 && write(fds[1], "x", 1) != 1)
			return 1;
	}
}
