/* A line server on a loopback TCP port the kernel picks. A forked client
 * (which dies with the server) sends numbered requests and prints each
 * answer; a lost or out-of-order answer is printed as "LOST". The live
 * patch changes the server's answers while the client keeps talking. */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

void answer(const char *word, char *out, size_t n);

static int serve(int fd)
{
	FILE *in = fdopen(fd, "r");
	char line[128], word[64], reply[160];
	unsigned long seq;
	while (fgets(line, sizeof line, in)) {
		if (sscanf(line, "%lu %63s", &seq, word) != 2)
			return 1;
		answer(word, reply, sizeof reply);
		dprintf(fd, "%lu %s\n", seq, reply);
	}
	return 0;
}

static void client(unsigned short port)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = port };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
		exit(1);
	FILE *in = fdopen(fd, "r");
	char line[200], text[160];
	unsigned long got;
	for (unsigned long seq = 1;; seq++) {
		dprintf(fd, "%lu hello\n", seq);
		if (!fgets(line, sizeof line, in))
			exit(0);
		if (sscanf(line, "%lu %159[^\n]", &got, text) != 2 || got != seq)
			printf("LOST %lu\n", seq);
		else
			printf("reply: %s\n", text);
		fflush(stdout);
		usleep(1000000);
	}
}

int main(void)
{
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof sa;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(ls, (struct sockaddr *)&sa, sizeof sa) || listen(ls, 1) ||
	    getsockname(ls, (struct sockaddr *)&sa, &len))
		return 1;
	fflush(stdout);
	if (fork() == 0) {
		close(ls);
		client(sa.sin_port);
	}
	int fd = accept(ls, NULL, NULL);
	return fd < 0 ? 1 : serve(fd);
}
