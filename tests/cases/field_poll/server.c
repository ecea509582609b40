#define _GNU_SOURCE
/* A poll server reading requests from a pipe a forked client writes
 * to; any failed poll or read (EINTR included) is fatal, as in
 * servers that never expected a signal. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/select.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <unistd.h>

void answer(const char *req, char *out, size_t n);

int main(void)
{
	int p[2];
	if (pipe(p))
		return 1;
	if (fork() == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(p[0]);
		for (;;) {
			if (write(p[1], "ping\n", 5) != 5)
				exit(0);
			usleep(1000000);
		}
	}
	close(p[1]);
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = p[0] };
	epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
	char buf[64], out[64];
	for (;;) {
		struct pollfd pfd = { .fd = p[0], .events = POLLIN };
		int n = poll(&pfd, 1, -1);
		if (n < 0) {
			printf("poll failed: %s\n", strerror(errno));
			return 1;
		}
		ssize_t r = read(p[0], buf, 5);
		if (r != 5) {
			printf("read failed: %zd %s\n", r, strerror(errno));
			return 1;
		}
		buf[4] = '\0';
		answer(buf, out, sizeof out);
		puts(out);
		fflush(stdout);
	}
}
